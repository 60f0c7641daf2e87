/**
 * The configuration of an LLM decoder backbone (LLaMA / Vicuna, Mistral, Qwen2) and its mapping to
 * and from a Hugging Face `config.json`.
 * @module
 */

import { z } from "zod";
import { parseSchema } from "../schema/parse.ts";

/** The decoder architectures, by their Hugging Face `model_type`. */
export type LlmArch = "llama" | "mistral" | "qwen2";

/** Every supported {@linkcode LlmArch} (Vicuna checkpoints say `llama`). */
export const LLM_ARCHS: readonly LlmArch[] = ["llama", "mistral", "qwen2"];

/** Sizes and options of a decoder backbone. */
export interface LlmConfig {
  /** The architecture (decides the parameter names and which options exist). */
  arch: LlmArch;
  /** Vocabulary size V. */
  vocabSize: number;
  /** Model width C. */
  hiddenSize: number;
  /** Hidden width of the SwiGLU MLP. */
  intermediateSize: number;
  /** Number of decoder layers. */
  numLayers: number;
  /** Query heads NH. */
  numHeads: number;
  /** Key/value heads NKV (NH % NKV == 0; NKV < NH is grouped-query attention). */
  numKvHeads: number;
  /** Head size HS (usually C / NH), even (RoPE rotates pairs). */
  headDim: number;
  /** Epsilon of every RMSNorm. */
  rmsNormEps: number;
  /** RoPE frequency base. */
  ropeTheta: number;
  /** The LM head shares the token embedding's weight (no `lm_head.weight` in the files). */
  tieWordEmbeddings: boolean;
  /** Mistral's sliding window: query i attends to keys j with i - j < window; null: full causal. */
  slidingWindow: number | null;
  /** q/k/v projections have biases (Qwen2 always; LLaMA's `attention_bias`, which biases o_proj too). */
  attentionBias: boolean;
  /** The longest sequence the model was trained for (`max_position_embeddings`). */
  maxPositions: number;
}

/** The largest head size the attention kernel supports. */
const MAX_HEAD_DIM = 128;

// ------------------------------------------------------------------ Hugging Face config.json

const posInt = z.number().int().positive();
const posNum = z.number().positive();
/** An optional field that may also be written as null; null reads as absent. */
const opt = <T extends z.ZodType>(t: T) => t.nullish().transform((v) => v ?? undefined);

/** The fields every supported architecture shares (HF's defaults where HF has one). */
const COMMON = {
  model_type: z.string(),
  vocab_size: posInt,
  hidden_size: posInt,
  intermediate_size: posInt,
  num_hidden_layers: posInt,
  num_attention_heads: posInt,
  num_key_value_heads: opt(posInt),
  rms_norm_eps: opt(posNum),
  rope_theta: opt(posNum),
  // transformers >= 5 writes the RoPE base here instead of `rope_theta`
  rope_parameters: opt(z.object({ rope_type: z.string().optional(), rope_theta: posNum.optional() })),
  rope_scaling: z.null({
    error: "RoPE scaling is not supported: use a checkpoint without `rope_scaling` (or null)",
  }).optional(),
  tie_word_embeddings: opt(z.boolean()),
  max_position_embeddings: opt(posInt),
  hidden_act: opt(z.literal("silu", { error: 'the MLP must use "silu" (SwiGLU)' })),
};

const LLAMA_SCHEMA = z.object({
  ...COMMON,
  head_dim: opt(posInt),
  attention_bias: opt(z.boolean()),
  mlp_bias: opt(z.literal(false, { error: "MLP biases are not supported: it must be false or absent" })),
});

const MISTRAL_SCHEMA = z.object({
  ...COMMON,
  head_dim: opt(posInt),
  sliding_window: z.number().int().positive({
    error: "expected a positive integer, or null for full causal attention",
  }).nullable().optional(),
});

const QWEN2_SCHEMA = z.object({
  ...COMMON,
  use_sliding_window: opt(z.literal(false, {
    error: "Qwen2's per-layer sliding window is not supported: it must be false or absent",
  })),
});

