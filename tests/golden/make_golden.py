"""PyTorch golden fixtures for asvr's model tests.

Run by hand with Debian's PyTorch (1.13, CPU):

    /usr/bin/python3 tests/golden/make_golden.py [--out tests/golden/fixtures] [--only llama,clip]

Writes tests/golden/fixtures/<name>/{config.json, model.safetensors, golden.safetensors} for
<name> in llama, mistral, qwen2, siglip, clip, asvr_head, asvr_vlm, and {config.json,
golden.safetensors} for rq. The models are written in plain torch from the Hugging Face definitions
(LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, SiglipVisionModel, CLIPVisionModel) and, for
asvr_head and rq, from the ASVR reference code (RQTransformer, ASVRLlamaForCausalLM.projector and its
visual loss, RQBottleneck.quantize); asvr_vlm composes them as a LLaVA VLM (mlp2x_gelu projector,
image features spliced into the token embeddings) with the full ASVR loss, laid out as
models/asvr_model.ts builds it (its config.json is that model's AsvrConfig). There is no
`transformers` or `safetensors` package here, so the safetensors files are written by hand.
Parameters and inputs are drawn seeded, rounded to f32 (what the files store), and all math runs in
f64 from those f32 values; results are stored as f32, so every stored output is the exact answer
(to f32 rounding) for the stored inputs. See README.md.
"""

import argparse
import json
import math
import os
import struct
import sys

import torch
import torch.nn.functional as F

F64 = torch.float64

# ---------------------------------------------------------------------------------------------
# safetensors (hand-written)
# ---------------------------------------------------------------------------------------------

_ST_DTYPES = {torch.float32: "F32", torch.int64: "I64"}


