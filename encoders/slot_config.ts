/**
 * The vision encoder slot of the model's config, a union on `kind`: a SigLIP or CLIP encoder run on
 * the GPU (loaded from a Hugging Face folder, or built for random init from sizes whose omitted
 * fields take transformers' defaults for the family), or an encoder exported to ONNX run on the CPU.
 * What the other slots need to know of it goes through {@linkcode gpuVisionSlot},
 * {@linkcode onnxEncoderSlot} and {@linkcode keepsClsRow}.
 *
 * ```ts ignore
 * const enc = parseEncoderSlot({ kind: "siglip", path: "/models/siglip-so400m-patch14-384" }, "encoder");
 * // { kind: "siglip", path: "...", layer: -2, keepCls: false, input: "continuous",
 * //   inputTokenizer: "semantic" }
 * ```
 * @module
 */

import { z } from "zod";
import { checkPathOrConfig, stripUndefined } from "../schema/fields.ts";
import { parseSchema } from "../schema/parse.ts";
import {
  checkVisionConfig,
  type VisionAct,
  type VisionArch,
  type VisionConfig,
  visionConfigFromHf,
} from "./config.ts";

/**
 * What the LLM sees at the image positions: "continuous", the encoder's features (the recipe);
 * "quantized", their RQ reconstruction sum_d C_d[k_d] by a visual tokenizer (the paper's "discrete
 * input" ablation), through the same projector.
 */
export type EncoderInput = "continuous" | "quantized";

/** Every {@linkcode EncoderInput}. */
export const ENCODER_INPUTS: readonly EncoderInput[] = ["continuous", "quantized"];

/** The sizes of a ViT built for random init: a `VisionConfig` without `arch` (the slot's kind says it). */
export type VisionSizes = Omit<VisionConfig, "arch">;

/** A SigLIP or CLIP vision encoder on the GPU (frozen), parsed: every default filled. */
export interface VisionEncoderSlotConfig {
  /** The family. */
  kind: VisionArch;
  /** A Hugging Face folder (config.json + safetensors) to load; absent: random init from `config`. */
  path?: string;
  /**
   * Sizes for a random init (tests, tiny runs); exactly one of `path` and `config` is given. Parsed,
   * every size is set: those left out take transformers' defaults for the family.
   */
  config?: VisionSizes;
  /** The hidden state fed to the projector, HF `hidden_states` indexing (default -2, LLaVA's). */
  layer: number;
  /** CLIP: keep the CLS row in front of the patches (default false, LLaVA's "patch" select). */
  keepCls: boolean;
  /** What the LLM sees: the features or their RQ reconstruction (default "continuous"). */
  input: EncoderInput;
  /** With input "quantized": the rq visual tokenizer whose reconstruction is fed (default "semantic"). */
  inputTokenizer: string;
}

/** A vision encoder exported to ONNX, run on the CPU (see `AsvrModel.precompute`). */
export interface OnnxEncoderSlotConfig {
  /** The kind. */
  kind: "onnx";
  /** The `.onnx` file. */
  path: string;
  /** The model input that takes the pixels (default: its only input). */
  inputName?: string;
  /** The model output holding the features (default: its only output). */
  outputName?: string;
}

/** The vision encoder slot, by `kind`. */
export type EncoderSlotConfig = VisionEncoderSlotConfig | OnnxEncoderSlotConfig;

/** A vision encoder slot as written: the fields with defaults may be left out, and so may any size. */
export type VisionEncoderSlotInput =
  & Pick<VisionEncoderSlotConfig, "kind">
  & Partial<Omit<VisionEncoderSlotConfig, "kind" | "config">>
  & {
    /** Sizes for a random init; the ones left out take transformers' defaults for the family. */
    config?: Partial<VisionSizes>;
  };

/** The encoder slot as written (an ONNX encoder's fields have no defaults). */
export type EncoderSlotInput = VisionEncoderSlotInput | OnnxEncoderSlotConfig;

// ------------------------------------------------------------------ schema

/** Exhaustive lists of the encoder's string unions (a missing member is a compile error). */
const VISION_ARCH_SET: Record<VisionArch, true> = { siglip: true, clip: true };
const VISION_ACT_SET: Record<VisionAct, true> = { gelu_tanh: true, quick_gelu: true, gelu: true };
const VISION_ARCHS = Object.keys(VISION_ARCH_SET) as VisionArch[];
const VISION_ACTS = Object.keys(VISION_ACT_SET) as VisionAct[];

