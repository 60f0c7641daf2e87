"""CPU reference timings (PyTorch) for bench/attention_speed.ts: causal attention forward + backward.

Usage: attention_ref.py '[[B, NH, T, HS], ...]'. Prints one JSON object per shape:
{"op", "shape", "median_ms", "impl"}. torch 1.13 (Debian's) has no fused attention on the CPU, so this is the
textbook form: scores, mask, softmax, product.
"""
import json
import sys

from ops_ref import impl_name, load_torch, median_ms


def main():
    torch = load_torch()
    if torch is None:
        return
    impl = impl_name(torch)
    for B, NH, T, HS in json.loads(sys.argv[1]):
        q, k, v = (torch.randn(B, NH, T, HS, requires_grad=True) for _ in range(3))
        mask = torch.ones(T, T, dtype=torch.bool).tril()

        def attn():
            s = (q @ k.transpose(-1, -2)) / HS**0.5
            o = torch.softmax(s.masked_fill(~mask, float("-inf")), -1) @ v
            o.backward(torch.ones_like(o))

        rec = {"op": "attention_fwd_bwd", "shape": [B, NH, T, HS], "median_ms": median_ms(attn), "impl": impl}
        print(json.dumps(rec), flush=True)


if __name__ == "__main__":
    main()
