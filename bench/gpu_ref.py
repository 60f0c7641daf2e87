"""PyTorch anchor for bench/gpu_report.ts: the same matmul and attention on the same GPU.

Prints one JSON object per line. Uses CUDA when available (TF32 off, so f32 is real f32), else says so.
"""
import json
import sys
import time


def main():
    small = len(sys.argv) > 1 and sys.argv[1] == "small"
    try:
        import torch
    except ImportError:
        print(json.dumps({"what": "torch_reference", "error": "torch not importable"}))
        return
    if not torch.cuda.is_available():
        print(json.dumps({"what": "torch_reference", "error": "no CUDA device", "torch": torch.__version__}))
        return
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    dev = torch.device("cuda")

    def median_ms(fn, reps=10, trials=5):
        fn()
        torch.cuda.synchronize()
        times = []
        for _ in range(trials):
            t0 = time.perf_counter()
            for _ in range(reps):
                fn()
            torch.cuda.synchronize()
            times.append((time.perf_counter() - t0) / reps * 1000)
        return sorted(times)[len(times) // 2]

    n = 256 if small else 4096
    for name, dt in (("f32", torch.float32), ("f16", torch.float16)):
        a, b = torch.randn(n, n, device=dev, dtype=dt), torch.randn(n, n, device=dev, dtype=dt)
        ms = median_ms(lambda: a @ b)
        print(json.dumps({"what": "torch_matmul", "shape": [n, n, n], "dtype": name, "median_ms": ms,
                          "tflops": 2 * n**3 / ms / 1e9, "torch": torch.__version__,
                          "device": torch.cuda.get_device_name()}))

    B, NH, T, HS = (1, 4, 128, 64) if small else (1, 32, 2048, 128)
    for name, dt in (("f32", torch.float32), ("f16", torch.float16)):
        q, k, v = (torch.randn(B, NH, T, HS, device=dev, dtype=dt, requires_grad=True) for _ in range(3))

        def step():
            o = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
            o.backward(torch.ones_like(o))

        ms = median_ms(step)
        print(json.dumps({"what": "torch_attention_fwd_bwd", "shape": [B, NH, T, HS], "dtype": name,
                          "median_ms": ms, "tflops": B * NH * 4 * T * T * HS * 3.5 / 2 / ms / 1e9}))


main()
