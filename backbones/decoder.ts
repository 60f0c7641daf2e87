/**
 * The LLM decoder backbone: LLaMA / Vicuna, Mistral (sliding-window attention) and Qwen2 (q/k/v
 * biases), built from the engine's ops, with Hugging Face parameter names, loading and saving HF
 * model folders.
 *
 * Each layer: RMSNorm -> q/k/v projections (+ biases) -> RoPE -> grouped-query causal attention
 * (sliding window for Mistral) -> o_proj -> residual -> RMSNorm -> SwiGLU MLP (gate, up, down) ->
 * residual. After the layers: the final RMSNorm, then the LM head (tied to the embedding or not).
 *
 * Incremental decoding (evaluation, generation): `prefill` runs a prompt into a {@linkcode KvCache},
 * then `step` adds one row at a time against the cached keys and values.
 * @module
 */

import { join } from "node:path";
import type { Engine } from "../core/engine.ts";
import type { Tensor } from "../core/tensor.ts";
import { checkpoint, reshape } from "../core/autograd.ts";
import { randn } from "../core/random.ts";
import { randnGpu } from "../core/kernels/randn/randn.ts";
import { add, scale, swiglu } from "../core/kernels/elementwise/elementwise.ts";
import { matmul } from "../core/kernels/matmul/matmul.ts";
import { rmsNorm } from "../core/kernels/rmsnorm/rmsnorm.ts";
import { attention } from "../core/kernels/attention/attention.ts";
import { rope } from "../core/kernels/rope/rope.ts";
import { permute } from "../core/kernels/permute/permute.ts";
import { embedding } from "../core/kernels/embedding/embedding.ts";
import { softmax } from "../core/kernels/softmax/softmax.ts";
import { Checkpoint } from "../io/safetensors.ts";
import { loadParams, type LoadProgress, writeHfFolder } from "../io/params.ts";
import { readJsonFile } from "../io/json.ts";
import { checkLlmConfig, type LlmConfig, llmConfigFromHf, llmConfigToHf } from "./config.ts";
import {
  hasLayerParam,
  LAYER_PARAM_KEYS,
  type LayerParamKey,
  layerParamName,
  type ModelParamKey,
  nameTable,
} from "./names.ts";
import { causalLmLoss } from "./causal_lm_loss.ts";
import type { LoraAdapters } from "./lora.ts";
import { KvCache } from "./kv_cache.ts";

/** The storage dtype of a decoder's parameters and activations (math is f32 either way). */
export type DecoderDType = "f32" | "f16";

/** Options of {@linkcode Decoder.create}. */
export interface DecoderCreateOptions {
  /** Parameter dtype (default "f32"; "f16" needs `e.hasF16`). */
  dtype?: DecoderDType;
  /** Seed of the random initialization (default 0). */
  seed?: number;
  /**
   * Where the random weights are drawn: "host" (default; core/random.ts's generator) or "gpu"
   * (core/kernels/randn: a billion-parameter model initializes in seconds). Both are seeded, but
   * give different values.
   */
  init?: "host" | "gpu";
}

/** Options of {@linkcode Decoder.load}. */
export interface DecoderLoadOptions {
  /** Parameter dtype; the checkpoint's values are converted on upload (default "f32"). */
  dtype?: DecoderDType;
  /** Called after each tensor is on the GPU (see `loadParams`). */
  onProgress?: (p: LoadProgress) => void;
}

/** Options of {@linkcode Decoder.save}. */
export interface DecoderSaveOptions {
  /** Stored dtype of the weights (default: F32 for f32 parameters, F16 for f16). */
  dtype?: "F32" | "F16" | "BF16";
  /** Split the weights into shards of at most this many bytes (default: one model.safetensors). */
  maxShardBytes?: number;
}

/** Options of {@linkcode Decoder.forward}. */
export interface DecoderForwardOptions {
  /** Re-run each layer's forward in backward instead of keeping its activations (default false). */
  checkpointLayers?: boolean;
  /** RoPE position of the first row (default 0). */
  positionOffset?: number;
}

/** Standard deviation of the random initialization (HF's `initializer_range` default). */
export const INIT_STD = 0.02;