def write_safetensors(path, tensors, metadata):
    """Writes {name: tensor} (f32 or i64) as safetensors: u64 LE header length, JSON header padded
    with spaces to a multiple of 8, then the raw little-endian bytes in sorted name order."""
    header = {"__metadata__": {k: str(v) for k, v in metadata.items()}}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        if t.dtype not in _ST_DTYPES:
            raise ValueError(f"{path}: tensor {name} has dtype {t.dtype}; store f32 or i64")
        raw = t.numpy().astype(t.numpy().dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {
            "dtype": _ST_DTYPES[t.dtype],
            "shape": list(t.shape),
            "data_offsets": [offset, offset + len(raw)],
        }
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for raw in blobs:
            f.write(raw)


def read_safetensors(path):
    """Reads a file written by write_safetensors back (used for the round-trip self-check)."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n].decode("utf-8"))
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        dtype = {"F32": torch.float32, "I64": torch.int64}[info["dtype"]]
        buf = bytearray(data[base + b : base + e])
        out[name] = torch.frombuffer(buf, dtype=dtype).reshape(info["shape"]).clone()
    return out


# ---------------------------------------------------------------------------------------------
# seeded parameters: drawn, rounded to f32, then used in f64
# ---------------------------------------------------------------------------------------------


class Params:
    """An ordered dict of HF-named f64 leaves whose values are exactly representable in f32."""

    def __init__(self):
        self.p = {}

    def _add(self, name, t):
        t = t.to(torch.float32).to(F64).requires_grad_(True)
        self.p[name] = t
        return t

    def normal(self, name, shape, std, mean=0.0):
        return self._add(name, torch.randn(*shape, dtype=F64) * std + mean)

    def norm_weight(self, name, n):
        """Norm weights near 1 but not exactly 1."""
        return self.normal(name, (n,), 0.1, 1.0)

    def __getitem__(self, name):
        return self.p[name]

    def get(self, name):
        return self.p.get(name)


def f32_exact(t):
    """Rounds a tensor to f32 and back to f64 (inputs the fixture stores)."""
    return t.to(torch.float32).to(F64)


# ---------------------------------------------------------------------------------------------
# LLM decoders (Llama / Mistral / Qwen2), after HF's modeling_{llama,mistral,qwen2}.py
# ---------------------------------------------------------------------------------------------


def rms_norm(x, w, eps):
    """HF LlamaRMSNorm: x * rsqrt(mean(x^2, -1) + eps) * weight (here in f64)."""
    var = x.pow(2).mean(-1, keepdim=True)
    return w * (x * torch.rsqrt(var + eps))


def rotate_half(x):
    """HF rotate_half: cat(-x2, x1) over the two halves of the last dim."""
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def rope_cos_sin(T, HS, theta):
    """cos, sin [T, HS]: inv_freq_i = theta^(-2i/HS), angle = pos * inv_freq, duplicated halves."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, HS, 2, dtype=F64) / HS))
    pos = torch.arange(T, dtype=F64)
    freqs = torch.outer(pos, inv_freq)  # [T, HS/2]
    emb = torch.cat((freqs, freqs), dim=-1)  # [T, HS]
    return emb.cos(), emb.sin()


def apply_rope(x, cos, sin):
    """x [B, NH, T, HS] -> x * cos + rotate_half(x) * sin."""
    return x * cos + rotate_half(x) * sin


def repeat_kv(x, n_rep):
    """[B, NKV, T, HS] -> [B, NKV * n_rep, T, HS]; query head h uses kv head h // n_rep."""
    B, NKV, T, HS = x.shape
    if n_rep == 1:
        return x
    return x[:, :, None, :, :].expand(B, NKV, n_rep, T, HS).reshape(B, NKV * n_rep, T, HS)


def causal_mask(T, window):
    """Bool [T, T], True where key j is visible to query i: j <= i, and i - window < j if window."""
    i = torch.arange(T)[:, None]
    j = torch.arange(T)[None, :]
    visible = j <= i
    if window is not None:
        visible = visible & (j > i - window)
    return visible


def llm_forward(cfg, P, input_ids):
    """Returns logits [B, T, V] (f64)."""
    x = P["model.embed_tokens.weight"][input_ids]  # [B, T, C]
    return llm_logits(cfg, P, llm_hidden(cfg, P, x))


def llm_hidden(cfg, P, x):
    """The decoder layers and the final RMSNorm on inputs_embeds x [B, T, C] -> [B, T, C] (f64)."""
    B, T, _ = x.shape
    C = cfg["hidden_size"]
    NH = cfg["num_attention_heads"]
    NKV = cfg["num_key_value_heads"]
    HS = C // NH
    eps = cfg["rms_norm_eps"]
    window = cfg.get("sliding_window") if cfg["model_type"] == "mistral" else None
    if cfg["model_type"] == "qwen2" and cfg.get("use_sliding_window"):
        raise ValueError("qwen2 fixture: use_sliding_window must be false")
    cos, sin = rope_cos_sin(T, HS, cfg["rope_theta"])
    mask = causal_mask(T, window)
    for i in range(cfg["num_hidden_layers"]):
        pre = f"model.layers.{i}."
        h = rms_norm(x, P[pre + "input_layernorm.weight"], eps)

        def proj(name, heads):
            y = F.linear(h, P[pre + f"self_attn.{name}.weight"], P.get(pre + f"self_attn.{name}.bias"))
            return y.view(B, T, heads, HS).transpose(1, 2)  # [B, heads, T, HS]

        q = apply_rope(proj("q_proj", NH), cos, sin)
        k = apply_rope(proj("k_proj", NKV), cos, sin)
        v = proj("v_proj", NKV)
        k = repeat_kv(k, NH // NKV)
        v = repeat_kv(v, NH // NKV)
        att = (q @ k.transpose(-1, -2)) / math.sqrt(HS)  # [B, NH, T, T]
        att = att.masked_fill(~mask, float("-inf")).softmax(-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, C)
        x = x + F.linear(y, P[pre + "self_attn.o_proj.weight"])
        h = rms_norm(x, P[pre + "post_attention_layernorm.weight"], eps)
        g = F.silu(F.linear(h, P[pre + "mlp.gate_proj.weight"]))
        u = F.linear(h, P[pre + "mlp.up_proj.weight"])
        x = x + F.linear(g * u, P[pre + "mlp.down_proj.weight"])
    return rms_norm(x, P["model.norm.weight"], eps)


def llm_logits(cfg, P, hidden):
    """hidden [B, T, C] (after the final norm) -> logits [B, T, V] = hidden @ W^T (W: lm_head or the
    tied embedding)."""
    head = P["model.embed_tokens.weight"] if cfg["tie_word_embeddings"] else P["lm_head.weight"]
    return F.linear(hidden, head)


def causal_lm_loss(logits, labels):
    """HF ForCausalLM loss: CE(logits[:, :-1], labels[:, 1:]), mean over labels != -100."""
    V = logits.shape[-1]
    return F.cross_entropy(
        logits[:, :-1, :].reshape(-1, V), labels[:, 1:].reshape(-1), ignore_index=-100, reduction="mean"
    )


def llm_params(cfg):
    C, V, I = cfg["hidden_size"], cfg["vocab_size"], cfg["intermediate_size"]
    NH, NKV = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    HS = C // NH
    bias = cfg["model_type"] == "qwen2"
    P = Params()
    # A tied embedding is also the output head: smaller, so that logits stay spread but not peaked.
    P.normal("model.embed_tokens.weight", (V, C), 0.2 if cfg["tie_word_embeddings"] else 1.0)
    std = 0.15  # ~ 1.2 / sqrt(C): residual updates of the same order as the stream
    for i in range(cfg["num_hidden_layers"]):
        pre = f"model.layers.{i}."
        P.norm_weight(pre + "input_layernorm.weight", C)
        P.normal(pre + "self_attn.q_proj.weight", (NH * HS, C), std)
        if bias:
            P.normal(pre + "self_attn.q_proj.bias", (NH * HS,), 0.1)
        P.normal(pre + "self_attn.k_proj.weight", (NKV * HS, C), std)
        if bias:
            P.normal(pre + "self_attn.k_proj.bias", (NKV * HS,), 0.1)
        P.normal(pre + "self_attn.v_proj.weight", (NKV * HS, C), std)
        if bias:
            P.normal(pre + "self_attn.v_proj.bias", (NKV * HS,), 0.1)
        P.normal(pre + "self_attn.o_proj.weight", (C, NH * HS), std)
        P.norm_weight(pre + "post_attention_layernorm.weight", C)
        P.normal(pre + "mlp.gate_proj.weight", (I, C), std)
        P.normal(pre + "mlp.up_proj.weight", (I, C), std)
        P.normal(pre + "mlp.down_proj.weight", (C, I), 0.12)
    P.norm_weight("model.norm.weight", C)
    if not cfg["tie_word_embeddings"]:
        P.normal("lm_head.weight", (V, C), 0.15)
    return P


def llm_config(kind):
    base = {
        "hidden_size": 64,
        "intermediate_size": 96,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "vocab_size": 128,
        "max_position_embeddings": 64,
        "hidden_act": "silu",
        "initializer_range": 0.02,
        "attention_dropout": 0.0,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "torch_dtype": "float32",
        "use_cache": True,
        "rope_scaling": None,
    }
    if kind == "llama":
        return {
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            **base,
            "rms_norm_eps": 1e-5,
            "rope_theta": 10000.0,
            "attention_bias": False,
            "mlp_bias": False,
            "pretraining_tp": 1,
            "tie_word_embeddings": False,
        }
    if kind == "mistral":
        return {
            "architectures": ["MistralForCausalLM"],
            "model_type": "mistral",
            **base,
            "rms_norm_eps": 1e-6,
            "rope_theta": 10000.0,
            "sliding_window": 5,
            "tie_word_embeddings": False,
        }
    if kind == "qwen2":
        return {
            "architectures": ["Qwen2ForCausalLM"],
            "model_type": "qwen2",
            **base,
            "rms_norm_eps": 1e-6,
            "rope_theta": 1000000.0,
            # As in real Qwen2 configs: a window is named but switched off (and far above T).
            "use_sliding_window": False,
            "sliding_window": 32768,
            "max_window_layers": 2,
            "tie_word_embeddings": True,
        }
    raise ValueError(f"unknown LLM fixture {kind}")


def make_llm(kind, seed):
    cfg = llm_config(kind)
    torch.manual_seed(seed)
    P = llm_params(cfg)
    B, T, V = 2, 12, cfg["vocab_size"]
    input_ids = torch.randint(0, V, (B, T), dtype=torch.int64)
    labels = input_ids.clone()
    labels[:, :3] = -100
    logits = llm_forward(cfg, P.p, input_ids)
    loss = causal_lm_loss(logits, labels)
    loss.backward()
    golden = {
        "input_ids": input_ids,
        "labels": labels,
        "logits": logits.detach().float(),
        "loss": loss.detach().float().reshape(1),
    }
    for name, t in P.p.items():
        golden["grad." + name] = t.grad.float()
    if kind == "mistral":
        # The window must matter: without it the logits differ.
        plain = llm_forward({**cfg, "sliding_window": None}, P.p, input_ids)
        assert float((plain - logits).abs().max()) > 1e-3, "mistral: sliding window has no effect"
    stats = {
        "loss": float(loss),
        "logit_std": float(logits.std()),
        "ln_V": math.log(V),
    }
    return cfg, P, golden, stats


# ---------------------------------------------------------------------------------------------
# Vision encoders (SigLIP / CLIP), after HF's modeling_siglip.py / modeling_clip.py
# ---------------------------------------------------------------------------------------------


def quick_gelu(x):
    return x * torch.sigmoid(1.702 * x)


def vision_act(name, x):
    if name == "gelu_pytorch_tanh":
        return F.gelu(x, approximate="tanh")
    if name == "quick_gelu":
        return quick_gelu(x)
    raise ValueError(f"unknown hidden_act {name}")


def vit_layer(cfg, P, pre, x):
    """One pre-LN encoder layer: x + attn(ln1(x)), then x + mlp(ln2(x)); x [B, N, C]."""
    B, N, C = x.shape
    NH = cfg["num_attention_heads"]
    HS = C // NH
    eps = cfg["layer_norm_eps"]
    h = F.layer_norm(x, (C,), P[pre + "layer_norm1.weight"], P[pre + "layer_norm1.bias"], eps)

    def proj(name):
        y = F.linear(h, P[pre + f"self_attn.{name}.weight"], P[pre + f"self_attn.{name}.bias"])
        return y.view(B, N, NH, HS).transpose(1, 2)  # [B, NH, N, HS]

    q, k, v = proj("q_proj"), proj("k_proj"), proj("v_proj")
    att = ((q @ k.transpose(-1, -2)) * HS**-0.5).softmax(-1)  # [B, NH, N, N], no mask
    y = (att @ v).transpose(1, 2).reshape(B, N, C)
    x = x + F.linear(y, P[pre + "self_attn.out_proj.weight"], P[pre + "self_attn.out_proj.bias"])
    h = F.layer_norm(x, (C,), P[pre + "layer_norm2.weight"], P[pre + "layer_norm2.bias"], eps)
    h = vision_act(cfg["hidden_act"], F.linear(h, P[pre + "mlp.fc1.weight"], P[pre + "mlp.fc1.bias"]))
    return x + F.linear(h, P[pre + "mlp.fc2.weight"], P[pre + "mlp.fc2.bias"])


def vision_forward(cfg, P, pixel_values):
    """Returns (hidden_states list as HF's output_hidden_states, post_layernorm output)."""
    clip = cfg["model_type"] == "clip_vision_model"
    p = cfg["patch_size"]
    C = cfg["hidden_size"]
    eps = cfg["layer_norm_eps"]
    pe = "vision_model.embeddings."
    x = F.conv2d(pixel_values, P[pe + "patch_embedding.weight"], P.get(pe + "patch_embedding.bias"), stride=p)
    x = x.flatten(2).transpose(1, 2)  # [B, N, C], patches in row-major (y, x) order
    if clip:
        cls = P[pe + "class_embedding"].expand(x.shape[0], 1, C)
        x = torch.cat([cls, x], dim=1)  # [B, N + 1, C]
    x = x + P[pe + "position_embedding.weight"]
    if clip:
        pre = "vision_model.pre_layrnorm."
        x = F.layer_norm(x, (C,), P[pre + "weight"], P[pre + "bias"], eps)
    hidden = [x]
    for i in range(cfg["num_hidden_layers"]):
        x = vit_layer(cfg, P, f"vision_model.encoder.layers.{i}.", x)
        hidden.append(x)
    post_ln = "vision_model.post_layernorm."
    post = F.layer_norm(x, (C,), P[post_ln + "weight"], P[post_ln + "bias"], eps)
    return hidden, post


def vision_params(cfg):
    clip = cfg["model_type"] == "clip_vision_model"
    C, I, p = cfg["hidden_size"], cfg["intermediate_size"], cfg["patch_size"]
    N = (cfg["image_size"] // p) ** 2
    P = Params()
    pe = "vision_model.embeddings."
    if clip:
        P.normal(pe + "class_embedding", (C,), 0.5)
    P.normal(pe + "patch_embedding.weight", (C, cfg["num_channels"], p, p), 0.15)
    if not clip:
        P.normal(pe + "patch_embedding.bias", (C,), 0.1)
    P.normal(pe + "position_embedding.weight", (N + 1 if clip else N, C), 0.2)
    if clip:
        P.norm_weight("vision_model.pre_layrnorm.weight", C)
        P.normal("vision_model.pre_layrnorm.bias", (C,), 0.1)
    std = 0.2  # ~ 1.1 / sqrt(C)
    for i in range(cfg["num_hidden_layers"]):
        pre = f"vision_model.encoder.layers.{i}."
        P.norm_weight(pre + "layer_norm1.weight", C)
        P.normal(pre + "layer_norm1.bias", (C,), 0.1)
        for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
            P.normal(pre + f"self_attn.{name}.weight", (C, C), std)
            P.normal(pre + f"self_attn.{name}.bias", (C,), 0.1)
        P.norm_weight(pre + "layer_norm2.weight", C)
        P.normal(pre + "layer_norm2.bias", (C,), 0.1)
        P.normal(pre + "mlp.fc1.weight", (I, C), std)
        P.normal(pre + "mlp.fc1.bias", (I,), 0.1)
        P.normal(pre + "mlp.fc2.weight", (C, I), 0.15)
        P.normal(pre + "mlp.fc2.bias", (C,), 0.1)
    P.norm_weight("vision_model.post_layernorm.weight", C)
    P.normal("vision_model.post_layernorm.bias", (C,), 0.1)
    return P


def vision_config(kind):
    base = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "num_channels": 3,
        "patch_size": 4,
        "attention_dropout": 0.0,
        "torch_dtype": "float32",
    }
    if kind == "siglip":
        return {
            "architectures": ["SiglipVisionModel"],
            "model_type": "siglip_vision_model",
            **base,
            "image_size": 28,
            "layer_norm_eps": 1e-6,
            "hidden_act": "gelu_pytorch_tanh",
            # No attention-pooling head: the fixture covers the encoder that VLMs use.
            "vision_use_head": False,
        }
    if kind == "clip":
        return {
            "architectures": ["CLIPVisionModel"],
            "model_type": "clip_vision_model",
            **base,
            "image_size": 32,
            "layer_norm_eps": 1e-5,
            "hidden_act": "quick_gelu",
            "projection_dim": 32,
            "initializer_range": 0.02,
            "initializer_factor": 1.0,
        }
    raise ValueError(f"unknown vision fixture {kind}")


def make_vision(kind, seed):
    cfg = vision_config(kind)
    torch.manual_seed(seed)
    P = vision_params(cfg)
    B, S = 2, cfg["image_size"]
    pixel_values = f32_exact(torch.rand(B, cfg["num_channels"], S, S, dtype=F64) * 2 - 1)
    hidden, post = vision_forward(cfg, P.p, pixel_values)
    probe = f32_exact(torch.randn(*hidden[-2].shape, dtype=F64))
    loss = (hidden[-2] * probe).sum()
    loss.backward()
    golden = {
        "pixel_values": pixel_values.float(),
        "features.-1": hidden[-1].detach().float(),
        "features.-2": hidden[-2].detach().float(),
        "features.0": hidden[0].detach().float(),
        "post_layernorm": post.detach().float(),
        "probe": probe.float(),
        "loss": loss.detach().float().reshape(1),
    }
    for name, t in P.p.items():
        g = t.grad if t.grad is not None else torch.zeros_like(t)
        golden["grad." + name] = g.float()
    stats = {
        "loss": float(loss),
        "feat-2_std": float(hidden[-2].std()),
        "feat-1_std": float(hidden[-1].std()),
    }
    return cfg, P, golden, stats


# ---------------------------------------------------------------------------------------------
# ASVR visual head ("RQ depth transformer") and its loss, after the reference's
# modeling_rqtransformer.py (RMSNorm, CasualDepthTransformerLayer, RQTransformer), the
# `projector` of asvr_llama.py and the visual loss of ASVRLlamaForCausalLM.forward
# ---------------------------------------------------------------------------------------------


def head_config():
    D, K = 4, 24
    return {
        "model_type": "asvr_rq_head",
        "d_llm": 48,
        "width": 32,
        # The reference hard-codes width // 128 heads (16 at width 2048); here a field, 2 heads of 16.
        "num_heads": 2,
        "layers": 3,
        "depths": D,
        "codebook_sizes": [K] * D,
        "codebook_dim": 12,
        "rms_norm_eps": 1e-6,
        "hidden_act": "gelu",
        # Naming: the head's parameters carry the reference RQTransformer's state-dict names with no
        # prefix; the projector's are those of ASVRLlamaForCausalLM.projector (Sequential(Linear,
        # GELU, Linear): projector.0.*, projector.2.*). Where they sit in a full reference checkpoint:
        "projector_prefix": "projector.",
        "head_prefix": "",
        "reference_projector_prefix": "projector.",
        "reference_head_prefix": "model.vision_tokenizer.vision_tower.rqtransformer_semantic.",
    }


def head_params(cfg):
    Dl, W, Dc = cfg["d_llm"], cfg["width"], cfg["codebook_dim"]
    D = cfg["depths"]
    P = Params()
    # Projector o = W2 gelu(W1 H): Linear(d_llm, width), GELU, Linear(width, width).
    P.normal("projector.0.weight", (W, Dl), 0.2)
    P.normal("projector.0.bias", (W,), 0.1)
    P.normal("projector.2.weight", (W, W), 0.25)
    P.normal("projector.2.bias", (W,), 0.1)
    # in_mlp_1: Linear(codebook_dim, width) on the running sums of codebook vectors.
    P.normal("in_mlp_1.weight", (W, Dc), 0.3)
    P.normal("in_mlp_1.bias", (W,), 0.1)
    std = 0.2  # ~ 1.1 / sqrt(width)
    for i in range(cfg["layers"]):
        pre = f"head_transformer.{i}."
        P.normal(pre + "self_attention.in_proj_weight", (3 * W, W), std)
        P.normal(pre + "self_attention.in_proj_bias", (3 * W,), 0.1)
        P.normal(pre + "self_attention.out_proj.weight", (W, W), std)
        P.normal(pre + "self_attention.out_proj.bias", (W,), 0.1)
        P.norm_weight(pre + "layernorm1.weight", W)
        P.norm_weight(pre + "layernorm2.weight", W)
        # Per-depth FFN weights, stored as the reference stores them (flattened over depth slots).
        P.normal(pre + "linear1.weight", (2 * W, D * W), std)
        P.normal(pre + "linear1.bias", (2 * W,), 0.1)  # exists, unused by the forward
        P.normal(pre + "linear2.weight", (W, D * 2 * W), 0.12)
        P.normal(pre + "linear2.bias", (W,), 0.1)  # exists, unused by the forward
    P.norm_weight("headnorm.weight", W)
    for d, V in enumerate(cfg["codebook_sizes"]):
        P.normal(f"heads.{d}.weight", (V, W), 0.25)
        P.normal(f"heads.{d}.bias", (V,), 0.1)
    return P


def mha(x, w_in, b_in, w_out, b_out, num_heads, mask):
    """nn.MultiheadAttention(batch_first=True) self-attention, no dropout. x [R, L, C];
    in_proj rows [0, C) = q, [C, 2C) = k, [2C, 3C) = v; scores q k^T / sqrt(HS); mask bool [L, L],
    True = may attend."""
    R, L, C = x.shape
    HS = C // num_heads
    q, k, v = F.linear(x, w_in, b_in).split(C, dim=-1)

    def heads(t):
        return t.reshape(R, L, num_heads, HS).transpose(1, 2)  # [R, NH, L, HS]

    att = (heads(q) @ heads(k).transpose(-1, -2)) / math.sqrt(HS)
    att = att.masked_fill(~mask, float("-inf")).softmax(-1)
    y = (att @ heads(v)).transpose(1, 2).reshape(R, L, C)
    return F.linear(y, w_out, b_out)


def depth_layer(cfg, P, pre, x):
    """CasualDepthTransformerLayer on x [R, D, W] (R = B * N rows, D depth slots):
    a = MHA(RMSNorm1(x)); s = RMSNorm2(a + x); return s + W2[l] gelu(W1[l] s_l) per slot l."""
    R, D, W = x.shape
    eps = cfg["rms_norm_eps"]
    h = rms_norm(x, P[pre + "layernorm1.weight"], eps)
    mask = causal_mask(D, None)
    a = mha(
        h, P[pre + "self_attention.in_proj_weight"], P[pre + "self_attention.in_proj_bias"],
        P[pre + "self_attention.out_proj.weight"], P[pre + "self_attention.out_proj.bias"],
        cfg["num_heads"], mask,
    )
    s = rms_norm(a + x, P[pre + "layernorm2.weight"], eps)
    w1 = P[pre + "linear1.weight"].reshape(2 * W, D, W)  # [2W, D, W]: slot l uses w1[:, l, :]
    w2 = P[pre + "linear2.weight"].reshape(W, D, 2 * W)  # [W, D, 2W]: slot l uses w2[:, l, :]
    u = F.gelu(torch.einsum("rlc,tlc->rlt", s, w1))  # exact (erf) GELU
    return s + torch.einsum("rlt,clt->rlc", u, w2)


def head_forward(cfg, P, hidden, codes, codebooks):
    """hidden [B, N, d_llm], codes i64 [B, N, D], codebooks [D, K, Dc] ->
    (projected o [B, N, W], depth input [B, N, D, W], logits list of [B, N, V_d])."""
    B, N, D = codes.shape
    W = cfg["width"]
    o = F.linear(F.gelu(F.linear(hidden, P["projector.0.weight"], P["projector.0.bias"])),
                 P["projector.2.weight"], P["projector.2.bias"])  # [B, N, W]
    emb = torch.stack([codebooks[d][codes[..., d]] for d in range(D)], dim=-2)  # [B, N, D, Dc]
    ctx = F.linear(emb.cumsum(dim=-2), P["in_mlp_1.weight"], P["in_mlp_1.bias"])  # [B, N, D, W]
    x = torch.cat([o.unsqueeze(-2), ctx[:, :, :-1, :]], dim=-2)  # slot 0 = o, slot d = map(c_{d-1})
    inp = x
    x = x.reshape(B * N, D, W)
    for i in range(cfg["layers"]):
        x = depth_layer(cfg, P, f"head_transformer.{i}.", x)
    x = rms_norm(x, P["headnorm.weight"], cfg["rms_norm_eps"]).reshape(B, N, D, W)
    logits = [F.linear(x[:, :, d], P[f"heads.{d}.weight"], P[f"heads.{d}.bias"]) for d in range(D)]
    return o, inp, logits


def head_loss(logits, codes):
    """Mean over depths of CE(logits[d], codes[..., d]), each a mean over all B * N rows."""
    D = codes.shape[-1]
    per = [
        F.cross_entropy(lg.reshape(-1, lg.shape[-1]), codes[..., d].reshape(-1)) for d, lg in enumerate(logits)
    ]
    return sum(per) / D


def make_head(kind, seed):
    cfg = head_config()
    torch.manual_seed(seed)
    P = head_params(cfg)
    B, N, D, K, Dc = 2, 6, cfg["depths"], cfg["codebook_sizes"][0], cfg["codebook_dim"]
    scale = torch.tensor([1.0, 0.6, 0.36, 0.22], dtype=F64)[:D]  # residual codebooks shrink with depth
    codebooks = f32_exact(torch.randn(D, K, Dc, dtype=F64) * scale[:, None, None])
    hidden = f32_exact(torch.randn(B, N, cfg["d_llm"], dtype=F64)).requires_grad_(True)
    codes = torch.randint(0, K, (B, N, D), dtype=torch.int64)
    o, inp, logits = head_forward(cfg, P.p, hidden, codes, codebooks)
    loss = head_loss(logits, codes)
    loss.backward()
    golden = {
        "hidden": hidden.detach().float(),
        "codes": codes,
        "codebooks": codebooks.float(),
        "projected": o.detach().float(),
        "depth_input": inp.detach().float(),
        "loss": loss.detach().float().reshape(1),
        "grad.hidden": hidden.grad.float(),
    }
    for d, lg in enumerate(logits):
        golden[f"logits.{d}"] = lg.detach().float()
    for name, t in P.p.items():
        g = t.grad if t.grad is not None else torch.zeros_like(t)
        golden["grad." + name] = g.float()
    # "next": hidden at patch i predicts (and is teacher-forced with) the codes of patch i + 1;
    # the last patch has no target.
    h2 = hidden.detach().clone().requires_grad_(True)
    _, _, logits_next = head_forward(cfg, P.p, h2[:, :-1], codes[:, 1:], codebooks)
    loss_next = head_loss(logits_next, codes[:, 1:])
    loss_next.backward()
    golden["loss_next"] = loss_next.detach().float().reshape(1)
    golden["grad_next.hidden"] = h2.grad.float()
    for d, lg in enumerate(logits_next):
        golden[f"logits_next.{d}"] = lg.detach().float()
    stats = {
        "loss": float(loss),
        "loss_next": float(loss_next),
        "ln_K": math.log(K),
        "logit_std": float(torch.cat([lg.reshape(-1) for lg in logits]).std()),
    }
    return cfg, P, golden, stats


# ---------------------------------------------------------------------------------------------
# Residual quantization (ASVR_SPEC section 2; the reference's RQBottleneck.quantize)
# ---------------------------------------------------------------------------------------------


def rq_config():
    return {
        "model_type": "asvr_rq",
        "rows": 16,
        "depths": 4,
        "codebook_size": 24,
        "codebook_dim": 12,
        "distance": "squared_l2",
        "tie_break": "lowest_index",
        # Every stored choice wins by at least this fraction of (|r|^2 + max_k |C_d[k]|^2).
        "min_relative_gap": 1e-3,
    }


def rq_quantize(x, codebooks):
    """x [R, Dc], codebooks [D, K, Dc] -> (codes i64 [R, D], gaps [R, D]): k_d = argmin_k
    ||r_d - C_d[k]||^2, r_{d+1} = r_d - C_d[k_d], r_0 = x; gap = second-best minus best
    distance, relative to |r_d|^2 + max_k |C_d[k]|^2."""
    r = x.clone()
    codes, gaps = [], []
    for cb in codebooks:
        dist = ((r[:, None, :] - cb[None, :, :]) ** 2).sum(-1)  # [R, K]
        top = dist.topk(2, dim=-1, largest=False).values
        scale = (r * r).sum(-1) + (cb * cb).sum(-1).max()
        k = dist.argmin(-1)
        codes.append(k)
        gaps.append((top[:, 1] - top[:, 0]) / scale)
        r = r - cb[k]
    return torch.stack(codes, -1), torch.stack(gaps, -1)


def make_rq(kind, seed):
    cfg = rq_config()
    torch.manual_seed(seed)
    R, D, K, Dc = cfg["rows"], cfg["depths"], cfg["codebook_size"], cfg["codebook_dim"]
    scale = torch.tensor([1.0, 0.6, 0.36, 0.22], dtype=F64)[:D]
    codebooks = f32_exact(torch.randn(D, K, Dc, dtype=F64) * scale[:, None, None])
    # Draw candidate rows, keep the first R without a near-tie at any depth.
    cand = f32_exact(torch.randn(4 * R, Dc, dtype=F64))
    codes, gaps = rq_quantize(cand, codebooks)
    keep = (gaps > cfg["min_relative_gap"]).all(-1).nonzero().flatten()[:R]
    assert len(keep) == R, f"rq: only {len(keep)} of {4 * R} candidate rows are free of near-ties"
    features, codes, gaps = cand[keep], codes[keep], gaps[keep]
    quantized = sum(codebooks[d][codes[:, d]] for d in range(D))
    # The chosen codes must be spread over the codebook (not all one entry).
    assert all(len(codes[:, d].unique()) >= 4 for d in range(D)), "rq: codes collapse"
    golden = {
        "features": features.float(),
        "codebooks": codebooks.float(),
        "codes": codes,
        "quantized": quantized.float(),
    }
    stats = {
        "min_gap": float(gaps.min()),
        "residual_norm": float((features - quantized).norm(dim=-1).mean()),
        "feature_norm": float(features.norm(dim=-1).mean()),
    }
    return cfg, None, golden, stats


# ---------------------------------------------------------------------------------------------
# The composed VLM (asvr_vlm): SigLIP -> mlp2x_gelu projector -> LLaMA on inputs_embeds, the RQ
# semantic tokenizer on the same encoder, the asvr_depth head; text + visual loss, as LLaVA splices
# images and as models/asvr_model.ts composes the parts
# ---------------------------------------------------------------------------------------------

# Where each part's parameters sit (models/asvr_model.ts PARAM_PREFIXES; LLaVA's layout).
VLM_PREFIXES = {
    "llm": "",
    "projector": "model.mm_projector.",
    "encoder": "model.vision_tower.vision_tower.",
    "head": "visual_head.",
}

# LLaVA's IMAGE_TOKEN_INDEX: the placeholder id at image positions (the model ignores it).
IMAGE_TOKEN = -200
IGNORE_INDEX = -100
# Every RQ choice of the stored codes wins by at least this fraction of |r|^2 + max_k |C_d[k]|^2.
VLM_MIN_RELATIVE_GAP = 1e-3


def vlm_config():
    """The fixture's AsvrConfig (models/config.ts), every field explicit so that `parseConfig` fills
    no default the generator would have to guess. The codebooks file is not part of the fixture:
    the test builds with a temporary one and writes golden.safetensors' `codebooks` into the model."""
    D, K = 2, 8
    return {
        "encoder": {
            "kind": "siglip",
            "config": {
                "hiddenSize": 32,
                "intermediateSize": 64,
                "numLayers": 3,
                "numHeads": 2,
                "imageSize": 28,
                "patchSize": 7,
                "layerNormEps": 1e-6,
                "act": "gelu_tanh",
            },
            # hidden_states[-2] = output of layer 2 of 3 (LLaVA's select_layer), before post-LN.
            "layer": -2,
            "keepCls": False,
            "input": "continuous",
            "inputTokenizer": "semantic",
        },
        "projector": {"kind": "mlp2x_gelu"},
        "llm": {
            "kind": "llama",
            "config": {
                "vocabSize": 64,
                "hiddenSize": 32,
                "intermediateSize": 64,
                "numLayers": 2,
                "numHeads": 2,
                "numKvHeads": 1,
                "headDim": 16,
                "rmsNormEps": 1e-5,
                "ropeTheta": 10000.0,
                "tieWordEmbeddings": False,
                "slidingWindow": None,
                "attentionBias": False,
                "maxPositions": 64,
            },
        },
        "visualTokenizers": [
            {
                "kind": "rq",
                "name": "semantic",
                # The VLM's own encoder, hidden_states[1] (another layer than the projector's).
                "encoder": "input",
                "layer": 1,
                "depths": D,
                "codebookSize": K,
                "sharedCodebook": False,
                "codebooks": "<temporary file: see tests/golden/README.md>",
            }
        ],
        "head": {
            "kind": "asvr_depth",
            "target": "semantic",
            "width": 32,
            "layers": 1,
            "heads": 2,
            "depths": D,
            "codebookSizes": [K] * D,
            "codebookDim": 32,
            "chunkRows": None,
            "checkpointLayers": False,
        },
        "loss": {"textWeight": 1, "visualWeight": 1, "alignment": "same", "textOnlyRows": "mask"},
    }


def vlm_part_configs(cfg):
    """The HF-style configs this file's vision / LLM code takes and the head's (asvr_head keys),
    from the AsvrConfig; refuses what the fixture's math does not cover."""
    e, l, h = cfg["encoder"]["config"], cfg["llm"]["config"], cfg["head"]
    tok = cfg["visualTokenizers"][0]
    vision = {
        "model_type": "siglip_vision_model",
        "hidden_size": e["hiddenSize"],
        "intermediate_size": e["intermediateSize"],
        "num_hidden_layers": e["numLayers"],
        "num_attention_heads": e["numHeads"],
        "num_channels": 3,
        "image_size": e["imageSize"],
        "patch_size": e["patchSize"],
        "layer_norm_eps": e["layerNormEps"],
        "hidden_act": {"gelu_tanh": "gelu_pytorch_tanh"}[e["act"]],
    }
    llm = {
        "model_type": "llama",
        "vocab_size": l["vocabSize"],
        "hidden_size": l["hiddenSize"],
        "intermediate_size": l["intermediateSize"],
        "num_hidden_layers": l["numLayers"],
        "num_attention_heads": l["numHeads"],
        "num_key_value_heads": l["numKvHeads"],
        "rms_norm_eps": l["rmsNormEps"],
        "rope_theta": l["ropeTheta"],
        "tie_word_embeddings": l["tieWordEmbeddings"],
    }
    head = {
        "d_llm": l["hiddenSize"],
        "width": h["width"],
        "num_heads": h["heads"],
        "layers": h["layers"],
        "depths": h["depths"],
        "codebook_sizes": h["codebookSizes"],
        "codebook_dim": h["codebookDim"],
        "rms_norm_eps": 1e-6,
    }
    L = e["numLayers"]
    assert l["headDim"] * l["numHeads"] == l["hiddenSize"], "asvr_vlm: llm_hidden assumes HS = C / NH"
    assert not l["attentionBias"] and l["slidingWindow"] is None, "asvr_vlm: plain LLaMA only"
    # Layers strictly inside the stack: at layer L the TypeScript SigLIP adds its post-layernorm.
    assert 0 < L + 1 + cfg["encoder"]["layer"] < L and 0 < tok["layer"] < L, "asvr_vlm: feature layers"
    assert tok["layer"] != L + 1 + cfg["encoder"]["layer"], "asvr_vlm: use two different feature layers"
    assert h["codebookDim"] == e["hiddenSize"] and h["depths"] == tok["depths"], "asvr_vlm: head vs tokenizer"
    assert cfg["loss"] == {"textWeight": 1, "visualWeight": 1, "alignment": "same", "textOnlyRows": "mask"}
    return vision, llm, head


def vlm_batch(V, N, gen):
    """B = 2 rows of T = 24 tokens: row 0 = <s>, N = 16 image positions (IMAGE_TOKEN), a 2-token
    prompt, a 5-token answer; row 1 (text-only: no image, no image positions) = <s>, a 10-token prompt,
    an 11-token answer, 2 pad tokens (id 0). Labels: -100 at <s>, image positions, prompts and pads;
    the token id elsewhere. Ordinary tokens are drawn from [3, V) (0-2: pad / <s> / </s>)."""
    B, T = 2, 24
    ids = torch.randint(3, V, (B, T), dtype=torch.int64, generator=gen)
    ids[:, 0] = 1
    labels = ids.clone()
    labels[:, 0] = IGNORE_INDEX
    image_positions = torch.full((B, N), -1, dtype=torch.int64)
    # Row 0: image at 1..N, prompt at N+1..N+2, answer at N+3..T-1.
    image_positions[0] = torch.arange(1, 1 + N)
    ids[0, 1 : 1 + N] = IMAGE_TOKEN
    labels[0, 1 : 1 + N + 2] = IGNORE_INDEX
    # Row 1: prompt at 1..10, answer at 11..21, pads at 22..23.
    labels[1, 1:11] = IGNORE_INDEX
    ids[1, 22:] = 0
    labels[1, 22:] = IGNORE_INDEX
    has_image = torch.tensor([1, 0], dtype=torch.int64)
    return ids, labels, image_positions, has_image


def vlm_codebooks(feats, D, K, gen):
    """Codebooks [D, K, Dc] for the image's tokenizer features feats [R, Dc]: depth 0 drawn around
    the features' mean (std 0.6 of the features' per-dimension std, so the codes spread instead of
    all picking the codeword nearest the mean), deeper ones N(0, 0.6^d * that std); redrawn (from
    the same generator) until every choice wins by VLM_MIN_RELATIVE_GAP. Returns (codebooks,
    codes [R, D], smallest gap, draws)."""
    mu, sd = feats.mean(0), float(feats.std(0).mean())
    for draw in range(1, 101):
        noise = torch.randn(D, K, feats.shape[1], dtype=F64, generator=gen)
        scale = torch.tensor([0.6**d for d in range(1, D + 1)], dtype=F64) * sd
        cb = noise * scale[:, None, None]
        cb[0] += mu
        cb = f32_exact(cb)
        codes, gaps = rq_quantize(feats, cb)
        spread = all(len(codes[:, d].unique()) >= 4 for d in range(D))
        if float(gaps.min()) > VLM_MIN_RELATIVE_GAP and spread:
            return cb, codes, float(gaps.min()), draw
    raise AssertionError("asvr_vlm: no codebook draw in 100 is free of near-ties")


def vlm_hidden(llm_cfg, P, ids, image_positions, img):
    """LLaVA's splice: token embeddings [B, T, C] with the projected features img [B_img, N, C] of
    the image rows (in row order) at their positions, through the decoder -> hidden [B, T, C]. The
    placeholder ids at image positions are never looked up (their embedding rows get no gradient)."""
    B, T = ids.shape
    E = P["model.embed_tokens.weight"]
    rows, k = [], 0
    for b in range(B):
        pos = image_positions[b]
        x = E[ids[b].clamp(min=0)]  # [T, C]; the image rows are replaced below
        if pos[0] >= 0:
            s, n = int(pos[0]), len(pos)
            assert torch.equal(pos, torch.arange(s, s + n)), "asvr_vlm: image positions are contiguous"
            x = torch.cat([x[:s], img[k], x[s + n :]], dim=0)
            k += 1
        rows.append(x)
    return llm_hidden(llm_cfg, P, torch.stack(rows))


def make_vlm(kind, seed):
    cfg = vlm_config()
    vcfg, lcfg, hcfg = vlm_part_configs(cfg)
    torch.manual_seed(seed)  # parameters; the batch and the codebooks draw from their own stream
    gen = torch.Generator().manual_seed(seed + 1)
    pv, pl, ph = vision_params(vcfg), llm_params(lcfg), head_params(hcfg)
    Cv, C = vcfg["hidden_size"], lcfg["hidden_size"]
    pp = Params()
    # mlp2x_gelu (LLaVA): Linear(Cv, C), exact GELU, Linear(C, C); nn.Sequential indices 0 and 2.
    pp.normal("0.weight", (C, Cv), 0.1)
    pp.normal("0.bias", (C,), 0.1)
    pp.normal("2.weight", (C, C), 0.25)
    pp.normal("2.bias", (C,), 0.1)
    P = Params()
    for part, sub in (("encoder", pv), ("projector", pp), ("llm", pl), ("head", ph)):
        for name, t in sub.p.items():
            P.p[VLM_PREFIXES[part] + name] = t
    head_view = {
        n[len(VLM_PREFIXES["head"]) :]: t for n, t in P.p.items() if n.startswith(VLM_PREFIXES["head"])
    }
    enc_view = {
        n[len(VLM_PREFIXES["encoder"]) :]: t for n, t in P.p.items() if n.startswith(VLM_PREFIXES["encoder"])
    }
    proj = {n: P.p[VLM_PREFIXES["projector"] + n] for n in pp.p}

    S = vcfg["image_size"]
    tok = cfg["visualTokenizers"][0]
    D, K = tok["depths"], tok["codebookSize"]
    N = (S // vcfg["patch_size"]) ** 2
    ids, labels, image_positions, has_image = vlm_batch(lcfg["vocab_size"], N, gen)
    B = ids.shape[0]
    img_rows = [b for b in range(B) if has_image[b]]
    pixel_values = f32_exact(torch.rand(B, 3, S, S, dtype=F64, generator=gen) * 2 - 1)
    pixel_values[has_image == 0] = 0.0  # a text-only row's image is zero (as the model feeds it)

    # Frozen: the encoder's features (no gradients), the tokenizer's codes.
    with torch.no_grad():
        hidden_states, _ = vision_forward(vcfg, enc_view, pixel_values)
    feats_in = hidden_states[cfg["encoder"]["layer"]]  # [B, N, Cv]
    feats_tok = hidden_states[tok["layer"]]  # [B, N, Cv]
    img_feats = feats_tok[img_rows].reshape(-1, Cv)
    codebooks, img_codes, min_gap, draws = vlm_codebooks(img_feats, D, K, gen)
    codes = torch.full((B, N, D), IGNORE_INDEX, dtype=torch.int64)  # text-only rows: masked
    codes[img_rows] = img_codes.reshape(len(img_rows), N, D)

    # Projector on the image rows, spliced into the embeddings; the LLM; the text loss.
    img = F.linear(F.gelu(F.linear(feats_in[img_rows], proj["0.weight"], proj["0.bias"])),
                   proj["2.weight"], proj["2.bias"])  # [B_img, N, C]
    hidden = vlm_hidden(lcfg, P.p, ids, image_positions, img)  # [B, T, C]
    logits = llm_logits(lcfg, P.p, hidden)
    text = causal_lm_loss(logits, labels)
    # Visual loss: the head on the hidden states at the image positions of the image rows. (The
    # model also runs it on zero rows for the text-only row, whose targets are all -100: they count
    # for nothing and get no gradient, so leaving them out is the same loss and gradients.)
    h_img = torch.stack([hidden[b, image_positions[b]] for b in img_rows])  # [B_img, N, C]
    _, _, head_logits = head_forward(hcfg, head_view, h_img, codes[img_rows], codebooks)
    visual = head_loss(head_logits, codes[img_rows])
    total = text + visual
    total.backward()
    # Self-check of that shortcut: the head on all B rows as the model runs it (zero hidden states and
    # all-(-100) targets for the text-only row; its teacher-forcing codes then do not matter, here 0)
    # gives the same loss and hidden-state gradient at the image rows, and no gradient elsewhere.
    text_rows = [b for b in range(B) if not has_image[b]]
    h_all = torch.zeros(B, N, C, dtype=F64)
    h_all[img_rows] = h_img.detach()
    h_all.requires_grad_(True)
    h_part = h_img.detach().clone().requires_grad_(True)
    full = head_loss(head_forward(hcfg, head_view, h_all, codes.clamp(min=0), codebooks)[2], codes)
    part = head_loss(head_forward(hcfg, head_view, h_part, codes[img_rows], codebooks)[2], codes[img_rows])
    (g_all,) = torch.autograd.grad(full, h_all)
    (g_part,) = torch.autograd.grad(part, h_part)
    assert abs(float(full - visual)) < 1e-12 and abs(float(part - visual)) == 0.0, "asvr_vlm: masked rows"
    assert torch.allclose(g_all[img_rows], g_part, rtol=0, atol=1e-15) and not g_all[text_rows].any()

    golden = {
        "input_ids": ids,
        "labels": labels,
        "image_positions": image_positions,
        "has_image": has_image,
        "pixel_values": pixel_values.float(),
        "features.projector": feats_in.float(),
        "features.tokenizer": feats_tok.float(),
        "codebooks": codebooks.float(),
        "codes": codes,
        "logits": logits.detach().float(),
        "loss.text": text.detach().float().reshape(1),
        "loss.visual": visual.detach().float().reshape(1),
        "loss.total": total.detach().float().reshape(1),
    }
    for d, lg in enumerate(head_logits):
        golden[f"head_logits.{d}"] = lg.detach().float()
    frozen = []
    for name, t in P.p.items():
        if t.grad is None:
            frozen.append(name)
        else:
            golden["grad." + name] = t.grad.float()
    # Exactly the frozen parts get no gradient: the encoder and the head's unused FFN biases (which
    # the TypeScript head keeps frozen); everything else is trained.
    unused = [n for n in frozen if not n.startswith(VLM_PREFIXES["encoder"])]
    assert len(unused) == 2 * hcfg["layers"] and all(
        n.startswith("visual_head.head_transformer.") and n.endswith((".linear1.bias", ".linear2.bias"))
        for n in unused
    ), unused
    assert len(frozen) == len(pv.p) + len(unused)
    stats = {
        "text": float(text),
        "visual": float(visual),
        "ln_V": math.log(lcfg["vocab_size"]),
        "ln_K": math.log(K),
        "img_std": float(img.std()),
        "feat_in_std": float(feats_in[img_rows].std()),
        "min_gap": min_gap,
        "codebook_draws": draws,
        "min_codes_per_depth": min(len(img_codes[:, d].unique()) for d in range(D)),
    }
    return cfg, P, golden, stats


# ---------------------------------------------------------------------------------------------
# self-checks of the definitions above against independent formulations
# ---------------------------------------------------------------------------------------------


def self_checks():
    torch.manual_seed(123)
    # RMSNorm against the literal formula.
    x = torch.randn(3, 8, dtype=F64)
    w = torch.randn(8, dtype=F64)
    ref = x / torch.sqrt((x * x).sum(-1, keepdim=True) / 8 + 1e-6) * w
    assert torch.allclose(rms_norm(x, w, 1e-6), ref)
    # Rotate-half RoPE: pairs (d, d + HS/2) rotate by angle pos * theta^(-2d/HS).
    B, NH, T, HS = 1, 2, 5, 8
    q = torch.randn(B, NH, T, HS, dtype=F64)
    cos, sin = rope_cos_sin(T, HS, 10000.0)
    r = apply_rope(q, cos, sin)
    for t in range(T):
        for d in range(HS // 2):
            a = t * 10000.0 ** (-2 * d / HS)
            x1, x2 = q[..., t, d], q[..., t, d + HS // 2]
            assert torch.allclose(r[..., t, d], x1 * math.cos(a) - x2 * math.sin(a))
            assert torch.allclose(r[..., t, d + HS // 2], x2 * math.cos(a) + x1 * math.sin(a))
    # Window mask: key j visible to query i iff i - w < j <= i.
    m = causal_mask(7, 3)
    for i in range(7):
        for j in range(7):
            assert bool(m[i, j]) == (i - 3 < j <= i)
    # GQA: query head h reads kv head h // (NH / NKV).
    kv = torch.randn(1, 2, 3, 4, dtype=F64)
    rep = repeat_kv(kv, 2)
    for h in range(4):
        assert torch.equal(rep[:, h], kv[:, h // 2])
    # quick_gelu / gelu tanh against their formulas.
    z = torch.linspace(-4, 4, 17, dtype=F64)
    assert torch.allclose(quick_gelu(z), z / (1 + torch.exp(-1.702 * z)))
    tanh_ref = 0.5 * z * (1 + torch.tanh(math.sqrt(2 / math.pi) * (z + 0.044715 * z**3)))
    assert torch.allclose(F.gelu(z, approximate="tanh"), tanh_ref)
    # Patch conv == unfold + matmul over (channel, dy, dx) in row-major patch order.
    img = torch.randn(2, 3, 8, 8, dtype=F64)
    wt = torch.randn(5, 3, 4, 4, dtype=F64)
    conv = F.conv2d(img, wt, stride=4).flatten(2).transpose(1, 2)
    patches = img.reshape(2, 3, 2, 4, 2, 4).permute(0, 2, 4, 1, 3, 5).reshape(2, 4, 48)
    assert torch.allclose(conv, patches @ wt.reshape(5, 48).T)
    # The vision layer against torch's own pre-LN nn.TransformerEncoderLayer (packed q/k/v).
    for act in ("gelu_pytorch_tanh", "quick_gelu"):
        C, NH, I = 8, 2, 12
        cfg = {"num_attention_heads": NH, "layer_norm_eps": 1e-5, "hidden_act": act}
        ref = torch.nn.TransformerEncoderLayer(
            C, NH, I, dropout=0.0, activation=lambda t, a=act: vision_act(a, t),
            layer_norm_eps=1e-5, batch_first=True, norm_first=True, dtype=F64,
        )
        for prm in ref.parameters():
            torch.nn.init.normal_(prm, 0.0, 0.3)
        pre = "l."
        P = {
            pre + "layer_norm1.weight": ref.norm1.weight, pre + "layer_norm1.bias": ref.norm1.bias,
            pre + "layer_norm2.weight": ref.norm2.weight, pre + "layer_norm2.bias": ref.norm2.bias,
            pre + "self_attn.out_proj.weight": ref.self_attn.out_proj.weight,
            pre + "self_attn.out_proj.bias": ref.self_attn.out_proj.bias,
            pre + "mlp.fc1.weight": ref.linear1.weight, pre + "mlp.fc1.bias": ref.linear1.bias,
            pre + "mlp.fc2.weight": ref.linear2.weight, pre + "mlp.fc2.bias": ref.linear2.bias,
        }
        for n, w, b in zip(
            ("q_proj", "k_proj", "v_proj"),
            ref.self_attn.in_proj_weight.chunk(3),
            ref.self_attn.in_proj_bias.chunk(3),
        ):
            P[pre + f"self_attn.{n}.weight"], P[pre + f"self_attn.{n}.bias"] = w, b
        xin = torch.randn(2, 5, C, dtype=F64)
        ref.eval()
        with torch.no_grad():
            assert torch.allclose(vit_layer(cfg, P, pre, xin), ref(xin), atol=1e-10), act
    # Causal LM loss against a manual shifted CE.
    logits = torch.randn(2, 4, 6, dtype=F64)
    labels = torch.tensor([[-100, 1, 2, 3], [-100, -100, 5, 0]])
    tot, n = 0.0, 0
    for b in range(2):
        for t in range(3):
            y = int(labels[b, t + 1])
            if y != -100:
                tot += float(torch.logsumexp(logits[b, t], 0) - logits[b, t, y])
                n += 1
    assert abs(float(causal_lm_loss(logits, labels)) - tot / n) < 1e-12
    head_self_checks()


def head_self_checks():
    """The ASVR head's pieces against independent formulations."""
    # A depth layer against torch's nn.MultiheadAttention with the reference's bool mask
    # (triu(ones, 1): True = blocked) and the per-slot FFN as a loop over column blocks of the
    # flat [2W, D*W] / [W, D*2W] weights.
    R, D, W, NH = 3, 4, 8, 2
    cfg = {"rms_norm_eps": 1e-6, "num_heads": NH}
    ref = torch.nn.MultiheadAttention(W, NH, batch_first=True, dtype=F64)
    for prm in ref.parameters():
        torch.nn.init.normal_(prm, 0.0, 0.3)
    pre = "l."
    P = {
        pre + "self_attention.in_proj_weight": ref.in_proj_weight,
        pre + "self_attention.in_proj_bias": ref.in_proj_bias,
        pre + "self_attention.out_proj.weight": ref.out_proj.weight,
        pre + "self_attention.out_proj.bias": ref.out_proj.bias,
        pre + "layernorm1.weight": 1 + 0.1 * torch.randn(W, dtype=F64),
        pre + "layernorm2.weight": 1 + 0.1 * torch.randn(W, dtype=F64),
        pre + "linear1.weight": 0.3 * torch.randn(2 * W, D * W, dtype=F64),
        pre + "linear2.weight": 0.3 * torch.randn(W, D * 2 * W, dtype=F64),
    }
    x = torch.randn(R, D, W, dtype=F64)
    with torch.no_grad():
        h = x / torch.sqrt((x * x).mean(-1, keepdim=True) + 1e-6) * P[pre + "layernorm1.weight"]
        a, _ = ref(h, h, h, attn_mask=torch.triu(torch.ones(D, D), diagonal=1).bool(), need_weights=False)
        s = a + x
        s = s / torch.sqrt((s * s).mean(-1, keepdim=True) + 1e-6) * P[pre + "layernorm2.weight"]
        want = s.clone()
        for l in range(D):
            w1 = P[pre + "linear1.weight"][:, l * W : (l + 1) * W]
            w2 = P[pre + "linear2.weight"][:, l * 2 * W : (l + 1) * 2 * W]
            u = s[:, l] @ w1.T
            u = 0.5 * u * (1 + torch.erf(u / math.sqrt(2)))
            want[:, l] += u @ w2.T
        got = depth_layer(cfg, P, pre, x)
        assert torch.allclose(got, want, atol=1e-10), "depth layer vs nn.MultiheadAttention + loop"
        # Causal over depth: slot j's output ignores slots > j.
        x2 = x.clone()
        x2[:, 2:] += 1.0
        got2 = depth_layer(cfg, P, pre, x2)
        assert torch.equal(got2[:, :2], got[:, :2]) and not torch.allclose(got2[:, 2:], got[:, 2:])
    # Head loss against a loop: mean over depths of the mean CE over rows.
    logits = [torch.randn(2, 3, 5, dtype=F64) for _ in range(4)]
    codes = torch.randint(0, 5, (2, 3, 4))
    tot = 0.0
    for d in range(4):
        acc = 0.0
        for b in range(2):
            for n in range(3):
                row = logits[d][b, n]
                acc += float(torch.logsumexp(row, 0) - row[codes[b, n, d]])
        tot += acc / 6
    assert abs(float(head_loss(logits, codes)) - tot / 4) < 1e-12
    # RQ: the direct squared distance picks what the reference's expansion
    # |r|^2 + |c|^2 - 2 r.c picks; argmin breaks ties toward the lowest index.
    xs = torch.randn(20, 6, dtype=F64)
    cbs = torch.randn(3, 10, 6, dtype=F64)
    codes, _ = rq_quantize(xs, cbs)
    r = xs.clone()
    for d in range(3):
        dist = (r * r).sum(-1, keepdim=True) + (cbs[d] * cbs[d]).sum(-1)[None] - 2 * r @ cbs[d].T
        assert torch.equal(dist.argmin(-1), codes[:, d])
        r = r - cbs[d][codes[:, d]]
    assert int(torch.tensor([3.0, 1.0, 2.0, 1.0, 1.0]).argmin()) == 1
    tie_cb = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]], dtype=F64)
    assert rq_quantize(torch.tensor([[1.0, 1.0]], dtype=F64), tie_cb)[0].tolist() == [[0]]


# ---------------------------------------------------------------------------------------------


FIXTURES = {
    "llama": (make_llm, 1001),
    "mistral": (make_llm, 1002),
    "qwen2": (make_llm, 1003),
    "siglip": (make_vision, 2001),
    "clip": (make_vision, 2002),
    "asvr_head": (make_head, 3001),
    "rq": (make_rq, 3002),
    "asvr_vlm": (make_vlm, 3003),
}


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(here, "fixtures"))
    ap.add_argument("--only", default=",".join(FIXTURES), help="comma-separated fixture names")
    args = ap.parse_args()
    torch.set_num_threads(1)
    self_checks()
    for name in args.only.split(","):
        if name not in FIXTURES:
            sys.exit(f"make_golden.py: unknown fixture '{name}'; choose from {', '.join(FIXTURES)}")
        make, seed = FIXTURES[name]
        out_dir = os.path.join(args.out, name)
        os.makedirs(out_dir, exist_ok=True)
        cfg, P, golden, stats = make(name, seed)
        meta = {
            "format": "pt",
            "generator": "tests/golden/make_golden.py",
            "torch": torch.__version__,
            "seed": seed,
        }
        # rq has no trainable parameters: no model.safetensors.
        model = {k: v.detach().float() for k, v in P.p.items()} if P is not None else {}
        with open(os.path.join(out_dir, "config.json"), "w") as f:
            json.dump(cfg, f, indent=2)
            f.write("\n")
        files = (("golden.safetensors", golden),)
        if P is not None:
            files = (("model.safetensors", model),) + files
        for fname, tensors in files:
            write_safetensors(os.path.join(out_dir, fname), tensors, meta)
        # Round trip: what the files hold is what was computed.
        for fname, want in files:
            got = read_safetensors(os.path.join(out_dir, fname))
            assert set(got) == set(want), fname
            for k in want:
                assert torch.equal(got[k], want[k].to(got[k].dtype)), f"{name}/{fname}: {k}"
        size = sum(os.path.getsize(os.path.join(out_dir, f)) for f in os.listdir(out_dir))
        desc = ", ".join(f"{k} {v:.4g}" for k, v in stats.items())
        print(f"{name}: {len(model)} params, {size / 1024:.0f} KiB; {desc}")


if __name__ == "__main__":
    main()
