/**
 * Batching: tokenized rows (and their preprocessed images) into one {@linkcode AsvrBatch}, padded on
 * the right to the longest row.
 *
 * ```ts ignore
 * const batch = collate([a, b], [pixelsA, null], { imageShape: [3, 384, 384] });
 * // batch.inputIds: i32 [2, T], pad id 0 (<unk>); batch.labels: -100 on the padding
 * ```
 * @module
 */

import { IGNORE_INDEX } from "../core/labels.ts";
import type { AsvrBatch } from "./batch.ts";
import type { TokenizedRow } from "./tokenize.ts";

/** Options of {@linkcode collate}. */
export interface CollateOptions {
  /** The id that pads input ids (default 0, Llama-2's `<unk>`, as LLaVA pads Vicuna batches). */
  padId?: number;
  /** The shape of one preprocessed image, [3, H, W]. */
  imageShape: [number, number, number];
}

/**
 * Packs rows into a batch of B rows and T = the longest row's length: input ids padded with `padId`
 * and labels with -100 on the right, each row's image positions (`imageStart` .. + `imageTokens` - 1),
 * and pixels f32 [B, 3, H, W] with zeros for rows without an image. `pixels` gives one image per row
 * (null for a row without one), or is null to leave the batch's pixels null (e.g. when the encoder's
 * features come precomputed).
 */
export function collate(
  rows: TokenizedRow[],
  pixels: (Float32Array | null)[] | null,
  options: CollateOptions,
): AsvrBatch {
  const B = rows.length;
  if (B === 0) throw new Error("collate: no rows; a batch needs at least one row");
  const padId = options.padId ?? 0;
  if (!Number.isInteger(padId) || padId < 0) {
    throw new Error(`collate: padId must be a token id (>= 0), got ${padId}`);
  }
  const [C, H, W] = options.imageShape;
  if (C !== 3 || !(H > 0) || !(W > 0) || !Number.isInteger(H) || !Number.isInteger(W)) {
    throw new Error(
      `collate: imageShape must be [3, H, W] with positive integer H, W, got [${options.imageShape}]`,
    );
  }
  if (pixels && pixels.length !== B) {
    throw new Error(
      `collate: ${pixels.length} images for ${B} rows; give one per row (null for a row without one)`,
    );
  }
  rows.forEach((r, b) => {
    if (r.inputIds.length !== r.labels.length) {
      throw new Error(
        `collate: row ${b} has ${r.inputIds.length} input ids but ${r.labels.length} labels; they must match`,
      );
    }
    if (r.imageStart >= 0 && r.imageStart + r.imageTokens > r.inputIds.length) {
      throw new Error(
        `collate: row ${b}'s image span ${r.imageStart}..${r.imageStart + r.imageTokens - 1} runs past its ` +
          `${r.inputIds.length} tokens; tokenize rows with tokenizeRow`,
      );
    }
  });
  const T = Math.max(...rows.map((r) => r.inputIds.length));
  const inputIds = new Int32Array(B * T).fill(padId); // [B, T]
  const labels = new Int32Array(B * T).fill(IGNORE_INDEX); // [B, T]
  rows.forEach((r, b) => {
    inputIds.set(r.inputIds, b * T);
    labels.set(r.labels, b * T);
  });
  const hasImage = rows.map((r) => r.imageStart >= 0 && r.imageTokens > 0);
  const imagePositions = rows.map((r, b) =>
    hasImage[b] ? Array.from({ length: r.imageTokens }, (_, i) => r.imageStart + i) : []
  );

  let out: Float32Array | null = null;
  if (pixels) {
    const size = 3 * H * W;
    out = new Float32Array(B * size); // [B, 3, H, W], zeros for rows without an image
    pixels.forEach((p, b) => {
      if (!hasImage[b]) return;
      if (!p) throw new Error(`collate: row ${b} has an image but pixels[${b}] is null; give its pixels`);
      if (p.length !== size) {
        throw new Error(`collate: pixels[${b}] has ${p.length} values; it must be [3, ${H}, ${W}] = ${size}`);
      }
      out!.set(p, b * size);
    });
  }
  return { inputIds, labels, imagePositions, pixels: out, hasImage };
}