/** The bias keys of a layer (only some architectures and configs have them). */
type BiasKey = "bq" | "bk" | "bv" | "bo";

/** The parameters of one layer (biases null where the model has none). */
type Layer = Record<Exclude<LayerParamKey, BiasKey>, Tensor> & Record<BiasKey, Tensor | null>;

/** Shape of a model-level parameter. */
function modelParamShape(cfg: LlmConfig, key: ModelParamKey): number[] {
  switch (key) {
    case "embed":
    case "head":
      return [cfg.vocabSize, cfg.hiddenSize]; // [V, C]
    case "norm":
      return [cfg.hiddenSize]; // [C]
    default: {
      const never: never = key;
      throw new Error(`unknown parameter ${never}`);
    }
  }
}

/** Shape of a layer parameter (weights are [out, in], as in HF's nn.Linear). */
export function layerParamShape(cfg: LlmConfig, key: LayerParamKey): number[] {
  const C = cfg.hiddenSize, F = cfg.intermediateSize;
  const Q = cfg.numHeads * cfg.headDim, KV = cfg.numKvHeads * cfg.headDim;
  switch (key) {
    case "attnNorm":
    case "mlpNorm":
    case "bo":
      return [C];
    case "wq":
      return [Q, C];
    case "bq":
      return [Q];
    case "wk":
    case "wv":
      return [KV, C];
    case "bk":
    case "bv":
      return [KV];
    case "wo":
      return [C, Q];
    case "wGate":
    case "wUp":
      return [F, C];
    case "wDown":
      return [C, F];
    default: {
      const never: never = key;
      throw new Error(`unknown layer parameter ${never}`);
    }
  }
}

/** How a parameter starts: ones for norm weights, zeros for biases, N(0, INIT_STD) for the rest. */
type InitKind = "ones" | "zeros" | "normal";

function layerInit(key: LayerParamKey): InitKind {
  switch (key) {
    case "attnNorm":
    case "mlpNorm":
      return "ones";
    case "bq":
    case "bk":
    case "bv":
    case "bo":
      return "zeros";
    case "wq":
    case "wk":
    case "wv":
    case "wo":
    case "wGate":
    case "wUp":
    case "wDown":
      return "normal";
    default: {
      const never: never = key;
      throw new Error(`unknown layer parameter ${never}`);
    }
  }
}

/** Makes one parameter tensor: HF name, shape, how a fresh model initializes it. */
type MakeParam = (name: string, shape: number[], init: InitKind) => Tensor;

/**
 * Every parameter of a decoder, in the order a checkpoint lists them: `make(name, shape, init)` for
 * each, returned by role (a layer's absent biases null; `head` null when tied to the embedding).
 */
function makeDecoderParams<T>(
  cfg: LlmConfig,
  make: (name: string, shape: number[], init: InitKind) => T,
): { embed: T; layers: Record<LayerParamKey, T | null>[]; norm: T; head: T | null } {
  const names = nameTable(cfg.arch);
  const embed = make(names.model.embed, modelParamShape(cfg, "embed"), "normal");
  const layers: Record<LayerParamKey, T | null>[] = [];
  for (let i = 0; i < cfg.numLayers; i++) {
    const layer: Partial<Record<LayerParamKey, T | null>> = {};
    for (const key of LAYER_PARAM_KEYS) {
      layer[key] = hasLayerParam(cfg, key)
        ? make(layerParamName(cfg.arch, key, i), layerParamShape(cfg, key), layerInit(key))
        : null;
    }
    layers.push(layer as Record<LayerParamKey, T | null>);
  }
  const norm = make(names.model.norm, modelParamShape(cfg, "norm"), "ones");
  const head = cfg.tieWordEmbeddings ? null : make(names.model.head, modelParamShape(cfg, "head"), "normal");
  return { embed, layers, norm, head };
}

/** The HF name and shape of every parameter of a decoder of `cfg` (what `--plan` counts); nothing is made. */
export function decoderParamShapes(cfg: LlmConfig): Map<string, number[]> {
  const out = new Map<string, number[]>();
  makeDecoderParams(cfg, (name, shape) => out.set(name, shape));
  return out;
}