/**
 * The vision slot as its schema gives it: the sizes as written. Narrower once parsed
 * ({@linkcode VisionEncoderSlotConfig}): the family's defaults fill the sizes, which takes
 * transformers' tables (`visionConfigFromHf`), not a schema default.
 */
type VisionEncoderSlotFields = Omit<VisionEncoderSlotConfig, "config"> & { config?: Partial<VisionSizes> };

const posInt = z.number().int().positive();
const nonEmpty = z.string().min(1);

const visionSizesSchema = z.strictObject({
  hiddenSize: posInt.optional(),
  intermediateSize: posInt.optional(),
  numLayers: posInt.optional(),
  numHeads: posInt.optional(),
  imageSize: posInt.optional(),
  patchSize: posInt.optional(),
  layerNormEps: z.number().positive().optional(),
  act: z.enum(VISION_ACTS).optional(),
});

const visionEncoderSchema = z.strictObject({
  kind: z.enum(VISION_ARCHS),
  path: nonEmpty.optional(),
  config: visionSizesSchema.optional(),
  layer: z.number().int().default(-2),
  keepCls: z.boolean().default(false),
  input: z.enum(ENCODER_INPUTS).default("continuous"),
  inputTokenizer: nonEmpty.default("semantic"),
});

const onnxEncoderSchema = z.strictObject({
  kind: z.literal("onnx"),
  path: nonEmpty,
  inputName: nonEmpty.optional(),
  outputName: nonEmpty.optional(),
});

/** The encoder slot's rules and defaults, by `kind`. */
const encoderSlotSchema: z.ZodType<VisionEncoderSlotFields | OnnxEncoderSlotConfig, EncoderSlotInput> = z
  .discriminatedUnion("kind", [visionEncoderSchema, onnxEncoderSchema]);

const ENCODER_KINDS = [...VISION_ARCHS, "onnx"].map((k) => JSON.stringify(k)).join(", ");

// ------------------------------------------------------------------ parsing

/**
 * Validates the encoder slot given as data and fills every default, the sizes of a random init
 * included (transformers' defaults for the family, then checked together). `path` names where it
 * sits (`encoder`); errors name the field under it, the value found and what is allowed. The checks
 * against the other slots are the model config's.
 */
export function parseEncoderSlot(value: unknown, path: string): EncoderSlotConfig {
  const v = stripUndefined(parseSchema(encoderSlotSchema, value, path, { hints: { kind: ENCODER_KINDS } }));
  if (v.kind === "onnx") return v;
  checkPathOrConfig(v, path, "a Hugging Face vision folder");
  const { config, ...fields } = v;
  const out: VisionEncoderSlotConfig = fields;
  if (config) {
    out.config = visionSizes(v.kind, stripUndefined(config), `${path}.config`);
    const L = out.config.numLayers;
    if (out.layer < -(L + 1) || out.layer > L) {
      throw new Error(
        `${path}.layer is ${out.layer}, out of range for ${L} layers; use 0..${L} or -1..-${L + 1} ` +
          `(HF hidden_states indexing)`,
      );
    }
  }
  return out;
}

/**
 * The encoder slot when the GPU runs it (SigLIP, CLIP): its hidden layers can be read (by a visual
 * tokenizer on `encoder: "input"`) and its width is known before it runs. Null for an ONNX encoder.
 */
export function gpuVisionSlot(enc: EncoderSlotConfig): VisionEncoderSlotConfig | null {
  return enc.kind === "onnx" ? null : enc;
}

/** The encoder slot when it is an ONNX model run on the CPU; null for a GPU encoder. */
export function onnxEncoderSlot(enc: EncoderSlotConfig): OnnxEncoderSlotConfig | null {
  return enc.kind === "onnx" ? enc : null;
}

/** Whether the encoder feeds a CLS row in front of the patches (CLIP with `keepCls`). */
export function keepsClsRow(enc: EncoderSlotConfig): boolean {
  return enc.kind === "clip" && enc.keepCls;
}

/** The family's defaults (transformers'), overridden by the given sizes, then checked. */
function visionSizes(kind: VisionArch, given: Partial<VisionSizes>, path: string): VisionSizes {
  const base = visionConfigFromHf({ model_type: `${kind}_vision_model` }, path);
  const cfg: VisionConfig = { ...base, ...given, arch: kind };
  checkVisionConfig(cfg, path);
  const { arch: _arch, ...sizes } = cfg;
  return sizes;
}
