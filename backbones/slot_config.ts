/**
 * The LLM slot of the model's config: an architecture, loaded from a Hugging Face folder or built
 * for random init from sizes (five required, the rest Hugging Face's defaults for the architecture),
 * with optional LoRA adapters.
 *
 * ```ts ignore
 * const llm = parseLlmSlot({ kind: "llama", path: "/models/vicuna-7b-v1.5", lora: { rank: 8 } }, "llm");
 * // { kind: "llama", path: "...", lora: { rank: 8, alpha: 16, targets: [...], seed: 0 } }
 * ```
 * @module
 */

import { z } from "zod";
import { checkPathOrConfig, stripUndefined } from "../schema/fields.ts";
import { parseSchema } from "../schema/parse.ts";
import { checkLlmConfig, LLM_ARCHS, type LlmArch, type LlmConfig, llmConfigFromHf } from "./config.ts";
import { type LoraConfig, parseLoraConfig } from "./lora.ts";

/** The sizes of an LLM built for random init: an `LlmConfig` without `arch` (the slot's kind says it). */
export type LlmSizes = Omit<LlmConfig, "arch">;

/** LLM sizes as written: the five sizes are required, the rest take Hugging Face's defaults. */
export type LlmSizesInput =
  & Pick<LlmSizes, "vocabSize" | "hiddenSize" | "intermediateSize" | "numLayers" | "numHeads">
  & Partial<LlmSizes>;

/** The LLM slot, parsed: every default filled. */
export interface LlmSlotConfig {
  /** The architecture (HF `model_type`; Vicuna is "llama"). */
  kind: LlmArch;
  /** A Hugging Face folder to load; absent: random init from `config`. */
  path?: string;
  /**
   * Sizes for a random init; exactly one of `path` and `config` is given. Parsed, every size is set:
   * those left out take Hugging Face's defaults for the architecture.
   */
  config?: LlmSizes;
  /**
   * LoRA adapters on the LLM's projections (backbones/lora.ts): where a stage trains the LLM, the
   * adapters train and its own weights stay frozen. Absent: the LLM trains in full.
   */
  lora?: LoraConfig;
}

/** The LLM slot as written. */
export type LlmSlotInput = Omit<LlmSlotConfig, "config" | "lora"> & {
  /** Sizes for a random init: five required, the rest Hugging Face's defaults. */
  config?: LlmSizesInput;
  /** LoRA adapters (`parseLoraConfig`'s fields; each has a default). */
  lora?: Partial<LoraConfig>;
};

// ------------------------------------------------------------------ schema

const posInt = z.number().int().positive();
const posNum = z.number().positive();

const llmSizesSchema = z.strictObject({
  vocabSize: posInt,
  hiddenSize: posInt,
  intermediateSize: posInt,
  numLayers: posInt,
  numHeads: posInt,
  numKvHeads: posInt.optional(),
  headDim: posInt.optional(),
  rmsNormEps: posNum.optional(),
  ropeTheta: posNum.optional(),
  tieWordEmbeddings: z.boolean().optional(),
  slidingWindow: posInt.nullable().optional(),
  attentionBias: z.boolean().optional(),
  maxPositions: posInt.optional(),
});

/**
 * The LLM slot's rules. It gives the slot as written: the architecture's defaults fill the sizes,
 * which takes Hugging Face's config reader (`llmConfigFromHf`), not a schema default, and
 * `parseLoraConfig` checks and fills the LoRA config.
 */
const llmSlotSchema: z.ZodType<LlmSlotInput, LlmSlotInput> = z.strictObject({
  kind: z.enum(LLM_ARCHS),
  path: z.string().min(1).optional(),
  config: llmSizesSchema.optional(),
  lora: z.custom<Partial<LoraConfig>>().optional(),
});

const LLM_KINDS = LLM_ARCHS.map((k) => JSON.stringify(k)).join(", ");

// ------------------------------------------------------------------ parsing

/**
 * Validates the LLM slot given as data and fills every default, the sizes of a random init included
 * (Hugging Face's defaults for the architecture, then checked together) and the LoRA config's.
 * `path` names where it sits (`llm`); errors name the field under it, the value found and what is
 * allowed. The checks against the other slots are the model config's.
 */
export function parseLlmSlot(value: unknown, path: string): LlmSlotConfig {
  const v = stripUndefined(parseSchema(llmSlotSchema, value, path, { hints: { kind: LLM_KINDS } }));
  checkPathOrConfig(v, path, "a Hugging Face model folder");
  const out: LlmSlotConfig = { kind: v.kind, ...(v.path !== undefined ? { path: v.path } : {}) };
  if (v.config) out.config = llmSizes(v.kind, stripUndefined(v.config), `${path}.config`);
  if (v.lora !== undefined) out.lora = parseLoraConfig(v.lora, `${path}.lora`);
  return out;
}

/** HF's defaults for the architecture (through its config.json reader), overridden by the given sizes. */
function llmSizes(kind: LlmArch, given: LlmSizesInput, path: string): LlmSizes {
  const hf: Record<string, unknown> = {
    model_type: kind,
    vocab_size: given.vocabSize,
    hidden_size: given.hiddenSize,
    intermediate_size: given.intermediateSize,
    num_hidden_layers: given.numLayers,
    num_attention_heads: given.numHeads,
  };
  if (given.headDim !== undefined && kind !== "qwen2") hf.head_dim = given.headDim;
  const base = llmConfigFromHf(hf, path);
  const cfg: LlmConfig = { ...base, ...given, arch: kind };
  checkLlmConfig(cfg, path);
  const { arch: _arch, ...sizes } = cfg;
  return sizes;
}