/** A decoder-only LLM. Build with {@linkcode Decoder.create} or {@linkcode Decoder.load}. */
export class Decoder {
  /** The engine that holds the parameters. */
  readonly engine: Engine;
  /** The configuration. */
  readonly cfg: LlmConfig;
  /** The parameters' storage dtype. */
  readonly dtype: DecoderDType;

  #params = new Map<string, Tensor>();
  #embed: Tensor; // [V, C]
  #norm: Tensor; // [C]
  #head: Tensor; // [V, C] (the embedding when tied)
  #layers: Layer[] = [];
  #lora: LoraAdapters | null = null;

  private constructor(e: Engine, cfg: LlmConfig, dtype: DecoderDType, make: MakeParam) {
    checkLlmConfig(cfg);
    if (dtype !== "f32" && dtype !== "f16") {
      throw new Error(`Decoder: dtype must be "f32" or "f16", got ${JSON.stringify(dtype)}`);
    }
    if (dtype === "f16" && !e.hasF16) {
      throw new Error(`Decoder: dtype "f16" needs the adapter feature shader-f16; use dtype "f32"`);
    }
    this.engine = e;
    this.cfg = cfg;
    this.dtype = dtype;
    const made = makeDecoderParams(cfg, (name, shape, init) => {
      const t = make(name, shape, init);
      this.#params.set(name, t);
      return t;
    });
    this.#embed = made.embed;
    this.#layers = made.layers as Layer[];
    this.#norm = made.norm;
    this.#head = made.head ?? this.#embed;
  }

  /**
   * A randomly initialized decoder (HF's scheme: N(0, 0.02) weights, unit norm weights, zero
   * biases), for tests and training from scratch. The same seed gives the same weights.
   */
  static create(e: Engine, cfg: LlmConfig, opts: DecoderCreateOptions = {}): Decoder {
    const dtype = opts.dtype ?? "f32";
    let seed = (opts.seed ?? 0) * 100003;
    return new Decoder(e, cfg, dtype, (name, shape, init) => {
      const n = shape.reduce((a, b) => a * b, 1);
      seed++;
      if (opts.init === "gpu") {
        const t = init === "normal"
          ? randnGpu(e, shape, seed, INIT_STD, dtype, { split: true })
          : e.full(shape, init === "ones" ? 1 : 0, dtype);
        e.untrack(t);
        t.isParam = true;
        t.requiresGrad = true;
        t.name = name;
        return t;
      }
      const data = init === "normal"
        ? randn(n, seed, INIT_STD)
        : new Float32Array(n).fill(init === "ones" ? 1 : 0);
      return e.param(data, shape, { dtype, name });
    });
  }

  /**
   * Loads a Hugging Face model folder: `config.json` (model_type llama, mistral or qwen2) and the
   * weights (model.safetensors, or shards with model.safetensors.index.json), converted to
   * `opts.dtype`. Errors name the file and the missing, unexpected or misshapen parameters.
   * Ignored: `lm_head.weight` when the embeddings are tied, RoPE's `rotary_emb.inv_freq` buffers, and
   * a LLaVA folder's multimodal weights (`model.mm_projector.*`, `model.vision_tower.*`, `visual_head.*`).
   */
  static async load(e: Engine, dir: string, opts: DecoderLoadOptions = {}): Promise<Decoder> {
    const configPath = join(dir, "config.json");
    const json = await readJsonFile(configPath, "the LLM's Hugging Face config.json");
    const cfg = llmConfigFromHf(json, configPath);
    const dtype = opts.dtype ?? "f32";
    const ckpt = await Checkpoint.open(dir);
    let model: Decoder | null = null;
    try {
      model = new Decoder(e, cfg, dtype, (name, shape) => {
        const t = e.empty(shape, dtype, { split: true }); // filled by loadParams
        e.untrack(t);
        t.isParam = true;
        t.requiresGrad = true;
        t.name = name;
        return t;
      });
      // What transformers also skips: old RoPE buffers, and a head saved although it is tied; and the
      // multimodal weights of a LLaVA-layout folder (what models/export.ts writes).
      const ignored = [
        "*.self_attn.rotary_emb.inv_freq",
        "model.mm_projector.*",
        "model.vision_tower.*",
        "visual_head.*",
      ];
      if (cfg.tieWordEmbeddings) ignored.push(nameTable(cfg.arch).model.head);
      await loadParams(model.params(), ckpt, { ignoreUnexpected: ignored, onProgress: opts.onProgress });
    } catch (err) {
      model?.dispose();
      throw err;
    } finally {
      ckpt.close();
    }
    return model;
  }

