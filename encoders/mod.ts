/**
 * Vision encoders: SigLIP and CLIP ViTs that load and save Hugging Face folders, their configs, and
 * the patch embedding.
 * @module
 */

export {
  type HfVisionModelType,
  SUPPORTED_MODEL_TYPES,
  type VisionAct,
  type VisionArch,
  type VisionConfig,
  visionConfigFromHf,
  visionConfigToHf,
} from "./config.ts";
export { patchEmbed, patchify } from "./patch_embed.ts";
export {
  type VisionCreateOptions,
  VisionEncoder,
  type VisionForwardOptions,
  type VisionLoadOptions,
} from "./vit.ts";
export { OnnxEncoder, type OnnxEncoderOptions } from "./onnx_encoder.ts";
