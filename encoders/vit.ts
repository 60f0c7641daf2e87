/**
 * The ViT vision encoder of SigLIP and CLIP, one class serving both (they differ by config only):
 * patch embedding (conv as matmul), learned positions, pre-norm encoder layers (layer norm,
 * bidirectional multi-head attention, layer norm, MLP), parameters under Hugging Face's names so
 * HF folders load and save as they are.
 *
 * - SigLIP: no CLS token; post_layernorm applies only when the last layer is selected.
 * - CLIP: a CLS token before the patches (positions include it), `pre_layrnorm` before the encoder,
 *   quick GELU; its post_layernorm belongs to the pooled output and is not applied to hidden states.
 *
 * Shapes: B images, 3 x H x W pixels, p patch side, N = floor(H/p)^2 patches, C width, NH heads of HS.
 * @module
 */

import { join } from "node:path";
import { reshape } from "../core/autograd.ts";
import type { DType } from "../core/dtype.ts";
import type { Engine } from "../core/engine.ts";
import { add, cast, gelu, quickGelu } from "../core/kernels/elementwise/elementwise.ts";
import { attention, MAX_HEAD_SIZE } from "../core/kernels/attention/attention.ts";
import { layerNorm } from "../core/kernels/layernorm/layernorm.ts";
import { matmul } from "../core/kernels/matmul/matmul.ts";
import { permute } from "../core/kernels/permute/permute.ts";
import { broadcastTo } from "../core/kernels/reduce/reduce.ts";
import { concat, slice } from "../core/kernels/rows/rows.ts";
import { randn } from "../core/random.ts";
import type { Tensor } from "../core/tensor.ts";
import { readJsonFile } from "../io/json.ts";
import { loadParams, type LoadProgress, writeHfFolder } from "../io/params.ts";
import { Checkpoint } from "../io/safetensors.ts";
import { checkVisionConfig, type VisionConfig, visionConfigFromHf, visionConfigToHf } from "./config.ts";
import { patchEmbed } from "./patch_embed.ts";

/** Options of {@linkcode VisionEncoder.create}. */
export interface VisionCreateOptions {
  /** Storage dtype of the parameters (default "f32"; "f16" needs `e.hasF16`). */
  dtype?: DType;
  /** Seed of the random initialization (default 0). */
  seed?: number;
}

/** Options of {@linkcode VisionEncoder.load}. */
export interface VisionLoadOptions {
  /** Storage dtype of the parameters (default "f32"); the checkpoint's tensors convert on load. */
  dtype?: DType;
  /**
   * Prefix of the vision tower's names in the checkpoint, before HF's `vision_model.` (e.g.
   * "model.vision_tower.vision_tower." in a LLaVA checkpoint). Default: none.
   */
  prefix?: string;
  /** Called after each tensor is on the GPU (see `loadParams`). */
  onProgress?: (p: LoadProgress) => void;
}

/** Options of {@linkcode VisionEncoder.forward}. */
export interface VisionForwardOptions {
  /**
   * Which hidden state to return, indexed like HF's `hidden_states`: 0 is the embeddings output,
   * i in 1..L the output of layer i; negative counts from the end (-1: the last layer, -2: the
   * LLaVA recipe's). Only the layers up to the selected one run.
   */
  layer: number;
  /** CLIP: keep the CLS row in front of the patches (default true); false is LLaVA's "patch" select. */
  keepCls?: boolean;
  /**
   * Apply post_layernorm to the result. Default: true for SigLIP when the last layer is selected
   * (its `last_hidden_state`), false otherwise.
   */
  postLayerNorm?: boolean;
}

/** One encoder layer's parameters: tensors, or what `makeVisionParams`'s caller makes of each. */
interface EncoderLayer<T = Tensor> {
  ln1w: T; // [C]
  ln1b: T; // [C]
  qw: T; // [C, C]
  qb: T; // [C]
  kw: T; // [C, C]
  kb: T; // [C]
  vw: T; // [C, C]
  vb: T; // [C]
  ow: T; // [C, C]
  ob: T; // [C]
  ln2w: T; // [C]
  ln2b: T; // [C]
  fc1w: T; // [F, C]
  fc1b: T; // [F]
  fc2w: T; // [C, F]
  fc2b: T; // [C]
}

