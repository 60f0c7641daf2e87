/**
 * Preparing the visual targets of a batch from its codes i32 [B, N, D] (N patches, D depths): the
 * alignment of codes to image positions ("same" / "next") and the rows of samples without an image
 * (masked with -100, or kept), then one depth's targets as the [B*N] ids of a classifier.
 *
 * Two versions of each step compute the same thing: `*Host` on host arrays (for codes built on the
 * CPU, once per batch, before upload) and the plain names on GPU tensors (codes produced on the GPU,
 * e.g. by the visual tokenizer; a few copy kernels, no readback).
 * @module
 */

import { concat, scatterRows, slice } from "../core/kernels/rows/rows.ts";
import type { Tensor } from "../core/tensor.ts";
import type { Alignment, LossConfig, TextOnlyRows } from "./config.ts";
import { IGNORE_INDEX } from "../core/labels.ts";

/** The shape [B, N, D] of a codes array: B samples, N patches, D depths. */
export type CodesShape = readonly [number, number, number];

function checkHost(codes: ArrayLike<number>, shape: CodesShape, op: string): void {
  const [B, N, D] = shape;
  const ok = shape.length === 3 && shape.every((d) => Number.isInteger(d) && d >= 0);
  if (!ok || codes.length !== B * N * D) {
    throw new Error(
      `${op}: codes hold ${codes.length} ids for shape [${shape}] (B, N, D); they must hold B*N*D`,
    );
  }
}

function checkCodes(codes: Tensor, op: string): [number, number, number] {
  if (codes.dtype !== "i32" || codes.shape.length !== 3) {
    throw new Error(`${op}: codes must be i32 [B, N, D], got ${codes}`);
  }
  const [B, N, D] = codes.shape;
  return [B, N, D];
}

function checkHasImage(hasImage: readonly boolean[], B: number, op: string): void {
  if (hasImage.length !== B) {
    throw new Error(`${op}: hasImage has ${hasImage.length} entries for ${B} samples; give one per sample`);
  }
}

/**
 * Aligns codes [B, N, D] (host, row-major) to the image positions: "same" returns a copy; "next"
 * gives position i the codes of patch i + 1 and the last patch -100. Returns a new array.
 */
export function alignCodesHost(
  codes: ArrayLike<number>,
  shape: CodesShape,
  alignment: Alignment,
): Int32Array {
  checkHost(codes, shape, "alignCodesHost");
  const [B, N, D] = shape;
  switch (alignment) {
    case "same":
      return Int32Array.from(codes);
    case "next": {
      const out = new Int32Array(B * N * D);
      for (let b = 0; b < B; b++) {
        for (let i = 0; i < N; i++) {
          for (let d = 0; d < D; d++) {
            out[(b * N + i) * D + d] = i + 1 < N ? codes[(b * N + i + 1) * D + d] : IGNORE_INDEX;
          }
        }
      }
      return out;
    }
    default: {
      const never: never = alignment;
      throw new Error(`alignCodesHost: alignment ${JSON.stringify(never)} must be "same" or "next"`);
    }
  }
}

/**
 * Codes i32 [B, N, D] on the GPU aligned to the image positions: "same", a copy (patch i predicts
 * patch i's codes); "next", position i gets the codes of patch i + 1 and the last patch -100.
 * Returns a new tensor [B, N, D].
 */
export function alignCodes(codes: Tensor, alignment: Alignment): Tensor {
  const [B, N, D] = checkCodes(codes, "alignCodes");
  const e = codes.engine;
  switch (alignment) {
    case "same": {
      const out = e.empty(codes.shape, "i32");
      e.copy(codes, out);
      return out;
    }
    case "next": {
      const pad = e.full([B, Math.min(N, 1), D], IGNORE_INDEX, "i32"); // [B, 1, D]
      return N <= 1 ? pad : concat([slice(codes, 1, 1, N), pad], 1); // [B, N, D]
    }
    default: {
      const never: never = alignment;
      throw new Error(`alignCodes: alignment ${JSON.stringify(never)} must be "same" or "next"`);
    }
  }
}

