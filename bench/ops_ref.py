"""CPU reference timings (PyTorch) for the ops bench/ops.ts measures on the GPU (matmul: matmul_ref.py).

Prints one JSON object per line: {"op", "shape", "median_ms", "impl"}. Run by bench/ops.ts in the same
session, so that GPU figures are stated as ratios against a reference measured on the same machine.
"""
import json
import sys
import time


def median_ms(fn, reps=5, inner=3):
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        times.append((time.perf_counter() - t0) / inner * 1000)
    times.sort()
    return times[len(times) // 2]


def load_torch():
    """torch with the references' settings (2 threads or more, seed 0); None, with the fix printed, without it."""
    try:
        import torch
    except ImportError:
        print(json.dumps({"error": "PyTorch missing: apt-get install python3-torch"}))
        return None
    torch.set_num_threads(max(1, torch.get_num_interop_threads(), 2))
    torch.manual_seed(0)
    return torch


def impl_name(torch):
    """What the records' "impl" says."""
    return f"torch {torch.__version__} cpu x{torch.get_num_threads()}"


def main():
    torch = load_torch()
    if torch is None:
        return
    out = []

    # attention forward + backward, B=1, NH=8, T=256, HS=64, causal
    q, k, v = (torch.randn(1, 8, 256, 64, requires_grad=True) for _ in range(3))
    mask = torch.ones(256, 256, dtype=torch.bool).tril()

    def attn():
        s = (q @ k.transpose(-1, -2)) / 8.0
        s = s.masked_fill(~mask, float("-inf"))
        o = torch.softmax(s, -1) @ v
        o.backward(torch.ones_like(o))

    out.append({"op": "attention_fwd_bwd", "shape": [1, 8, 256, 64], "median_ms": median_ms(attn)})

    x = torch.randn(512, 32000)
    out.append({"op": "softmax", "shape": [512, 32000], "median_ms": median_ms(lambda: torch.softmax(x, -1))})

    h, w = torch.randn(512, 4096), torch.randn(4096)

    def rms():
        return h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + 1e-6) * w

    out.append({"op": "rmsnorm", "shape": [512, 4096], "median_ms": median_ms(rms)})

    logits = torch.randn(512, 32000, requires_grad=True)
    tgt = torch.randint(0, 32000, (512,))

    def ce():
        loss = torch.nn.functional.cross_entropy(logits, tgt)
        loss.backward()

    out.append({"op": "cross_entropy_fwd_bwd", "shape": [512, 32000], "median_ms": median_ms(ce)})

    for r in out:
        r["impl"] = impl_name(torch)
        print(json.dumps(r))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