/** HF name suffix of each layer parameter, after `vision_model.encoder.layers.{i}.`. */
const LAYER_NAMES: Record<keyof EncoderLayer, string> = {
  ln1w: "layer_norm1.weight",
  ln1b: "layer_norm1.bias",
  qw: "self_attn.q_proj.weight",
  qb: "self_attn.q_proj.bias",
  kw: "self_attn.k_proj.weight",
  kb: "self_attn.k_proj.bias",
  vw: "self_attn.v_proj.weight",
  vb: "self_attn.v_proj.bias",
  ow: "self_attn.out_proj.weight",
  ob: "self_attn.out_proj.bias",
  ln2w: "layer_norm2.weight",
  ln2b: "layer_norm2.bias",
  fc1w: "mlp.fc1.weight",
  fc1b: "mlp.fc1.bias",
  fc2w: "mlp.fc2.weight",
  fc2b: "mlp.fc2.bias",
};

/** How a fresh encoder starts a parameter: N(0, std^2), ones (norm weights) or zeros (norm biases). */
type VisionInit = { normal: number } | "ones" | "zeros";

/** Every parameter of a ViT by role; the ones its family lacks are null. */
interface VisionParams<T> {
  cls: T | null; // [C] (CLIP)
  patchW: T; // [C, 3, p, p]
  patchB: T | null; // [C] (SigLIP)
  pos: T; // [N(+1), C]
  preLn: [T, T] | null; // [C] each (CLIP's pre_layrnorm)
  layers: EncoderLayer<T>[];
  postLn: [T, T]; // [C] each
}

/**
 * Every parameter of a ViT of `cfg`, in checkpoint order: `make(name, shape, init)` for each (HF
 * names), returned by role. The encoder makes its tensors through it and {@linkcode visionParamShapes}
 * only notes the shapes: one description of the architecture.
 */
function makeVisionParams<T>(
  cfg: VisionConfig,
  make: (name: string, shape: number[], init: VisionInit) => T,
): VisionParams<T> {
  const C = cfg.hiddenSize, F = cfg.intermediateSize, p = cfg.patchSize;
  const N = Math.floor(cfg.imageSize / p) ** 2;
  const cls = cfg.arch === "clip";
  const w = (name: string, rows: number, cols: number) =>
    make(name, [rows, cols], { normal: 1 / Math.sqrt(cols) });
  const b = (name: string, n: number) => make(name, [n], { normal: 0.02 });
  const ones = (name: string, n: number) => make(name, [n], "ones");
  const zeros = (name: string, n: number) => make(name, [n], "zeros");

  const emb = "vision_model.embeddings.";
  const clsToken = cls ? make(`${emb}class_embedding`, [C], { normal: 0.02 }) : null;
  const patchW = make(`${emb}patch_embedding.weight`, [C, 3, p, p], { normal: 1 / Math.sqrt(3 * p * p) });
  const patchB = cls ? null : b(`${emb}patch_embedding.bias`, C);
  const P = N + (cls ? 1 : 0);
  const pos = make(`${emb}position_embedding.weight`, [P, C], { normal: 0.02 });
  const preLn: [T, T] | null = cls
    ? [ones("vision_model.pre_layrnorm.weight", C), zeros("vision_model.pre_layrnorm.bias", C)]
    : null;
  const layers: EncoderLayer<T>[] = [];
  for (let i = 0; i < cfg.numLayers; i++) {
    const n = (k: keyof EncoderLayer) => `vision_model.encoder.layers.${i}.${LAYER_NAMES[k]}`;
    layers.push({
      ln1w: ones(n("ln1w"), C),
      ln1b: zeros(n("ln1b"), C),
      qw: w(n("qw"), C, C),
      qb: b(n("qb"), C),
      kw: w(n("kw"), C, C),
      kb: b(n("kb"), C),
      vw: w(n("vw"), C, C),
      vb: b(n("vb"), C),
      ow: w(n("ow"), C, C),
      ob: b(n("ob"), C),
      ln2w: ones(n("ln2w"), C),
      ln2b: zeros(n("ln2b"), C),
      fc1w: w(n("fc1w"), F, C),
      fc1b: b(n("fc1b"), F),
      fc2w: w(n("fc2w"), C, F),
      fc2b: b(n("fc2b"), C),
    });
  }
  const postLn: [T, T] = [
    ones("vision_model.post_layernorm.weight", C),
    zeros("vision_model.post_layernorm.bias", C),
  ];
  return { cls: clsToken, patchW, patchB, pos, preLn, layers, postLn };
}

