/**
 * CPU reference of cross-entropy (log-softmax + negative log-likelihood) with an ignore index: the
 * readable spec the GPU kernels are tested against. Math in f64.
 * @module
 */

import { IGNORE_INDEX } from "../../labels.ts";
import type { CrossEntropyOptions } from "./cross_entropy.ts";

/** A host array the CPU references read. */
export type Floats = Float32Array | Float64Array;

/** Whether row target `t` counts: not the ignore index and a class in [0, V). */
export function isCounted(t: number, V: number, ignoreIndex: number): boolean {
  return t !== ignoreIndex && t >= 0 && t < V;
}

/** Per-row log-sum-exp of logits [N, V] (stable: the row maximum is taken out first). */
export function logSumExpCpu(logits: Floats, V: number): Float64Array {
  const lse = new Float64Array(logits.length / V);
  for (let r = 0; r < lse.length; r++) {
    let m = -Infinity, s = 0;
    for (let v = 0; v < V; v++) m = Math.max(m, logits[r * V + v]);
    for (let v = 0; v < V; v++) s += Math.exp(logits[r * V + v] - m);
    lse[r] = m + Math.log(s);
  }
  return lse;
}

/**
 * Cross-entropy of logits [N, V] against class ids targets [N]: loss[r] = lse[r] - logits[r, t[r]] for
 * counted rows, 0 for ignored ones. "none" returns the N row losses; "sum" their sum; "mean" (the
 * default) the sum over the number of counted rows (0 when none counts). Returns [N] or [1].
 */
export function crossEntropyForwardCpu(
  logits: Floats,
  targets: ArrayLike<number>,
  V: number,
  opts: CrossEntropyOptions = {},
): Float64Array {
  const ignore = opts.ignoreIndex ?? IGNORE_INDEX, reduction = opts.reduction ?? "mean";
  const lse = logSumExpCpu(logits, V);
  const rows = new Float64Array(lse.length);
  let count = 0;
  for (let r = 0; r < rows.length; r++) {
    if (!isCounted(targets[r], V, ignore)) continue;
    rows[r] = lse[r] - logits[r * V + targets[r]];
    count++;
  }
  if (reduction === "none") return rows;
  const sum = rows.reduce((a, b) => a + b, 0);
  return Float64Array.of(reduction === "sum" ? sum : sum / Math.max(count, 1));
}

/**
 * Cross-entropy backward, given the output gradient g ([N] for "none", [1] otherwise):
 * dlogits[r, v] = (softmax(logits[r])[v] - (v == t[r])) * s[r] for counted rows and 0 for ignored
 * ones, with s[r] = g[r] ("none"), g[0] ("sum") or g[0] / count ("mean"). Returns [N, V].
 */
export function crossEntropyBackwardCpu(
  logits: Floats,
  targets: ArrayLike<number>,
  V: number,
  g: ArrayLike<number>,
  opts: CrossEntropyOptions = {},
): Float64Array {
  const ignore = opts.ignoreIndex ?? IGNORE_INDEX, reduction = opts.reduction ?? "mean";
  const lse = logSumExpCpu(logits, V);
  let count = 0;
  for (let r = 0; r < lse.length; r++) if (isCounted(targets[r], V, ignore)) count++;
  const d = new Float64Array(logits.length);
  for (let r = 0; r < lse.length; r++) {
    if (!isCounted(targets[r], V, ignore)) continue;
    const s = reduction === "none" ? g[r] : reduction === "sum" ? g[0] : g[0] / count;
    for (let v = 0; v < V; v++) {
      d[r * V + v] = (Math.exp(logits[r * V + v] - lse[r]) - (v === targets[r] ? 1 : 0)) * s;
    }
  }
  return d;
}
