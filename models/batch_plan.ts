/**
 * The batch the model takes ({@linkcode AsvrBatch}: B rows of T tokens, each row with at most one
 * image whose N features go to N contiguous positions) and its checks against the model, which give
 * the {@linkcode BatchPlan}: the sizes B, T, N, the rows with an image, and the index tables that
 * splice the projected image features into the token embeddings [B*T, C] (`scatterRows`) and
 * gather the LLM's hidden states at the image positions [B, N, C] for the head (`gatherRows`).
 * Host only: nothing here touches the GPU. Errors name the batch field, the row and what it must be.
 * @module
 */

import { IGNORE_INDEX } from "../core/labels.ts";

import type { AsvrBatch } from "../data/batch.ts";
export type { AsvrBatch } from "../data/batch.ts";

/** What the checks of a batch found out. */
export interface BatchPlan {
  B: number;
  T: number;
  N: number;
  /** The rows that have an image, ascending. */
  imageRows: number[];
  /** i32 [B_img * N]: flat [B*T] position of image row k's patch i at k*N + i. */
  spliceIdx: Int32Array;
  /** i32 [B * N]: flat [B*T] position of row b's patch i at b*N + i, -1 for a row without an image. */
  hiddenIdx: Int32Array;
}

/**
 * Checks a batch against the model and computes the index tables (host only). `vocabSize` is the
 * LLM's V (token ids and labels must lie in [0, V)); `patches(B)` gives N, the features per image
 * (asked once the batch's row count B is known to be consistent; it may throw).
 */
export function planBatch(batch: AsvrBatch, vocabSize: number, patches: (B: number) => number): BatchPlan {
  const where = "AsvrModel.forward";
  const { hasImage, imagePositions, inputIds, labels } = batch;
  const B = hasImage.length;
  if (B === 0) throw new Error(`${where}: batch.hasImage is empty; give one entry per row`);
  if (inputIds.length === 0 || inputIds.length % B !== 0) {
    throw new Error(
      `${where}: batch.inputIds has ${inputIds.length} ids for ${B} rows; it must be [B, T], T >= 1`,
    );
  }
  const T = inputIds.length / B;
  if (labels.length !== B * T) {
    throw new Error(
      `${where}: batch.labels has ${labels.length} entries; it must be [B, T] = [${B}, ${T}]`,
    );
  }
  if (imagePositions.length !== B) {
    throw new Error(
      `${where}: batch.imagePositions has ${imagePositions.length} rows; give one per row (B = ${B})`,
    );
  }
  const N = patches(B);
  const imageRows = hasImage.flatMap((h, b) => (h ? [b] : []));
  const V = vocabSize;
  const spliceIdx = new Int32Array(imageRows.length * N);
  const hiddenIdx = new Int32Array(B * N).fill(-1);
  const isImage = new Uint8Array(B * T);
  for (let b = 0; b < B; b++) {
    const pos = imagePositions[b];
    if (!hasImage[b]) {
      if (pos.length) {
        throw new Error(
          `${where}: batch.imagePositions[${b}] has ${pos.length} positions but row ${b} has no image; give []`,
        );
      }
      continue;
    }
    if (
      pos.length !== N || pos.some((p, i) => !Number.isInteger(p) || p !== pos[0] + i) || pos[0] < 0 ||
      pos[0] + N > T
    ) {
      throw new Error(
        `${where}: batch.imagePositions[${b}] must be ${N} contiguous ascending positions in [0, ${T}) ` +
          `(one per image feature), got ${pos.length} starting at ${pos[0]}`,
      );
    }
    const k = imageRows.indexOf(b);
    for (let i = 0; i < N; i++) {
      spliceIdx[k * N + i] = b * T + pos[i];
      hiddenIdx[b * N + i] = b * T + pos[i];
      isImage[b * T + pos[i]] = 1;
    }
  }
  for (let j = 0; j < B * T; j++) {
    const [b, t] = [Math.floor(j / T), j % T];
    if (isImage[j]) {
      if (labels[j] !== IGNORE_INDEX) {
        throw new Error(
          `${where}: batch.labels[${b}, ${t}] is ${
            labels[j]
          } at an image position; image positions are never ` +
            `supervised: set ${IGNORE_INDEX}`,
        );
      }
      continue;
    }
    if (!(inputIds[j] >= 0 && inputIds[j] < V)) {
      throw new Error(
        `${where}: batch.inputIds[${b}, ${t}] is ${inputIds[j]}, outside the vocabulary [0, ${V})`,
      );
    }
    if (labels[j] !== IGNORE_INDEX && !(labels[j] >= 0 && labels[j] < V)) {
      throw new Error(
        `${where}: batch.labels[${b}, ${t}] is ${
          labels[j]
        }; a label is a token id in [0, ${V}) or ${IGNORE_INDEX}`,
      );
    }
  }
  return { B, T, N, imageRows, spliceIdx, hiddenIdx };
}