/**
 * The HF name and shape of every parameter of a ViT of `cfg` (what `--plan` counts), in checkpoint
 * order; nothing is made.
 */
export function visionParamShapes(cfg: VisionConfig): Map<string, number[]> {
  const out = new Map<string, number[]>();
  makeVisionParams(cfg, (name, shape) => out.set(name, shape));
  return out;
}

/** A SigLIP or CLIP ViT vision encoder. Build with {@linkcode VisionEncoder.create} or {@linkcode VisionEncoder.load}. */
export class VisionEncoder {
  /** The configuration. */
  readonly cfg: VisionConfig;
  /** Storage dtype of the parameters. */
  readonly dtype: DType;
  #params = new Map<string, Tensor>();
  #layers: EncoderLayer[] = [];
  #patchW: Tensor; // [C, 3, p, p]
  #patchB: Tensor | null; // [C] (SigLIP)
  #cls: Tensor | null; // [C] (CLIP)
  #pos: Tensor; // [N(+1), C]
  #preLn: [Tensor, Tensor] | null; // CLIP's pre_layrnorm
  #postLn: [Tensor, Tensor];

  /** `seed` null: every parameter starts at zero (a load overwrites them; no random numbers drawn). */
  private constructor(e: Engine, cfg: VisionConfig, dtype: DType, seed: number | null) {
    checkVisionConfig(cfg, "VisionEncoder config");
    const C = cfg.hiddenSize;
    if (C / cfg.numHeads > MAX_HEAD_SIZE) {
      throw new Error(
        `VisionEncoder: head size ${C / cfg.numHeads} (hidden_size / num_attention_heads) is over the ` +
          `attention kernel's ${MAX_HEAD_SIZE}; use more heads`,
      );
    }
    this.cfg = cfg;
    this.dtype = dtype;
    let s = (seed ?? 0) * 100003;
    const made = makeVisionParams(cfg, (name, shape, init) => {
      const n = shape.reduce((a, b) => a * b, 1);
      const data = init === "ones"
        ? new Float32Array(n).fill(1)
        : init === "zeros" || seed === null
        ? new Float32Array(n)
        : randn(n, ++s, init.normal);
      const t = e.param(data, shape, { dtype, name });
      this.#params.set(name, t);
      return t;
    });
    this.#cls = made.cls;
    this.#patchW = made.patchW;
    this.#patchB = made.patchB;
    this.#pos = made.pos;
    this.#preLn = made.preLn;
    this.#layers = made.layers;
    this.#postLn = made.postLn;
  }

  /** A randomly initialized encoder (weights ~ N(0, 1/fan_in), layer norms at identity). */
  static create(e: Engine, cfg: VisionConfig, opts: VisionCreateOptions = {}): VisionEncoder {
    return new VisionEncoder(e, cfg, opts.dtype ?? "f32", opts.seed ?? 0);
  }

