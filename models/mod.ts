/**
 * The ASVR model: one config composing the slots (vision encoder, projector, LLM, visual
 * tokenizers, visual head, loss), validated at the edge, with typed `--set` overrides, and the
 * vision-language model it builds, whose forward gives the text and visual loss terms.
 *
 * ```ts ignore
 * import { AsvrModel, defineConfig, parseConfig, setConfigValue } from "@asvr/asvr/models";
 * const cfg = parseConfig(defineConfig({
 *   encoder: { kind: "siglip", path: "/models/siglip-so400m-patch14-384" },
 *   projector: { kind: "mlp2x_gelu" },
 *   llm: { kind: "llama", path: "/models/vicuna-7b-v1.5" },
 *   visualTokenizers: [{ kind: "rq", name: "semantic", codebooks: "semantic.safetensors" }],
 *   head: { kind: "asvr_depth" },
 * }), "asvr_vicuna7b.ts");
 * const model = await AsvrModel.build(e, cfg, { dtype: "f16" });
 * model.setTrainable({ projector: true, llm: false, head: true }); // stage 1
 * const { total, terms } = model.forward(batch); // terms.text, terms.visual_semantic, terms.total
 * ```
 * @module
 */

export {
  applyOverrides,
  type AsvrConfig,
  type AsvrConfigInput,
  defineConfig,
  ENCODER_INPUTS,
  type EncoderInput,
  type EncoderSlotConfig,
  type EncoderSlotInput,
  type LlmSizes,
  type LlmSizesInput,
  type LlmSlotConfig,
  type LlmSlotInput,
  type OnnxEncoderSlotConfig,
  parseConfig,
  type ProjectorSlotConfig,
  type RqTokenizerConfigInput,
  setConfigValue,
  type VisionEncoderSlotConfig,
  type VisionEncoderSlotInput,
  type VisionSizes,
  type VisualTokenizerConfigInput,
} from "./config.ts";
export {
  type AsvrBatch,
  AsvrModel,
  type AsvrModelBuildOptions,
  PARAM_PREFIXES,
  type TrainableParts,
} from "./asvr_model.ts";
export {
  type ExportDType,
  exportModel,
  type ExportOptions,
  type ExportResult,
  sourceDType,
} from "./export.ts";
