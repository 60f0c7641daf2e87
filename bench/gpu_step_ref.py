"""PyTorch anchor for bench/gpu_step.ts: the same LLaMA training steps on the same GPU.

Usage: python3 bench/gpu_step_ref.py <case> [steps]. Prints one JSON record like gpu_step.ts's.
The model is a plain LLaMA (RMSNorm, RoPE, causal SDPA, SwiGLU, untied LM head) at the 7B's layer
shapes. f32 runs with TF32 off (real f32); the f16 full case uses autocast f16 over f32 weights with a
fused AdamW (PyTorch's usual mixed precision); stage 1 keeps f16 weights frozen, checkpoints each layer
and takes the gradient of the input embeddings.
"""
import json
import sys
import time

CASES = {
    "1b_full_f32": dict(layers=4, dtype="f32", mode="full"),
    "1b_full_f16": dict(layers=4, dtype="f16", mode="full"),
    "7b_stage1_f16": dict(layers=32, dtype="f16", mode="stage1"),
}


def main():
    name = sys.argv[1]
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    c = CASES[name]
    import torch
    import torch.nn.functional as F
    from torch.utils.checkpoint import checkpoint

    if not torch.cuda.is_available():
        print(json.dumps({"what": "train_step", "case": name, "error": "no CUDA device"}))
        return
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    dev = torch.device("cuda")
    V, C, I, NH, HS, L = 32000, 4096, 11008, 32, 128, c["layers"]
    B, T = 1, 2048
    wdt = torch.float16 if c["mode"] == "stage1" else torch.float32
    torch.manual_seed(0)

    def p(*shape):
        return torch.nn.Parameter(torch.randn(*shape, device=dev, dtype=wdt) * 0.02)

    def ones():
        return torch.nn.Parameter(torch.ones(C, device=dev, dtype=wdt))

    emb, head, normf = p(V, C), p(V, C), ones()
    layers = [dict(n1=ones(), q=p(C, C), k=p(C, C), v=p(C, C), o=p(C, C), n2=ones(), g=p(I, C), u=p(I, C),
                   d=p(C, I)) for _ in range(L)]
    params = [emb, head, normf] + [t for lay in layers for t in lay.values()]
    n_params = sum(t.numel() for t in params)
    inv = 1.0 / (10000 ** (torch.arange(0, HS, 2, device=dev).float() / HS))
    ang = torch.arange(T, device=dev).float()[:, None] * inv[None, :]
    cos, sin = torch.cat([ang.cos()] * 2, -1), torch.cat([ang.sin()] * 2, -1)

    def rms(x, w):
        x32 = x.float()
        return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + 1e-5)).to(x.dtype) * w

    def rope(x):
        x1, x2 = x[..., :HS // 2], x[..., HS // 2:]
        return x * cos.to(x.dtype) + torch.cat([-x2, x1], -1) * sin.to(x.dtype)

    def block(x, lay):
        h = rms(x, lay["n1"])
        q, k, v = (F.linear(h, lay[n]).view(B, T, NH, HS).transpose(1, 2) for n in "qkv")
        a = F.scaled_dot_product_attention(rope(q), rope(k), v, is_causal=True)
        x = x + F.linear(a.transpose(1, 2).reshape(B, T, C), lay["o"])
        h = rms(x, lay["n2"])
        return x + F.linear(F.silu(F.linear(h, lay["g"])) * F.linear(h, lay["u"]), lay["d"])

    ids = torch.randint(0, V, (B, T), device=dev)
    labels = torch.randint(0, V, (B, T), device=dev)
    embeds = (torch.randn(B, T, C, device=dev, dtype=wdt) * 0.02).requires_grad_(c["mode"] == "stage1")
    if c["mode"] == "stage1":
        for t in params:
            t.requires_grad_(False)
        opt = None
    else:
        opt = torch.optim.AdamW(params, lr=1e-5, weight_decay=0.0, fused=True)
    autocast = c["dtype"] == "f16" and c["mode"] == "full"

    def step():
        with torch.autocast("cuda", dtype=torch.float16, enabled=autocast):
            x = embeds if c["mode"] == "stage1" else F.embedding(ids, emb)
            for lay in layers:
                x = checkpoint(block, x, lay, use_reentrant=False) if c["mode"] == "stage1" else block(x, lay)
            logits = F.linear(rms(x, normf), head)
            loss = F.cross_entropy(logits.float().view(-1, V), labels.view(-1))
        loss.backward()
        if opt:
            opt.step()
            opt.zero_grad(set_to_none=True)
        else:
            embeds.grad = None
        return loss.item()

    step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        loss = step()
        torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1000)
    ms = sorted(times)[len(times) // 2]
    print(json.dumps({
        "what": "train_step", "case": name, "impl": f"torch {torch.__version__} {torch.cuda.get_device_name()}"
        + (" autocast-f16" if autocast else ""), "layers": L, "params": n_params, "dtype": c["dtype"],
        "mode": c["mode"], "batch": [B, T], "median_ms": ms, "tokens_per_s": B * T / (ms / 1000),
        "peak_gib": torch.cuda.max_memory_allocated() / 2**30, "loss": loss}))


main()