  /**
   * Loads a Hugging Face folder: `config.json` (a vision config, or a full SigLIP/CLIP config with
   * `vision_config`) and its safetensors weights. Every encoder parameter must be present; other
   * tensors in the checkpoint (a text tower, SigLIP's pooling head) are ignored.
   */
  static async load(e: Engine, dir: string, opts: VisionLoadOptions = {}): Promise<VisionEncoder> {
    const path = join(dir, "config.json");
    const cfg = visionConfigFromHf(await readJsonFile(path, "vision encoder config"), path);
    const ckpt = await Checkpoint.open(dir);
    let enc: VisionEncoder | null = null;
    try {
      enc = new VisionEncoder(e, cfg, opts.dtype ?? "f32", null);
      await loadParams(enc.params(), ckpt, {
        prefix: opts.prefix,
        ignoreUnexpected: true,
        onProgress: opts.onProgress,
      });
    } catch (err) {
      for (const t of enc ? enc.#params.values() : []) t.dispose();
      throw err;
    } finally {
      ckpt.close();
    }
    return enc;
  }

  /** Writes `config.json` (HF vision config) and `model.safetensors` (HF names) into `dir`. */
  async save(dir: string): Promise<void> {
    await writeHfFolder(dir, visionConfigToHf(this.cfg), this.params());
  }

  /** Every parameter under its HF name (`vision_model.…`), in checkpoint order. */
  params(): Map<string, Tensor> {
    return new Map(this.#params);
  }

  /** Marks every parameter frozen (no weight gradients; activation gradients still flow). */
  freeze(): void {
    for (const p of this.#params.values()) p.requiresGrad = false;
  }

  /** Number of patches N of one image. */
  get numPatches(): number {
    return Math.floor(this.cfg.imageSize / this.cfg.patchSize) ** 2;
  }

  /**
   * Hidden states of `pixels` f32 [B, 3, H, W] (H = W = imageSize, already normalized) at
   * `opts.layer`: [B, N, C], or [B, N + 1, C] for CLIP with the CLS row kept.
   */
  forward(pixels: Tensor, opts: VisionForwardOptions): Tensor {
    const { cfg } = this;
    const L = cfg.numLayers;
    const layer = opts.layer < 0 ? L + 1 + opts.layer : opts.layer;
    if (!Number.isInteger(opts.layer) || layer < 0 || layer > L) {
      throw new Error(
        `VisionEncoder.forward: layer ${opts.layer} is out of range for ${L} layers; ` +
          `use 0..${L} or -1..-${L + 1} (hidden_states indexing)`,
      );
    }
    const [B, CH, H, W] = pixels.shape;
    if (pixels.shape.length !== 4 || CH !== 3 || H !== cfg.imageSize || W !== cfg.imageSize) {
      throw new Error(
        `VisionEncoder.forward: pixels ${pixels} must be [B, 3, ${cfg.imageSize}, ${cfg.imageSize}]; ` +
          `resize images to image_size first`,
      );
    }
    const px = pixels.dtype === this.dtype ? pixels : cast(pixels, this.dtype);
    let x = patchEmbed(px, this.#patchW, this.#patchB, cfg.patchSize); // [B, N, C]
    if (this.#cls) {
      const C = cfg.hiddenSize;
      const cls = broadcastTo(reshape(this.#cls, [1, 1, C]), [B, 1, C]); // [B, 1, C]
      x = concat([cls, x], 1); // [B, N+1, C]
    }
    x = add(x, this.#pos); // [B, N(+1), C]
    if (this.#preLn) x = layerNorm(x, this.#preLn[0], this.#preLn[1], cfg.layerNormEps);
    for (let i = 0; i < layer; i++) x = this.#block(this.#layers[i], x);
    const post = opts.postLayerNorm ?? (cfg.arch === "siglip" && layer === L);
    if (post) x = layerNorm(x, this.#postLn[0], this.#postLn[1], cfg.layerNormEps);
    if (this.#cls && opts.keepCls === false) x = slice(x, 1, 1, x.shape[1]); // [B, N, C]
    return x;
  }

  /** One pre-norm encoder layer: x [B, T, C] -> [B, T, C]. */
  #block(l: EncoderLayer, x: Tensor): Tensor {
    const [B, T, C] = x.shape;
    const NH = this.cfg.numHeads, HS = C / NH, eps = this.cfg.layerNormEps;
    const heads = (t: Tensor) => permute(reshape(t, [B, T, NH, HS]), [0, 2, 1, 3]); // [B, NH, T, HS]
    const h = layerNorm(x, l.ln1w, l.ln1b, eps);
    const q = heads(matmul(h, l.qw, { transB: true, bias: l.qb }));
    const k = heads(matmul(h, l.kw, { transB: true, bias: l.kb }));
    const v = heads(matmul(h, l.vw, { transB: true, bias: l.vb }));
    const a = reshape(permute(attention(q, k, v, { causal: false }), [0, 2, 1, 3]), [B, T, C]); // [B, T, C]
    x = add(x, matmul(a, l.ow, { transB: true, bias: l.ob }));
    const h2 = layerNorm(x, l.ln2w, l.ln2b, eps);
    const f = this.#act(matmul(h2, l.fc1w, { transB: true, bias: l.fc1b })); // [B, T, F]
    return add(x, matmul(f, l.fc2w, { transB: true, bias: l.fc2b }));
  }

  #act(x: Tensor): Tensor {
    const act = this.cfg.act;
    switch (act) {
      case "gelu_tanh":
        return gelu(x, "tanh");
      case "quick_gelu":
        return quickGelu(x);
      case "gelu":
        return gelu(x, "none");
      default: {
        const never: never = act;
        throw new Error(`VisionEncoder: unhandled activation ${never}`);
      }
    }
  }
}
