/**
 * Length-grouped batching: an epoch's shuffled order rearranged so that each micro-batch holds rows of
 * similar length. A batch is padded to its longest row, so rows of mixed lengths waste positions (and
 * attention's cost grows with the square of the padded length); LLaVA's fine-tuning groups rows by length
 * for the same reason (`group_by_modality_length`).
 *
 * The shuffled order is cut into groups of {@linkcode GROUP_BATCHES} micro-batches; each group is sorted
 * by length and cut into micro-batches, and the group's batches are then shuffled among themselves, so a
 * batch's length does not follow the step. Which rows meet in a group still changes every epoch.
 * @module
 */

import { shuffleInPlace } from "../core/random.ts";
import { IMAGE_MARKER, type LlavaRow } from "./llava_json.ts";

/** Micro-batches per sorting group. */
export const GROUP_BATCHES = 16;

/**
 * A row's length estimate for grouping: the words of its turns (whitespace-separated) plus the
 * `imageTokens` positions of its image. Cheap (no tokenization) and, for grouping, close enough.
 */
export function rowLengthEstimate(row: LlavaRow, imageTokens: number): number {
  let words = 0;
  for (const turn of row.conversations) {
    const text = turn.value.replace(IMAGE_MARKER, " ").trim();
    if (text) words += text.split(/\s+/).length;
  }
  return words + (row.image ? imageTokens : 0);
}

/**
 * Rearranges `order` (row indices [n], already shuffled) into length-grouped micro-batches of
 * `batchSize`: see the module doc. `lengths[i]` is row i's length; `rand` draws uniform [0, 1) for the
 * shuffle of batches within a group. Returns a new permutation of `order`; a trailing partial batch (n
 * not a multiple of `batchSize`) stays last, holding its group's shortest rows.
 */
export function groupByLength(
  order: Int32Array,
  lengths: ArrayLike<number>,
  batchSize: number,
  rand: () => number,
): Int32Array {
  if (!Number.isInteger(batchSize) || batchSize < 1) {
    throw new Error(`groupByLength: batchSize must be a positive integer, got ${batchSize}`);
  }
  const out = new Int32Array(order.length);
  const group = batchSize * GROUP_BATCHES;
  for (let g0 = 0; g0 < order.length; g0 += group) {
    // Longest first; ties keep the shuffled order.
    const rows = Array.from(order.subarray(g0, Math.min(g0 + group, order.length)))
      .sort((a, b) => lengths[b] - lengths[a]);
    const full = Math.floor(rows.length / batchSize);
    const batches = shuffleInPlace(Array.from({ length: full }, (_, k) => k), rand);
    let at = g0;
    for (const k of batches) {
      out.set(rows.slice(k * batchSize, (k + 1) * batchSize), at);
      at += batchSize;
    }
    out.set(rows.slice(full * batchSize), at);
  }
  return out;
}