/**
 * The rows of samples without an image, on host codes [B, N, D]: "mask" sets all their codes to
 * -100; "train" keeps them. `hasImage` has one entry per sample. Returns a new array.
 */
export function maskRowsHost(
  codes: ArrayLike<number>,
  shape: CodesShape,
  hasImage: readonly boolean[],
  mode: TextOnlyRows = "mask",
): Int32Array {
  checkHost(codes, shape, "maskRowsHost");
  const [B, N, D] = shape;
  checkHasImage(hasImage, B, "maskRowsHost");
  const out = Int32Array.from(codes);
  switch (mode) {
    case "mask":
      for (let b = 0; b < B; b++) if (!hasImage[b]) out.fill(IGNORE_INDEX, b * N * D, (b + 1) * N * D);
      return out;
    case "train":
      return out;
    default: {
      const never: never = mode;
      throw new Error(`maskRowsHost: mode ${JSON.stringify(never)} must be "mask" or "train"`);
    }
  }
}

/**
 * The rows of samples without an image, on GPU codes i32 [B, N, D]: "mask" (default) sets all their
 * codes to -100; "train" keeps them. `hasImage` (host, one entry per sample) is known when the batch
 * is built. Returns a new tensor [B, N, D].
 */
export function maskRows(codes: Tensor, hasImage: readonly boolean[], mode: TextOnlyRows = "mask"): Tensor {
  const [B, N, D] = checkCodes(codes, "maskRows");
  checkHasImage(hasImage, B, "maskRows");
  const e = codes.engine;
  const textOnly = hasImage.flatMap((has, b) => (has ? [] : [b]));
  switch (mode) {
    case "mask": {
      if (textOnly.length === 0 || N * D === 0) break;
      const idx = e.tensor(textOnly, [textOnly.length], "i32"); // [M]
      const fill = e.full([textOnly.length, N * D], IGNORE_INDEX, "i32"); // [M, N*D]
      return scatterRows(codes.view([B, N * D]), idx, fill).view([B, N, D]);
    }
    case "train":
      break;
    default: {
      const never: never = mode;
      throw new Error(`maskRows: mode ${JSON.stringify(never)} must be "mask" or "train"`);
    }
  }
  const out = e.empty(codes.shape, "i32");
  e.copy(codes, out);
  return out;
}

/**
 * The visual targets of a batch on the host: codes [B, N, D] with the text-only rows handled by
 * `cfg.textOnlyRows`, then aligned by `cfg.alignment`. Returns a new array [B, N, D].
 */
export function visualTargetsHost(
  codes: ArrayLike<number>,
  shape: CodesShape,
  hasImage: readonly boolean[],
  cfg: Pick<LossConfig, "alignment" | "textOnlyRows">,
): Int32Array {
  return alignCodesHost(maskRowsHost(codes, shape, hasImage, cfg.textOnlyRows), shape, cfg.alignment);
}

/**
 * The visual targets of a batch on the GPU: codes i32 [B, N, D] with the text-only rows handled by
 * `cfg.textOnlyRows`, then aligned by `cfg.alignment`. Returns a new tensor [B, N, D].
 */
export function visualTargets(
  codes: Tensor,
  hasImage: readonly boolean[],
  cfg: Pick<LossConfig, "alignment" | "textOnlyRows">,
): Tensor {
  const e = codes.engine;
  return e.tidy(() => alignCodes(maskRows(codes, hasImage, cfg.textOnlyRows), cfg.alignment));
}

/**
 * Depth d's targets as classifier ids: codes i32 [B, N, D] -> i32 [B*N] (row b*N + i holds
 * codes[b, i, d]), the `targets` of `classifierCrossEntropy` for head d.
 */
export function depthTargets(codes: Tensor, d: number): Tensor {
  const [B, N, D] = checkCodes(codes, "depthTargets");
  if (!Number.isInteger(d) || d < 0 || d >= D) {
    throw new Error(`depthTargets: depth ${d} out of range; codes ${codes} have depths 0..${D - 1}`);
  }
  return slice(codes.view([B * N, D]), 1, d, d + 1).view([B * N]); // [B*N]
}
