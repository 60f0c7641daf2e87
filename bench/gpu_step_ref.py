"""PyTorch anchor for bench/gpu_step.ts: the same LLaMA training steps on the same GPU.

Usage: python3 bench/gpu_step_ref.py <case> [steps]. Prints one JSON record like gpu_step.ts's.
The model is a plain LLaMA (RMSNorm, RoPE, causal SDPA, SwiGLU, untied LM head) at the 7B's layer
shapes. f32 runs with TF32 off (real f32); the f16 full case uses autocast f16 over f32 weights with a
fused AdamW (PyTorch's usual mixed precision); stage 1 keeps f16 weights frozen, checkpoints each layer
and takes the gradient of the input embeddings; the LoRA case adds f32 pairs of rank 128 (alpha 256) to all
seven projections of that frozen f16 model, under autocast f16, trained with fused AdamW (PEFT's usual
mixed precision), and takes the input's gradient too.
"""
import json
import sys
import time

CASES = {
    "1b_full_f32": dict(layers=4, dtype="f32", mode="full"),
    "1b_full_f16": dict(layers=4, dtype="f16", mode="full"),
    "7b_stage1_f16": dict(layers=32, dtype="f16", mode="stage1"),
    "7b_lora_f16": dict(layers=32, dtype="f16", mode="lora"),
}
LORA_RANK, LORA_ALPHA = 128, 256


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
    frozen = c["mode"] in ("stage1", "lora")
    wdt = torch.float16 if frozen else torch.float32
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

    # LoRA pairs (A [r, in] uniform, B [out, r] zero) per projection and layer, trained in f32.
    adapters = []
    if c["mode"] == "lora":
        for lay in layers:
            pairs = {}
            for n in "qkvogud":
                out_dim, in_dim = lay[n].shape
                a = (torch.rand(LORA_RANK, in_dim, device=dev) * 2 - 1) / in_dim ** 0.5
                pairs[n] = (torch.nn.Parameter(a), torch.nn.Parameter(torch.zeros(out_dim, LORA_RANK, device=dev)))
            adapters.append(pairs)

    def lin(h, lay, pairs, n):
        y = F.linear(h, lay[n])
        if pairs:
            a, b = pairs[n]
            y = y + F.linear(F.linear(h, a) * (LORA_ALPHA / LORA_RANK), b)
        return y

    def block(x, lay, pairs=None):
        h = rms(x, lay["n1"])
        q, k, v = (lin(h, lay, pairs, n).view(B, T, NH, HS).transpose(1, 2) for n in "qkv")
        a = F.scaled_dot_product_attention(rope(q), rope(k), v, is_causal=True)
        x = x + lin(a.transpose(1, 2).reshape(B, T, C), lay, pairs, "o")
        h = rms(x, lay["n2"])
        return x + lin(F.silu(lin(h, lay, pairs, "g")) * lin(h, lay, pairs, "u"), lay, pairs, "d")

    ids = torch.randint(0, V, (B, T), device=dev)
    labels = torch.randint(0, V, (B, T), device=dev)
    embeds = (torch.randn(B, T, C, device=dev, dtype=wdt) * 0.02).requires_grad_(frozen)
    trained = [t for pairs in adapters for ab in pairs.values() for t in ab] if frozen else params
    if frozen:
        for t in params:
            t.requires_grad_(False)
    opt = torch.optim.AdamW(trained, lr=1e-5, weight_decay=0.0, fused=True) if trained else None
    autocast = c["dtype"] == "f16" and c["mode"] in ("full", "lora")

    def step():
        with torch.autocast("cuda", dtype=torch.float16, enabled=autocast):
            x = embeds if frozen else F.embedding(ids, emb)
            for i, lay in enumerate(layers):
                pairs = adapters[i] if adapters else None
                x = checkpoint(block, x, lay, pairs, use_reentrant=False) if frozen else block(x, lay)
            logits = F.linear(rms(x, normf), head)
            loss = F.cross_entropy(logits.float().view(-1, V), labels.view(-1))
        loss.backward()
        if opt:
            opt.step()
            opt.zero_grad(set_to_none=True)
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
        + (" autocast-f16" if autocast else ""), "layers": L, "params": n_params,
        "trained_params": sum(t.numel() for t in trained) if opt else 0, "dtype": c["dtype"],
        "mode": c["mode"], "batch": [B, T], "median_ms": ms, "tokens_per_s": B * T / (ms / 1000),
        "peak_gib": torch.cuda.max_memory_allocated() / 2**30, "loss": loss}))


main()