  /** Every parameter by its Hugging Face name, in checkpoint order (no `lm_head.weight` when tied). */
  params(): Map<string, Tensor> {
    return new Map(this.#params);
  }

  /** Token embeddings: ids i32 [B, T] -> [B, T, C] of the decoder's dtype. */
  embed(ids: Tensor): Tensor {
    if (ids.dtype !== "i32") throw new Error(`Decoder.embed: ids must be i32, got ${ids}`);
    return embedding(this.#embed, ids);
  }

  /**
   * The decoder layers and the final RMSNorm: inputsEmbeds [B, T, C] (token embeddings, possibly
   * with image features spliced in) -> hidden [B, T, C], of the decoder's dtype.
   */
  forward(inputsEmbeds: Tensor, opts: DecoderForwardOptions = {}): Tensor {
    const C = this.cfg.hiddenSize;
    if (inputsEmbeds.shape.length !== 3 || inputsEmbeds.shape[2] !== C || inputsEmbeds.dtype !== this.dtype) {
      throw new Error(
        `Decoder.forward: inputsEmbeds must be ${this.dtype} [B, T, ${C}], got ${inputsEmbeds}`,
      );
    }
    const offset = opts.positionOffset ?? 0;
    let x = inputsEmbeds; // [B, T, C]
    this.#layers.forEach((layer, i) => {
      x = opts.checkpointLayers
        ? checkpoint((y) => this.#layer(layer, i, y, offset), x)
        : this.#layer(layer, i, x, offset);
    });
    return rmsNorm(x, this.#norm, this.cfg.rmsNormEps);
  }

  /** An empty {@linkcode KvCache} sized for this decoder (its window is the model's sliding window). */
  createCache(): KvCache {
    const { numLayers, numKvHeads, headDim, slidingWindow } = this.cfg;
    return new KvCache({ numLayers, numKvHeads, headDim, window: slidingWindow });
  }

  /**
   * Incremental forward, first part: runs the prompt inputsEmbeds [B, T, C] (no gradients) into an
   * empty `cache` and returns hidden [B, T, C] (after the final RMSNorm), equal to
   * {@linkcode forward}'s. The tensors returned belong to the caller's tidy scope; the cache keeps
   * its own.
   */
  prefill(inputsEmbeds: Tensor, cache: KvCache): Tensor {
    if (cache.length !== 0) {
      throw new Error(`Decoder.prefill: the cache already holds ${cache.length} positions; use a new cache`);
    }
    return this.#forwardCached(inputsEmbeds, cache, "prefill");
  }

  /**
   * Incremental forward, next part: one new row embeds [B, 1, C] at position `cache.length`,
   * attending to the cached keys and values (the last `slidingWindow` of them for Mistral) and
   * appending its own. Returns hidden [B, 1, C], equal to the row of a full {@linkcode forward} over
   * the whole sequence. No gradients.
   */
  step(embeds: Tensor, cache: KvCache): Tensor {
    if (cache.length === 0) throw new Error(`Decoder.step: the cache is empty; call prefill first`);
    if (embeds.shape[1] !== 1) throw new Error(`Decoder.step: embeds must be [B, 1, C], got ${embeds}`);
    return this.#forwardCached(embeds, cache, "step");
  }

  #forwardCached(x: Tensor, cache: KvCache, op: "prefill" | "step"): Tensor {
    const C = this.cfg.hiddenSize;
    if (x.shape.length !== 3 || x.shape[2] !== C || x.dtype !== this.dtype) {
      throw new Error(`Decoder.${op}: embeds must be ${this.dtype} [B, T, ${C}], got ${x}`);
    }
    const { numLayers, numKvHeads, headDim, slidingWindow } = this.cfg;
    const o = cache.opts;
    if (
      o.numLayers !== numLayers || o.numKvHeads !== numKvHeads || o.headDim !== headDim ||
      o.window !== slidingWindow
    ) {
      throw new Error(`Decoder.${op}: the cache was made for another model; use decoder.createCache()`);
    }
    const offset = cache.length;
    const out = this.engine.noGrad(() => {
      let h = x; // [B, T, C]
      this.#layers.forEach((layer, i) => h = this.#layer(layer, i, h, offset, { cache, index: i }));
      return rmsNorm(h, this.#norm, this.cfg.rmsNormEps);
    });
    cache.commit(x.shape[1]);
    return out;
  }

  /**
   * Attention of new rows against the cache: q [B, NH, T, HS], k and v [B, NKV, T, HS] of the new
   * positions. The first pass (empty cache) is the fused causal kernel over the rows themselves; a
   * step (T = 1) attends to every kept position with matmul and softmax (the window is the cache's
   * trimming). Appends k and v to the cache. Returns [B, NH, T, HS].
   */
  #cachedAttention(q: Tensor, k: Tensor, v: Tensor, kv: { cache: KvCache; index: number }): Tensor {
    const first = kv.cache.length === 0;
    const { keys, values } = kv.cache.append(kv.index, k, v);
    if (first) {
      const window = this.cfg.slidingWindow;
      return attention(q, k, v, { causal: true, ...(window !== null ? { window } : {}) });
    }
    const [B, NH, T, HS] = q.shape;
    const NKV = k.shape[1], L = keys.shape[2];
    if (T !== 1) throw new Error(`Decoder: a cached step takes one row, got ${T}`);
    // Query head h uses kv head floor(h / G): q [B, NH, 1, HS] is [B * NKV, G, HS] in that order.
    const qg = reshape(q, [B * NKV, NH / NKV, HS]);
    const s = scale(matmul(qg, reshape(keys, [B * NKV, L, HS]), { transB: true }), 1 / Math.sqrt(HS)); // [B*NKV, G, L]
    const o = matmul(softmax(s), reshape(values, [B * NKV, L, HS])); // [B*NKV, G, HS]
    return reshape(o, [B, NH, 1, HS]);
  }

  /**
   * Decoder layer `index`: x [B, T, C] -> [B, T, C]; with `kv`, attention goes through the cache. An
   * adapted projection adds its LoRA path.
   */
  #layer(
    p: Layer,
    index: number,
    x: Tensor,
    positionOffset: number,
    kv?: { cache: KvCache; index: number },
  ): Tensor {
    const { numHeads: NH, numKvHeads: NKV, headDim: HS, rmsNormEps: eps, ropeTheta: theta } = this.cfg;
    const [B, T] = x.shape;
    const lora = this.#lora;
    const linear = (
      h: Tensor,
      key: Exclude<LayerParamKey, BiasKey | "attnNorm" | "mlpNorm">,
      bias: BiasKey | null,
    ) => {
      const b = bias ? p[bias] : null;
      const y = matmul(h, p[key], { transB: true, ...(b ? { bias: b } : {}) });
      const d = lora?.delta(h, index, key) ?? null; // the LoRA path, when this projection has one
      return d ? add(y, d) : y;
    };
    // [B, T, n*HS] -> [B, n, T, HS]
    const heads = (t: Tensor, n: number) => permute(reshape(t, [B, T, n, HS]), [0, 2, 1, 3]);
    const h = rmsNorm(x, p.attnNorm, eps); // [B, T, C]
    const q = rope(heads(linear(h, "wq", "bq"), NH), { theta, positionOffset }); // [B, NH, T, HS]
    const k = rope(heads(linear(h, "wk", "bk"), NKV), { theta, positionOffset }); // [B, NKV, T, HS]
    const v = heads(linear(h, "wv", "bv"), NKV); // [B, NKV, T, HS]
    const window = this.cfg.slidingWindow;
    const att = kv
      ? this.#cachedAttention(q, k, v, kv)
      : attention(q, k, v, { causal: true, ...(window !== null ? { window } : {}) }); // [B, NH, T, HS]
    const a = reshape(permute(att, [0, 2, 1, 3]), [B, T, NH * HS]); // [B, T, NH*HS]
    x = add(x, linear(a, "wo", "bo")); // [B, T, C]
    const h2 = rmsNorm(x, p.mlpNorm, eps);
    const f = swiglu(linear(h2, "wGate", null), linear(h2, "wUp", null)); // [B, T, F]
    return add(x, linear(f, "wDown", null)); // [B, T, C]
  }

