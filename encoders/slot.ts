/**
 * The encoder slot built: the frozen vision encoder a parsed {@linkcode EncoderSlotConfig} names, a
 * SigLIP or CLIP ViT on the GPU (loaded from a Hugging Face folder, or random init from the slot's
 * sizes) or an ONNX model run on the CPU. What the rest of the model needs to know of the built part
 * goes through {@linkcode isGpuEncoderPart} and {@linkcode encoderPositions}.
 *
 * ```ts ignore
 * const part = await buildEncoderSlot(e, cfg.encoder, { dtype: "f32", seed: 1 });
 * const N = encoderPositions(part); // 729 for SigLIP-SO400M at 384 px; null for ONNX
 * await disposeEncoderSlot(part);
 * ```
 * @module
 */

import type { DType } from "../core/dtype.ts";
import type { Engine } from "../core/engine.ts";
import type { LoadProgress } from "../io/params.ts";
import { OnnxEncoder } from "./onnx_encoder.ts";
import { type EncoderSlotConfig, keepsClsRow, type VisionEncoderSlotConfig } from "./slot_config.ts";
import { VisionEncoder } from "./vit.ts";

/** The built encoder slot on the GPU: a SigLIP or CLIP ViT, frozen, with its slot config. */
export interface GpuEncoderPart {
  /** The variant. */
  kind: "vision";
  /** The slot's config. */
  cfg: VisionEncoderSlotConfig;
  /** The encoder. */
  enc: VisionEncoder;
}

/** The built encoder slot run on the CPU: an ONNX model. */
export interface OnnxEncoderPart {
  /** The variant. */
  kind: "onnx";
  /** The encoder. */
  enc: OnnxEncoder;
}

/** The built vision encoder. */
export type EncoderPart = GpuEncoderPart | OnnxEncoderPart;

/** How {@linkcode buildEncoderSlot} builds. */
export interface BuildEncoderOptions {
  /** Storage dtype of a GPU encoder's parameters. */
  dtype: DType;
  /** Seed of a random init. */
  seed: number;
  /** Called after each tensor of a loaded folder is on the GPU. */
  onProgress?: (p: LoadProgress) => void;
}

/**
 * Builds the encoder a parsed slot names and freezes it: loads its folder (refusing one that holds
 * another family than `kind`) or initializes it from the slot's sizes, or loads the ONNX model.
 */
export async function buildEncoderSlot(
  e: Engine,
  cfg: EncoderSlotConfig,
  opts: BuildEncoderOptions,
): Promise<EncoderPart> {
  const kind = cfg.kind;
  switch (kind) {
    case "siglip":
    case "clip": {
      const c = cfg as VisionEncoderSlotConfig;
      let enc: VisionEncoder;
      if (c.path !== undefined) {
        enc = await VisionEncoder.load(e, c.path, { dtype: opts.dtype, onProgress: opts.onProgress });
        if (enc.cfg.arch !== kind) {
          disposeParams(enc);
          throw new Error(
            `encoder.kind is "${kind}" but ${c.path} holds a ${enc.cfg.arch} encoder; ` +
              `set encoder.kind to "${enc.cfg.arch}"`,
          );
        }
      } else {
        enc = VisionEncoder.create(e, { arch: kind, ...c.config! }, { dtype: opts.dtype, seed: opts.seed });
      }
      enc.freeze();
      return { kind: "vision", cfg: c, enc };
    }
    case "onnx": {
      const enc = await OnnxEncoder.load(cfg.path, {
        ...(cfg.inputName ? { inputName: cfg.inputName } : {}),
        ...(cfg.outputName ? { outputName: cfg.outputName } : {}),
      });
      return { kind: "onnx", enc };
    }
    default: {
      const never: never = kind;
      throw new Error(`encoder.kind: unhandled kind ${never}`);
    }
  }
}

/** Frees a GPU encoder's parameters, or closes an ONNX model. */
export async function disposeEncoderSlot(part: EncoderPart): Promise<void> {
  if (isGpuEncoderPart(part)) disposeParams(part.enc);
  else await part.enc.close();
}

/**
 * Whether the encoder runs on the GPU (a ViT whose hidden layers can be read, whose width is known
 * before it runs); else it is an ONNX model run on the CPU.
 */
export function isGpuEncoderPart(part: EncoderPart): part is GpuEncoderPart {
  return part.kind === "vision";
}

/**
 * Image positions N the encoder feeds per image: a GPU encoder's patches, plus CLIP's CLS row when
 * kept; null for an ONNX encoder (known only from its output).
 */
export function encoderPositions(part: EncoderPart): number | null {
  if (!isGpuEncoderPart(part)) return null;
  return part.enc.numPatches + (keepsClsRow(part.cfg) ? 1 : 0);
}

function disposeParams(enc: VisionEncoder): void {
  for (const t of enc.params().values()) t.dispose();
}
