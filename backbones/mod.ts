/**
 * LLM decoder backbones: LLaMA / Vicuna, Mistral (sliding window) and Qwen2 (q/k/v biases), with
 * Hugging Face configs, parameter names, loading and saving; LoRA adapters for their projections.
 *
 * ```ts ignore
 * import { Decoder } from "./mod.ts";
 * const llm = await Decoder.load(e, "models/vicuna-7b-v1.5", { dtype: "f16" });
 * const hidden = llm.forward(llm.embed(ids)); // [B, T, C]
 * const loss = llm.lossFromLabels(llm.logits(hidden), labels);
 * ```
 * @module
 */

export {
  checkLlmConfig,
  LLM_ARCHS,
  type LlmArch,
  type LlmConfig,
  llmConfigFromHf,
  llmConfigToHf,
} from "./config.ts";
export {
  hasLayerParam,
  hfParamNames,
  LAYER_PARAM_KEYS,
  type LayerParamKey,
  layerParamName,
  LLAMA_NAMES,
  MISTRAL_NAMES,
  type ModelParamKey,
  type NameTable,
  nameTable,
  QWEN2_NAMES,
} from "./names.ts";
export { causalLmLoss, shiftLabels } from "./causal_lm_loss.ts";
export {
  Decoder,
  type DecoderCreateOptions,
  type DecoderDType,
  type DecoderForwardOptions,
  type DecoderLoadOptions,
  type DecoderSaveOptions,
  INIT_STD,
  layerParamShape,
} from "./decoder.ts";
export { KvCache, type KvCacheOptions, type LayerKv } from "./kv_cache.ts";
export { argmax, generateGreedy, type GenerateOptions } from "./generate.ts";
export {
  LORA_TARGET_KEYS,
  LORA_TARGETS,
  LoraAdapters,
  type LoraConfig,
  type LoraPair,
  loraParamNames,
  type LoraTarget,
  mergeLora,
  parseLoraConfig,
} from "./lora.ts";
