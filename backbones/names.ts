/**
 * Hugging Face parameter names: one table per architecture from our parameter keys to the names in
 * the checkpoints (`{i}` stands for the layer index), and the full list of a config's parameters.
 * @module
 */

import type { LlmArch, LlmConfig } from "./config.ts";

/** Parameters that occur once per model. */
export type ModelParamKey = "embed" | "norm" | "head";

/** Parameters of each decoder layer (`b*`: biases). */
export type LayerParamKey =
  | "attnNorm"
  | "wq"
  | "wk"
  | "wv"
  | "wo"
  | "bq"
  | "bk"
  | "bv"
  | "bo"
  | "mlpNorm"
  | "wGate"
  | "wUp"
  | "wDown";

/** Every {@linkcode LayerParamKey}, in checkpoint order. */
export const LAYER_PARAM_KEYS: readonly LayerParamKey[] = [
  "attnNorm",
  "wq",
  "bq",
  "wk",
  "bk",
  "wv",
  "bv",
  "wo",
  "bo",
  "mlpNorm",
  "wGate",
  "wUp",
  "wDown",
];

/**
 * An architecture's parameter names: the HF name of each key (`{i}`: the layer index), or null
 * where the architecture never has that parameter.
 */
export interface NameTable {
  /** Once per model. */
  model: Record<ModelParamKey, string>;
  /** Per layer; `{i}` is replaced by the layer index. */
  layer: Record<LayerParamKey, string | null>;
}

/** LLaMA (LLaMA-2/3, Vicuna). The biases exist only with `attention_bias` (then o_proj's too). */
export const LLAMA_NAMES: NameTable = {
  model: { embed: "model.embed_tokens.weight", norm: "model.norm.weight", head: "lm_head.weight" },
  layer: {
    attnNorm: "model.layers.{i}.input_layernorm.weight",
    wq: "model.layers.{i}.self_attn.q_proj.weight",
    bq: "model.layers.{i}.self_attn.q_proj.bias",
    wk: "model.layers.{i}.self_attn.k_proj.weight",
    bk: "model.layers.{i}.self_attn.k_proj.bias",
    wv: "model.layers.{i}.self_attn.v_proj.weight",
    bv: "model.layers.{i}.self_attn.v_proj.bias",
    wo: "model.layers.{i}.self_attn.o_proj.weight",
    bo: "model.layers.{i}.self_attn.o_proj.bias",
    mlpNorm: "model.layers.{i}.post_attention_layernorm.weight",
    wGate: "model.layers.{i}.mlp.gate_proj.weight",
    wUp: "model.layers.{i}.mlp.up_proj.weight",
    wDown: "model.layers.{i}.mlp.down_proj.weight",
  },
};

/** Mistral: LLaMA's names, no biases. */
export const MISTRAL_NAMES: NameTable = {
  model: { embed: "model.embed_tokens.weight", norm: "model.norm.weight", head: "lm_head.weight" },
  layer: {
    attnNorm: "model.layers.{i}.input_layernorm.weight",
    wq: "model.layers.{i}.self_attn.q_proj.weight",
    bq: null,
    wk: "model.layers.{i}.self_attn.k_proj.weight",
    bk: null,
    wv: "model.layers.{i}.self_attn.v_proj.weight",
    bv: null,
    wo: "model.layers.{i}.self_attn.o_proj.weight",
    bo: null,
    mlpNorm: "model.layers.{i}.post_attention_layernorm.weight",
    wGate: "model.layers.{i}.mlp.gate_proj.weight",
    wUp: "model.layers.{i}.mlp.up_proj.weight",
    wDown: "model.layers.{i}.mlp.down_proj.weight",
  },
};

/** Qwen2: LLaMA's names with q/k/v biases (always), no o_proj bias. */
export const QWEN2_NAMES: NameTable = {
  model: { embed: "model.embed_tokens.weight", norm: "model.norm.weight", head: "lm_head.weight" },
  layer: {
    attnNorm: "model.layers.{i}.input_layernorm.weight",
    wq: "model.layers.{i}.self_attn.q_proj.weight",
    bq: "model.layers.{i}.self_attn.q_proj.bias",
    wk: "model.layers.{i}.self_attn.k_proj.weight",
    bk: "model.layers.{i}.self_attn.k_proj.bias",
    wv: "model.layers.{i}.self_attn.v_proj.weight",
    bv: "model.layers.{i}.self_attn.v_proj.bias",
    wo: "model.layers.{i}.self_attn.o_proj.weight",
    bo: null,
    mlpNorm: "model.layers.{i}.post_attention_layernorm.weight",
    wGate: "model.layers.{i}.mlp.gate_proj.weight",
    wUp: "model.layers.{i}.mlp.up_proj.weight",
    wDown: "model.layers.{i}.mlp.down_proj.weight",
  },
};

/** The name table of an architecture. */
export function nameTable(arch: LlmArch): NameTable {
  switch (arch) {
    case "llama":
      return LLAMA_NAMES;
    case "mistral":
      return MISTRAL_NAMES;
    case "qwen2":
      return QWEN2_NAMES;
    default: {
      const never: never = arch;
      throw new Error(`nameTable: unknown arch ${never}`);
    }
  }
}

const BIASES: ReadonlySet<LayerParamKey> = new Set(["bq", "bk", "bv", "bo"]);

/** Whether a model of `cfg` has the layer parameter `key` (biases need `attentionBias`). */
export function hasLayerParam(cfg: LlmConfig, key: LayerParamKey): boolean {
  return nameTable(cfg.arch).layer[key] !== null && (!BIASES.has(key) || cfg.attentionBias);
}

/** The HF name of layer `i`'s parameter `key` (throws where the architecture has none). */
export function layerParamName(arch: LlmArch, key: LayerParamKey, i: number): string {
  const template = nameTable(arch).layer[key];
  if (template === null) throw new Error(`${arch} has no layer parameter "${key}"`);
  return template.replace("{i}", String(i));
}

/**
 * The HF names of every parameter of a model of `cfg`, in checkpoint order: the embedding, each
 * layer's parameters, the final norm, and `lm_head.weight` unless the embeddings are tied.
 */
export function hfParamNames(cfg: LlmConfig): string[] {
  const t = nameTable(cfg.arch);
  const names = [t.model.embed];
  for (let i = 0; i < cfg.numLayers; i++) {
    for (const key of LAYER_PARAM_KEYS) {
      if (hasLayerParam(cfg, key)) names.push(layerParamName(cfg.arch, key, i));
    }
  }
  names.push(t.model.norm);
  if (!cfg.tieWordEmbeddings) names.push(t.model.head);
  return names;
}
