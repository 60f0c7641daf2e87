"""CPU reference timings (PyTorch) for bench/attention_speed.ts: causal attention forward + backward.

Usage: attention_ref.py '[[B, NH, T, HS], ...]'. Prints one JSON object per shape:
{"shape", "median_ms", "impl"}. torch 1.13 (Debian's) has no fused attention on the CPU, so this is the
textbook form: scores, mask, softmax, product.
"""
import json
import sys

from ops_ref import median_ms


def main():
    try:
        import torch
    except ImportError:
        print(json.dumps({"error": "PyTorch missing: apt-get install python3-torch"}))
        return
    torch.set_num_threads(max(1, torch.get_num_interop_threads(), 2))
    torch.manual_seed(0)
    impl = f"torch {torch.__version__} cpu ({torch.get_num_threads()} threads)"
    for B, NH, T, HS in json.loads(sys.argv[1]):
        q, k, v = (torch.randn(B, NH, T, HS, requires_grad=True) for _ in range(3))
        mask = torch.ones(T, T, dtype=torch.bool).tril()

        def attn():
            s = (q @ k.transpose(-1, -2)) / HS**0.5
            o = torch.softmax(s.masked_fill(~mask, float("-inf")), -1) @ v
            o.backward(torch.ones_like(o))

        print(json.dumps({"shape": [B, NH, T, HS], "median_ms": median_ms(attn), "impl": impl}), flush=True)


if __name__ == "__main__":
    main()
