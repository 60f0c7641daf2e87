/**
 * The vision encoder's configuration as data, and its mapping from and to Hugging Face `config.json`
 * files (SigLIP and CLIP vision towers, alone or nested in a full model config as `vision_config`).
 * @module
 */

import { z } from "zod";
import { parseSchema } from "../schema/parse.ts";
import { isRecord } from "../schema/fields.ts";

/** The encoder families: SigLIP (no CLS token) and CLIP (CLS token, pre-layernorm). */
export type VisionArch = "siglip" | "clip";

/** MLP activations: GELU with the tanh approximation, CLIP's quick GELU, exact (erf) GELU. */
export type VisionAct = "gelu_tanh" | "quick_gelu" | "gelu";

/** Sizes and kinds of a ViT vision encoder. */
export interface VisionConfig {
  /** Which family: decides CLS token, pre-layernorm and the post-layernorm rule. */
  arch: VisionArch;
  /** Width C of the residual stream. */
  hiddenSize: number;
  /** Hidden width of the MLP. */
  intermediateSize: number;
  /** Number of encoder layers L. */
  numLayers: number;
  /** Attention heads NH (HS = C / NH). */
  numHeads: number;
  /** Side of the square input image in pixels. */
  imageSize: number;
  /**
   * Side of a square patch p; N = floor(imageSize / p)^2 patches (as the stride-p conv, pixels past
   * the last whole patch are unused: 384 / 14 gives 27 x 27).
   */
  patchSize: number;
  /** Epsilon of every layer norm. */
  layerNormEps: number;
  /** MLP activation. */
  act: VisionAct;
}

/** The `model_type`s {@linkcode visionConfigFromHf} accepts. */
export const SUPPORTED_MODEL_TYPES = ["siglip_vision_model", "clip_vision_model", "siglip", "clip"] as const;

/** One of {@linkcode SUPPORTED_MODEL_TYPES}. */
export type HfVisionModelType = typeof SUPPORTED_MODEL_TYPES[number];

/** HF `hidden_act` values and the activation each means. */
const HF_ACTS: Record<string, VisionAct> = {
  gelu_pytorch_tanh: "gelu_tanh",
  gelu_new: "gelu_tanh",
  gelu_fast: "gelu_tanh",
  quick_gelu: "quick_gelu",
  gelu: "gelu",
};

/** Transformers' defaults for the fields a `config.json` may omit, per family. */
const HF_DEFAULTS: Record<VisionArch, Record<string, number | string>> = {
  siglip: {
    hidden_size: 768,
    intermediate_size: 3072,
    num_hidden_layers: 12,
    num_attention_heads: 12,
    image_size: 224,
    patch_size: 16,
    layer_norm_eps: 1e-6,
    hidden_act: "gelu_pytorch_tanh",
    num_channels: 3,
  },
  clip: {
    hidden_size: 768,
    intermediate_size: 3072,
    num_hidden_layers: 12,
    num_attention_heads: 12,
    image_size: 224,
    patch_size: 32,
    layer_norm_eps: 1e-5,
    hidden_act: "quick_gelu",
    num_channels: 3,
  },
};

const positiveInt = z.number().int().positive();

/** The fields of an HF vision config this encoder reads (others are ignored). */
const hfVisionSchema = z.object({
  hidden_size: positiveInt,
  intermediate_size: positiveInt,
  num_hidden_layers: positiveInt,
  num_attention_heads: positiveInt,
  image_size: positiveInt,
  patch_size: positiveInt,
  layer_norm_eps: z.number().positive(),
  hidden_act: z.enum(Object.keys(HF_ACTS), {
    error: `expected a supported activation, one of ${Object.keys(HF_ACTS).join(", ")}`,
  }),
  num_channels: z.literal(3, { error: "expected 3 (RGB images)" }),
});

function isSupported(t: unknown): t is HfVisionModelType {
  return (SUPPORTED_MODEL_TYPES as readonly unknown[]).includes(t);
}

/**
 * Reads a Hugging Face vision config: a vision tower's own config (`model_type` "siglip_vision_model"
 * or "clip_vision_model") or a full model config ("siglip", "clip") whose `vision_config` holds it.
 * Fields the file omits take transformers' defaults for that family. `source` names the file in
 * errors; an unknown `model_type` or a bad field is refused naming the file, the field and what is
 * allowed (`m/config.json.hidden_size: Too small: expected number to be >0 (got -4)`).
 */
