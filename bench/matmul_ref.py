"""CPU reference timings of matmul for bench/matmul_speed.ts: PyTorch if importable, else numpy.

Usage: matmul_ref.py '[{"M": 256, "N": 256, "K": 256, "transB": false, "dtype": "f32"}, ...]'
Prints one JSON object: {"impl", "threads", "cases": [{..the case.., "median_ms", "gflops"}]}.
f16 cases store f16 and compute in f32 (as the GPU kernels do; PyTorch's CPU matmul has no f16).
"""
import json
import os
import sys
import time


def median_ms(fn, min_s=0.2, trials=5):
    fn()
    t0 = time.perf_counter()
    fn()
    once = max(time.perf_counter() - t0, 1e-6)
    reps = max(1, int(min_s / once))
    times = []
    for _ in range(trials):
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        times.append((time.perf_counter() - t0) / reps * 1000)
    times.sort()
    return times[len(times) // 2]


def torch_case(torch, c):
    a = torch.randn(c["M"], c["K"])
    b = torch.randn(c["N"], c["K"]) if c["transB"] else torch.randn(c["K"], c["N"])
    if c["dtype"] == "f16":
        a, b = a.half(), b.half()
        if c["transB"]:
            return lambda: (a.float() @ b.float().t()).half()
        return lambda: (a.float() @ b.float()).half()
    return (lambda: a @ b.t()) if c["transB"] else (lambda: a @ b)


def numpy_case(np, c):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((c["M"], c["K"]), dtype=np.float32)
    b = rng.standard_normal((c["N"], c["K"]) if c["transB"] else (c["K"], c["N"]), dtype=np.float32)
    if c["dtype"] == "f16":
        a, b = a.astype(np.float16), b.astype(np.float16)
        if c["transB"]:
            return lambda: (a.astype(np.float32) @ b.astype(np.float32).T).astype(np.float16)
        return lambda: (a.astype(np.float32) @ b.astype(np.float32)).astype(np.float16)
    return (lambda: a @ b.T) if c["transB"] else (lambda: a @ b)


def main():
    cases = json.loads(sys.argv[1])
    threads = os.cpu_count() or 1
    try:
        import torch

        torch.set_num_threads(threads)
        impl, make = f"torch {torch.__version__} cpu", lambda c: torch_case(torch, c)
    except ImportError:
        import numpy as np

        impl, make = f"numpy {np.__version__}", lambda c: numpy_case(np, c)
    out = []
    for c in cases:
        ms = median_ms(make(c))
        out.append({**c, "median_ms": ms, "gflops": 2 * c["M"] * c["N"] * c["K"] / ms / 1e6})
    print(json.dumps({"impl": impl, "threads": threads, "cases": out}))


if __name__ == "__main__":
    main()
