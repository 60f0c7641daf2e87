/**
 * LLM decoder backbones: LLaMA / Vicuna, Mistral (sliding window) and Qwen2 (q/k/v biases), loaded
 * from and saved as Hugging Face folders (their configs and parameter names); LoRA adapters for their
 * projections.
 *
 * ```ts ignore
 * import { Decoder } from "./mod.ts";
 * const llm = await Decoder.load(e, "models/vicuna-7b-v1.5", { dtype: "f16" });
 * const hidden = llm.forward(llm.embed(ids)); // [B, T, C]
 * const loss = llm.lossFromLabels(llm.logits(hidden), labels);
 * ```
 * @module
 */

export { LLM_ARCHS, type LlmArch, type LlmConfig, llmConfigFromHf, llmConfigToHf } from "./config.ts";
export type { LayerParamKey } from "./names.ts";
export {
  Decoder,
  type DecoderCreateOptions,
  type DecoderDType,
  type DecoderForwardOptions,
  type DecoderLoadOptions,
  type DecoderSaveOptions,
} from "./decoder.ts";
export { KvCache, type KvCacheOptions, type LayerKv } from "./kv_cache.ts";
export { generateGreedy, type GenerateOptions } from "./generate.ts";
export {
  LORA_TARGETS,
  LoraAdapters,
  type LoraConfig,
  type LoraPair,
  type LoraTarget,
  mergeLora,
  parseLoraConfig,
} from "./lora.ts";
