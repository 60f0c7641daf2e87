/**
 * LoRA (low-rank adaptation) for a decoder's projections: each adapted weight W [out, in] gains a
 * trainable pair A [r, in], B [out, r], and the projection becomes
 *
 *   y = x W^T + (alpha / r) (x A^T) B^T
 *
 * with W frozen. B starts at zero (the adapted model starts equal to the base), A uniform in
 * +-1/sqrt(in) (PEFT's default). `mergeLora` folds the pairs into the weights for export
 * (W += (alpha / r) B A), so the saved folder is a plain Hugging Face model. The pairs are named as
 * PEFT saves them (`base_model.model.<weight name without .weight>.lora_A.weight`).
 *
 * ```ts ignore
 * const lora = LoraAdapters.create(e, llm.cfg, parseLoraConfig({ rank: 16, alpha: 32 }));
 * llm.freeze();
 * llm.setLora(lora); // forward now adds the low-rank path; lora.params() are what train
 * await mergeLora(llm); // before llm.save(dir)
 * ```
 * @module
 */

import { z } from "zod";
import type { Engine } from "../core/engine.ts";
import type { Tensor } from "../core/tensor.ts";
import { rng } from "../core/random.ts";
import { scale } from "../core/kernels/elementwise/elementwise.ts";
import { matmul } from "../core/kernels/matmul/matmul.ts";
import { slice } from "../core/kernels/rows/rows.ts";
import { pieceRows } from "../core/split_tensor.ts";
import type { LlmConfig } from "./config.ts";
import { type Decoder, type DecoderDType, layerParamShape } from "./decoder.ts";
import { type LayerParamKey, layerParamName } from "./names.ts";
import { parseSchema } from "../schema/parse.ts";

/** The projections LoRA can adapt, by their Hugging Face / PEFT module names. */
export const LORA_TARGETS = [
  "q_proj",
  "k_proj",
  "v_proj",
  "o_proj",
  "gate_proj",
  "up_proj",
  "down_proj",
] as const;

/** One of {@linkcode LORA_TARGETS}. */
export type LoraTarget = typeof LORA_TARGETS[number];

/** The decoder's parameter key of each target. */
export const LORA_TARGET_KEYS: Readonly<Record<LoraTarget, LayerParamKey>> = {
  q_proj: "wq",
  k_proj: "wk",
  v_proj: "wv",
  o_proj: "wo",
  gate_proj: "wGate",
  up_proj: "wUp",
  down_proj: "wDown",
};

/** A LoRA config, parsed: every default filled (see {@linkcode parseLoraConfig}). */
export interface LoraConfig {
  /** The rank r of each pair (default 16). */
  rank: number;
  /** The scale's numerator: the low-rank path is multiplied by alpha / r (default 2 * rank). */
  alpha: number;
  /** The adapted projections, in every layer (default q_proj, k_proj, v_proj, o_proj). */
  targets: LoraTarget[];
  /** Seed of A's initialization (default 0). */
  seed: number;
}

/** The LoRA config's rules and defaults: every field may be left out. */
const loraSchema: z.ZodType<LoraConfig, Partial<LoraConfig>> = z.strictObject({
  rank: z.number().int().min(1).default(16),
  alpha: z.number().positive().optional(),
  targets: z.array(z.enum(LORA_TARGETS)).min(1)
    .refine((a) => new Set(a).size === a.length, { error: "names a projection twice; list each once" })
    .default(["q_proj", "k_proj", "v_proj", "o_proj"]),
  seed: z.number().int().nonnegative().default(0),
}).transform((v) => ({ ...v, alpha: v.alpha ?? 2 * v.rank }));

/**
 * Validates a LoRA config given as data and fills in the defaults; `path` names where it sits in
 * errors (`train.lora.rank: Too small: expected number to be >=1 (got 0)`).
 */
export function parseLoraConfig(value: unknown = {}, path = "lora"): LoraConfig {
  return parseSchema(loraSchema, value, path);
}

/** One adapted projection: A [r, in], B [out, r]. */
export interface LoraPair {
  /** The down projection A [r, in]. */
  a: Tensor;
  /** The up projection B [out, r]. */
  b: Tensor;
}

/** The LoRA pairs of a decoder: one per target per layer. */
export class LoraAdapters {
  /** The config. */
  readonly cfg: LoraConfig;
  /** alpha / r, the low-rank path's scale. */
  readonly scale: number;
  /** The decoder config the pairs were made for. */
  readonly llm: LlmConfig;
  #pairs: Map<string, LoraPair>; // `${layer}.${key}`
  #params: Map<string, Tensor>;