/**
 * Maps a Hugging Face `config.json` (already parsed) to an {@linkcode LlmConfig}, by `model_type`
 * (`llama`, which Vicuna checkpoints use, `mistral`, `qwen2`). Optional fields take HF's defaults.
 * Throws an error naming `source` (the file) and the field for a missing or invalid field
 * (`m/config.json.hidden_size: ... (missing)`), and listing the supported architectures for an
 * unknown `model_type`.
 */
export function llmConfigFromHf(json: unknown, source: string): LlmConfig {
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new Error(`${source}: expected a JSON object (a Hugging Face config.json)`);
  }
  const modelType = (json as Record<string, unknown>).model_type;
  if (typeof modelType !== "string") {
    throw new Error(
      `${source}: field "model_type" is ${modelType === undefined ? "missing" : "not a string"}; ` +
        `set it to one of ${LLM_ARCHS.join(", ")}`,
    );
  }
  if (!(LLM_ARCHS as readonly string[]).includes(modelType)) {
    throw new Error(
      `${source}: model_type "${modelType}" is not a supported decoder; supported: ` +
        `${LLM_ARCHS.join(", ")} (Vicuna checkpoints say "llama")`,
    );
  }
  const arch = modelType as LlmArch;
  let cfg: LlmConfig;
  switch (arch) {
    case "llama": {
      const c = parseSchema(LLAMA_SCHEMA, json, source);
      cfg = {
        ...common(arch, c, source, 2048, c.head_dim),
        attentionBias: c.attention_bias ?? false,
        slidingWindow: null,
      };
      break;
    }
    case "mistral": {
      const c = parseSchema(MISTRAL_SCHEMA, json, source);
      cfg = {
        ...common(arch, c, source, 4096 * 32, c.head_dim),
        attentionBias: false,
        slidingWindow: c.sliding_window === undefined ? 4096 : c.sliding_window,
      };
      break;
    }
    case "qwen2": {
      const c = parseSchema(QWEN2_SCHEMA, json, source);
      cfg = { ...common(arch, c, source, 32768, undefined), attentionBias: true, slidingWindow: null };
      break;
    }
    default: {
      const never: never = arch;
      throw new Error(`unreachable: ${never}`);
    }
  }
  checkLlmConfig(cfg, source);
  return cfg;
}

/** The fields all architectures share, with HF's defaults (the head size: C / NH unless given). */
function common(
  arch: LlmArch,
  c: z.infer<z.ZodObject<typeof COMMON>>,
  source: string,
  defaultMaxPositions: number,
  headDim: number | undefined,
): Omit<LlmConfig, "attentionBias" | "slidingWindow"> {
  if (headDim === undefined && c.hidden_size % c.num_attention_heads !== 0) {
    throw new Error(
      `${source}: field "hidden_size" (${c.hidden_size}) is not a multiple of "num_attention_heads" ` +
        `(${c.num_attention_heads}); fix one of them${arch === "qwen2" ? "" : ' or set "head_dim"'}`,
    );
  }
  const ropeType = c.rope_parameters?.rope_type ?? "default";
  if (ropeType !== "default") {
    throw new Error(
      `${source}: field "rope_parameters.rope_type" is "${ropeType}"; only "default" RoPE is supported`,
    );
  }
  return {
    arch,
    vocabSize: c.vocab_size,
    hiddenSize: c.hidden_size,
    intermediateSize: c.intermediate_size,
    numLayers: c.num_hidden_layers,
    numHeads: c.num_attention_heads,
    numKvHeads: c.num_key_value_heads ?? c.num_attention_heads,
    headDim: headDim ?? c.hidden_size / c.num_attention_heads,
    rmsNormEps: c.rms_norm_eps ?? 1e-6,
    ropeTheta: c.rope_theta ?? c.rope_parameters?.rope_theta ?? 10000,
    tieWordEmbeddings: c.tie_word_embeddings ?? false,
    maxPositions: c.max_position_embeddings ?? defaultMaxPositions,
  };
}

/**
 * Checks that `cfg` is consistent (positive sizes, NH a multiple of NKV, an even head size the
 * kernels support, options the architecture has); throws an error naming `source` and the field.
 */
