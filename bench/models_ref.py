"""PyTorch CPU reference for bench/models.ts: the same small LLaMA and ViT, forward + backward, f32.

Prints one JSON object per model: {"model", "median_ms", "impl"}. The configs must match bench/models.ts.
"""
import json
import math
import time


def main():
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        print(json.dumps({"error": "PyTorch missing: apt-get install python3-torch"}))
        return
    torch.set_num_threads(2)
    torch.manual_seed(0)
    impl = f"torch {torch.__version__} cpu x{torch.get_num_threads()}"

    def param(*shape, std=0.02):
        return (torch.randn(*shape) * std).requires_grad_(True)

    def median_ms(fn, trials=3):
        fn()
        times = []
        for _ in range(trials):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1000)
        return sorted(times)[len(times) // 2]

    # LLaMA: V=32000, C=256, 4 layers, 8 heads of 32, SwiGLU 688, B=1, T=256.
    V, C, L, NH, I, B, T = 32000, 256, 4, 8, 688, 1, 256
    HS = C // NH
    emb, head, normf = param(V, C), param(V, C), torch.ones(C, requires_grad=True)
    layers = [dict(n1=torch.ones(C, requires_grad=True), q=param(C, C), k=param(C, C), v=param(C, C),
                   o=param(C, C), n2=torch.ones(C, requires_grad=True), g=param(I, C), u=param(I, C),
                   d=param(C, I)) for _ in range(L)]
    inv = 1.0 / (10000 ** (torch.arange(0, HS, 2).float() / HS))
    ang = torch.outer(torch.arange(T).float(), inv)
    cos, sin = torch.cat([ang.cos()] * 2, -1), torch.cat([ang.sin()] * 2, -1)
    mask = torch.ones(T, T, dtype=torch.bool).tril()
    ids, labels = torch.randint(0, V, (B, T)), torch.randint(0, V, (B, T))

    def rms(x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * w

    def rope(x):
        x1, x2 = x[..., : HS // 2], x[..., HS // 2:]
        return x * cos + torch.cat([-x2, x1], -1) * sin

    def llama_step():
        x = emb[ids]
        for p in layers:
            h = rms(x, p["n1"])
            q, k, v = (F.linear(h, p[n]).view(B, T, NH, HS).transpose(1, 2) for n in "qkv")
            a = (rope(q) @ rope(k).transpose(-1, -2)) / math.sqrt(HS)
            a = a.masked_fill(~mask, float("-inf")).softmax(-1)
            x = x + F.linear((a @ v).transpose(1, 2).reshape(B, T, C), p["o"])
            h = rms(x, p["n2"])
            x = x + F.linear(F.silu(F.linear(h, p["g"])) * F.linear(h, p["u"]), p["d"])
        logits = F.linear(rms(x, normf), head)
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, V), labels[:, 1:].reshape(-1))
        loss.backward()

    print(json.dumps({"model": "llama", "median_ms": median_ms(llama_step), "impl": impl}))

    # ViT (SigLIP layout): 224 px, patch 16 (196 patches), C=256, 4 layers, 8 heads, MLP 1024, B=2.
    S, P, C, L, NH, I, B = 224, 16, 256, 4, 8, 1024, 2
    N, HS = (S // P) ** 2, C // NH
    pw, pb, pos = param(C, 3, P, P), param(C), param(N, C)
    vl = [dict(l1w=torch.ones(C, requires_grad=True), l1b=param(C), q=param(C, C), qb=param(C), k=param(C, C),
               kb=param(C), v=param(C, C), vb=param(C), o=param(C, C), ob=param(C),
               l2w=torch.ones(C, requires_grad=True), l2b=param(C), f1=param(I, C), f1b=param(I), f2=param(C, I),
               f2b=param(C)) for _ in range(L)]
    pixels = torch.randn(B, 3, S, S)

    def vit_step():
        x = F.conv2d(pixels, pw, pb, stride=P).flatten(2).transpose(1, 2) + pos
        for p in vl:
            h = F.layer_norm(x, (C,), p["l1w"], p["l1b"], 1e-6)
            q, k, v = (F.linear(h, p[n], p[n + "b"]).view(B, N, NH, HS).transpose(1, 2) for n in "qkv")
            a = ((q @ k.transpose(-1, -2)) / math.sqrt(HS)).softmax(-1)
            x = x + F.linear((a @ v).transpose(1, 2).reshape(B, N, C), p["o"], p["ob"])
            h = F.layer_norm(x, (C,), p["l2w"], p["l2b"], 1e-6)
            x = x + F.linear(F.gelu(F.linear(h, p["f1"], p["f1b"]), approximate="tanh"), p["f2"], p["f2b"])
        (x * x).mean().backward()

    print(json.dumps({"model": "vit", "median_ms": median_ms(vit_step), "impl": impl}))


main()