  private constructor(
    llm: LlmConfig,
    cfg: LoraConfig,
    pairs: Map<string, LoraPair>,
    params: Map<string, Tensor>,
  ) {
    this.llm = llm;
    this.cfg = cfg;
    this.scale = cfg.alpha / cfg.rank;
    this.#pairs = pairs;
    this.#params = params;
  }

  /**
   * Fresh pairs for every layer of `llm` and every target of `cfg`: A uniform in +-1/sqrt(in)
   * (seeded), B zeros, trainable, stored in `dtype` (the decoder's; default "f32"; AdamW keeps f32
   * masters of f16 pairs).
   */
  static create(e: Engine, llm: LlmConfig, cfg: LoraConfig, dtype: DecoderDType = "f32"): LoraAdapters {
    const pairs = new Map<string, LoraPair>(), params = new Map<string, Tensor>();
    const r = cfg.rank;
    for (let i = 0; i < llm.numLayers; i++) {
      for (const target of cfg.targets) {
        const key = LORA_TARGET_KEYS[target];
        const [out, inDim] = layerParamShape(llm, key);
        const names = loraParamNames(llm, key, i);
        const draw = rng((cfg.seed * 1_000_003 + i * 31 + LORA_TARGETS.indexOf(target)) >>> 0);
        const bound = 1 / Math.sqrt(inDim);
        const aData = new Float32Array(r * inDim).map(() => (2 * draw() - 1) * bound);
        const a = e.param(aData, [r, inDim], { name: names.a, dtype });
        const b = e.param(new Float32Array(out * r), [out, r], { name: names.b, dtype });
        pairs.set(`${i}.${key}`, { a, b });
        params.set(names.a, a);
        params.set(names.b, b);
      }
    }
    return new LoraAdapters(llm, cfg, pairs, params);
  }

  /** Every A and B by its PEFT name, layer by layer. */
  params(): Map<string, Tensor> {
    return new Map(this.#params);
  }

  /** The pair of projection `key` in layer `layer`, or undefined when it is not adapted. */
  pair(layer: number, key: LayerParamKey): LoraPair | undefined {
    return this.#pairs.get(`${layer}.${key}`);
  }

  /**
   * The low-rank path of projection `key` in layer `layer` for inputs x [..., in]:
   * (alpha / r) (x A^T) B^T [..., out], or null when the projection is not adapted.
   */
  delta(x: Tensor, layer: number, key: LayerParamKey): Tensor | null {
    const p = this.pair(layer, key);
    if (!p) return null;
    // Scaled at width r, the narrow end, so the path adds one [..., out] tensor (and the sum) per projection.
    return matmul(scale(matmul(x, p.a, { transB: true }), this.scale), p.b, { transB: true });
  }

  /** Frees every pair (and its gradients). */
  dispose(): void {
    for (const t of this.#params.values()) t.dispose();
  }
}

/** PEFT's names of a pair: `base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight`, ... */
export function loraParamNames(llm: LlmConfig, key: LayerParamKey, layer: number): { a: string; b: string } {
  const base = `base_model.model.${layerParamName(llm.arch, key, layer).replace(/\.weight$/, "")}`;
  return { a: `${base}.lora_A.weight`, b: `${base}.lora_B.weight` };
}

/**
 * Folds `decoder`'s LoRA pairs into its weights (W += (alpha / r) B A, computed on the GPU, added on
 * the host in f32) and detaches them, so that `decoder.save` writes a plain model whose forward equals
 * the adapted one. The pairs stay allocated (dispose them when done).
 */
export async function mergeLora(decoder: Decoder): Promise<void> {
  const lora = decoder.lora;
  if (!lora) throw new Error("mergeLora: the decoder has no LoRA adapters (decoder.setLora)");
  const e = decoder.engine, weights = decoder.params();
  for (let i = 0; i < decoder.cfg.numLayers; i++) {
    for (const target of lora.cfg.targets) {
      const key = LORA_TARGET_KEYS[target];
      const p = lora.pair(i, key)!;
      const w = weights.get(layerParamName(decoder.cfg.arch, key, i))!; // [out, in], maybe split by rows
      const wv = Float32Array.from(await w.read());
      const starts = pieceRows(w), width = w.shape[1];
      for (let k = 0; k + 1 < starts.length; k++) {
        // Rows r0..r1 of s B A: [r1 - r0, in], the size of one piece of w.
        const d = e.noGrad(() =>
          e.tidy(() => scale(matmul(slice(p.b, 0, starts[k], starts[k + 1]), p.a), lora.scale))
        );
        const dv = await d.read();
        d.dispose();
        const at = starts[k] * width;
        for (let j = 0; j < dv.length; j++) wv[at + j] += dv[j];
      }
      e.write(w, wv);
    }
  }
  decoder.setLora(null);
}