export function checkLlmConfig(cfg: LlmConfig, source = "LlmConfig"): void {
  const fail = (field: keyof LlmConfig, why: string) => {
    throw new Error(`${source}: ${field} = ${JSON.stringify(cfg[field])}: ${why}`);
  };
  if (!(LLM_ARCHS as readonly string[]).includes(cfg.arch)) {
    fail("arch", `not a supported decoder; use one of ${LLM_ARCHS.join(", ")}`);
  }
  const sizes = [
    "vocabSize",
    "hiddenSize",
    "intermediateSize",
    "numLayers",
    "numHeads",
    "numKvHeads",
    "headDim",
    "maxPositions",
  ] as const;
  for (const k of sizes) if (!(Number.isInteger(cfg[k]) && cfg[k] > 0)) fail(k, "must be a positive integer");
  for (const k of ["rmsNormEps", "ropeTheta"] as const) if (!(cfg[k] > 0)) fail(k, "must be positive");
  if (cfg.numHeads % cfg.numKvHeads !== 0) {
    fail("numKvHeads", `must divide numHeads (${cfg.numHeads})`);
  }
  if (cfg.headDim % 2 !== 0 || cfg.headDim > MAX_HEAD_DIM) {
    fail("headDim", `must be even and at most ${MAX_HEAD_DIM} (RoPE pairs, attention kernel)`);
  }
  if (cfg.slidingWindow !== null && !(Number.isInteger(cfg.slidingWindow) && cfg.slidingWindow > 0)) {
    fail("slidingWindow", "must be a positive integer or null");
  }
  switch (cfg.arch) {
    case "llama":
      if (cfg.slidingWindow !== null) fail("slidingWindow", "llama has no sliding window; set null");
      break;
    case "mistral":
      if (cfg.attentionBias) fail("attentionBias", "mistral has no attention biases; set false");
      break;
    case "qwen2":
      if (!cfg.attentionBias) fail("attentionBias", "qwen2 always has q/k/v biases; set true");
      if (cfg.slidingWindow !== null) {
        fail("slidingWindow", "qwen2's sliding window is not supported; set null");
      }
      break;
    default: {
      const never: never = cfg.arch;
      throw new Error(`unreachable: ${never}`);
    }
  }
}

/** The Hugging Face class name of each architecture's causal LM. */
const HF_CLASS: Record<LlmArch, string> = {
  llama: "LlamaForCausalLM",
  mistral: "MistralForCausalLM",
  qwen2: "Qwen2ForCausalLM",
};

/**
 * The Hugging Face `config.json` object of `cfg`, which {@linkcode llmConfigFromHf} reads back to
 * `cfg` (and transformers loads as the same architecture).
 */
export function llmConfigToHf(cfg: LlmConfig): Record<string, unknown> {
  checkLlmConfig(cfg);
  const base: Record<string, unknown> = {
    architectures: [HF_CLASS[cfg.arch]],
    model_type: cfg.arch,
    vocab_size: cfg.vocabSize,
    hidden_size: cfg.hiddenSize,
    intermediate_size: cfg.intermediateSize,
    num_hidden_layers: cfg.numLayers,
    num_attention_heads: cfg.numHeads,
    num_key_value_heads: cfg.numKvHeads,
    hidden_act: "silu",
    rms_norm_eps: cfg.rmsNormEps,
    rope_theta: cfg.ropeTheta,
    rope_scaling: null,
    tie_word_embeddings: cfg.tieWordEmbeddings,
    max_position_embeddings: cfg.maxPositions,
  };
  switch (cfg.arch) {
    case "llama":
      return { ...base, head_dim: cfg.headDim, attention_bias: cfg.attentionBias, mlp_bias: false };
    case "mistral":
      return { ...base, head_dim: cfg.headDim, sliding_window: cfg.slidingWindow };
    case "qwen2":
      if (cfg.headDim * cfg.numHeads !== cfg.hiddenSize) {
        throw new Error(
          `llmConfigToHf: qwen2 derives its head size from hidden_size / num_attention_heads, so ` +
            `headDim (${cfg.headDim}) * numHeads (${cfg.numHeads}) must equal hiddenSize (${cfg.hiddenSize})`,
        );
      }
      return { ...base, use_sliding_window: false, sliding_window: null };
    default: {
      const never: never = cfg.arch;
      throw new Error(`unreachable: ${never}`);
    }
  }
}