  /** The LM head: hidden [B, T, C] -> logits [B, T, V] (of the decoder's dtype). */
  logits(hidden: Tensor): Tensor {
    return matmul(hidden, this.#head, { transB: true });
  }

  /**
   * HF's causal LM loss: logits [B, T, V] at positions 0..T-2 against labels i32 [B, T] at
   * 1..T-1, the mean over labels != -100. Returns an f32 scalar.
   */
  lossFromLabels(logits: Tensor, labels: Tensor): Tensor {
    return causalLmLoss(logits, labels);
  }

  /**
   * Writes a Hugging Face model folder: config.json in the architecture's HF format and the
   * parameters as safetensors (what {@linkcode Decoder.load} and transformers read). `opts` chooses
   * the stored dtype and sharding (default: the parameters' dtype, one model.safetensors).
   */
  async save(dir: string, opts: DecoderSaveOptions = {}): Promise<void> {
    await writeHfFolder(dir, llmConfigToHf(this.cfg), this.params(), opts);
  }

  /** The LoRA adapters the forward adds, or null (see {@linkcode Decoder.setLora}). */
  get lora(): LoraAdapters | null {
    return this.#lora;
  }

  /**
   * Attaches LoRA adapters (backbones/lora.ts), made for this decoder's config, or detaches them
   * (null): each adapted projection then adds its low-rank path in {@linkcode forward} and the cached
   * passes. The decoder keeps its own parameters; freeze them to train the adapters alone. The pairs
   * must have the decoder's dtype.
   */
  setLora(adapters: LoraAdapters | null): void {
    if (adapters) {
      const dtypes = new Set([...adapters.params().values()].map((t) => t.dtype));
      if (dtypes.size !== 1 || !dtypes.has(this.dtype)) {
        throw new Error(
          `Decoder.setLora: the pairs are ${[...dtypes].join(", ")}, the decoder ${this.dtype}; ` +
            `make them with LoraAdapters.create(e, cfg, lora, "${this.dtype}")`,
        );
      }
      for (let i = 0; i < this.cfg.numLayers; i++) {
        for (const key of LAYER_PARAM_KEYS) {
          const pair = adapters.pair(i, key);
          if (!pair) continue;
          const [out, inDim] = layerParamShape(this.cfg, key);
          if (pair.a.shape[1] !== inDim || pair.b.shape[0] !== out) {
            const got = `[${pair.b.shape[0]}, r] x [r, ${pair.a.shape[1]}]`;
            throw new Error(
              `Decoder.setLora: layer ${i} ${key}: the pair is ${got}, the weight [${out}, ${inDim}]; ` +
                `make the adapters from this decoder's config`,
            );
          }
        }
      }
      if (adapters.llm.numLayers !== this.cfg.numLayers) {
        throw new Error(
          `Decoder.setLora: the adapters have ${adapters.llm.numLayers} layers, the decoder ${this.cfg.numLayers}`,
        );
      }
    }
    this.#lora = adapters;
  }

  /** Stops gradients to every parameter (activation gradients still flow through). */
  freeze(): void {
    for (const p of this.#params.values()) p.requiresGrad = false;
  }

  /** Makes every parameter trainable again. */
  unfreeze(): void {
    for (const p of this.#params.values()) p.requiresGrad = true;
  }

  /** Frees the parameters (and their gradients). */
  dispose(): void {
    for (const p of this.#params.values()) p.dispose();
  }
}