export function visionConfigFromHf(json: unknown, source: string): VisionConfig {
  if (!isRecord(json)) throw new Error(`${source}: a vision config must be a JSON object`);
  const modelType = json.model_type;
  if (!isSupported(modelType)) {
    throw new Error(
      `${source}: model_type ${JSON.stringify(modelType)} is not a supported vision encoder; ` +
        `supported: ${SUPPORTED_MODEL_TYPES.join(", ")}`,
    );
  }
  switch (modelType) {
    case "siglip_vision_model":
      return parseVision(json, "siglip", source, source);
    case "clip_vision_model":
      return parseVision(json, "clip", source, source);
    case "siglip":
    case "clip": {
      const inner = json.vision_config;
      if (!isRecord(inner)) {
        throw new Error(
          `${source}: model_type "${modelType}" needs a "vision_config" object holding the vision tower's config`,
        );
      }
      const innerType = inner.model_type ?? `${modelType}_vision_model`;
      if (innerType !== `${modelType}_vision_model`) {
        throw new Error(
          `${source}: vision_config.model_type ${JSON.stringify(innerType)} does not match "${modelType}"; ` +
            `expected "${modelType}_vision_model"`,
        );
      }
      return parseVision(inner, modelType, source, `${source}.vision_config`);
    }
    default: {
      const never: never = modelType;
      throw new Error(`${source}: unhandled model_type ${never}`);
    }
  }
}

/** A vision tower's own config (at `path` in the file `source`), transformers' defaults filling it. */
function parseVision(
  json: Record<string, unknown>,
  arch: VisionArch,
  source: string,
  path: string,
): VisionConfig {
  const f = parseSchema(hfVisionSchema, { ...HF_DEFAULTS[arch], ...json }, path);
  const act = HF_ACTS[f.hidden_act];
  const cfg: VisionConfig = {
    arch,
    hiddenSize: f.hidden_size,
    intermediateSize: f.intermediate_size,
    numLayers: f.num_hidden_layers,
    numHeads: f.num_attention_heads,
    imageSize: f.image_size,
    patchSize: f.patch_size,
    layerNormEps: f.layer_norm_eps,
    act,
  };
  checkVisionConfig(cfg, source);
  return cfg;
}

/**
 * Checks the relations between a config's sizes (heads divide the width, a patch fits the image);
 * throws naming `source`, the field and the fix.
 */
export function checkVisionConfig(cfg: VisionConfig, source: string): void {
  const int = (v: number) => Number.isInteger(v) && v > 0;
  for (
    const k of ["hiddenSize", "intermediateSize", "numLayers", "numHeads", "imageSize", "patchSize"] as const
  ) {
    if (!int(cfg[k])) throw new Error(`${source}: ${k} is ${cfg[k]}; it must be a positive integer`);
  }
  if (!(cfg.layerNormEps > 0)) {
    throw new Error(`${source}: layerNormEps is ${cfg.layerNormEps}; it must be a positive number`);
  }
  if (cfg.hiddenSize % cfg.numHeads !== 0) {
    throw new Error(
      `${source}: hidden_size ${cfg.hiddenSize} is not a multiple of num_attention_heads ${cfg.numHeads}; ` +
        `pick a head count that divides the width`,
    );
  }
  if (cfg.patchSize > cfg.imageSize) {
    throw new Error(
      `${source}: patch_size ${cfg.patchSize} is larger than image_size ${cfg.imageSize}; ` +
        `a patch must fit in the image`,
    );
  }
}

/** HF `hidden_act` of an activation (inverse of the mapping {@linkcode visionConfigFromHf} uses). */
function hfAct(act: VisionAct): string {
  switch (act) {
    case "gelu_tanh":
      return "gelu_pytorch_tanh";
    case "quick_gelu":
      return "quick_gelu";
    case "gelu":
      return "gelu";
    default: {
      const never: never = act;
      throw new Error(`unhandled activation ${never}`);
    }
  }
}

/** The HF vision-tower `config.json` object of a config (what {@linkcode visionConfigFromHf} reads back). */
export function visionConfigToHf(cfg: VisionConfig): Record<string, unknown> {
  let modelType: string;
  switch (cfg.arch) {
    case "siglip":
      modelType = "siglip_vision_model";
      break;
    case "clip":
      modelType = "clip_vision_model";
      break;
    default: {
      const never: never = cfg.arch;
      throw new Error(`unhandled arch ${never}`);
    }
  }
  return {
    model_type: modelType,
    hidden_size: cfg.hiddenSize,
    intermediate_size: cfg.intermediateSize,
    num_hidden_layers: cfg.numLayers,
    num_attention_heads: cfg.numHeads,
    num_channels: 3,
    image_size: cfg.imageSize,
    patch_size: cfg.patchSize,
    layer_norm_eps: cfg.layerNormEps,
    hidden_act: hfAct(cfg.act),
  };
}
