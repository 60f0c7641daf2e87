/**
 * Fused cross-entropy (log-softmax + negative log-likelihood) with an ignore index, for large
 * vocabularies: one workgroup per row loops over V with an online max and sum, so no [N, V] tensor
 * is allocated besides the gradient; the per-row log-sum-exp is saved for backward.
 * @module
 */

import { record } from "../../autograd.ts";
import type { DType } from "../../dtype.ts";
import { IGNORE_INDEX } from "../../labels.ts";
import type { Tensor } from "../../tensor.ts";
import {
  checkGrad,
  enableF16,
  ROW_WG,
  rowGrid,
  rowMainWgsl,
  rowsOf,
  rowThreads,
  subgroupArgsWgsl,
  subgroupInitWgsl,
  workgroupReduceWgsl,
} from "../rowwise.ts";

/** Options of {@linkcode crossEntropy}. */
export interface CrossEntropyOptions {
  /**
   * Rows whose target is this id count for nothing (default {@linkcode IGNORE_INDEX}, -100, as in
   * PyTorch).
   */
  ignoreIndex?: number;
  /**
   * "mean" (default): the sum of row losses over the number of counted rows (0 when none counts);
   * "sum": their sum; "none": the row losses (0 at ignored rows).
   */
  reduction?: "mean" | "sum" | "none";
}

// The parameters every kernel gets (R = N rows, C = V classes) and the test for a counted row.
const PARAMS = `struct P { R: u32, C: u32, ignore: i32, mean: u32 }
fn counted(t: i32) -> bool { return t != p.ignore && t >= 0 && t < i32(p.C); }`;

function forwardCode(t: DType, wg: number, sg: boolean): string {
  return `${enableF16(t)}
@group(0) @binding(0) var<storage, read> logits: array<${t}>;      // [N, V]
@group(0) @binding(1) var<storage, read> targets: array<i32>;      // [N]
@group(0) @binding(2) var<storage, read_write> lse: array<f32>;    // [N]
@group(0) @binding(3) var<storage, read_write> losses: array<f32>; // [N]
${PARAMS}
@group(0) @binding(4) var<uniform> p: P;
${workgroupReduceWgsl(wg, sg)}
${rowMainWgsl(wg, sg)}
  // Online softmax denominator: s = sum exp(z - m) with m the running maximum of this thread's logits.
  var m = -3.0e38;
  var s = 0.0;
  for (var c = lid; c < p.C; c += ${wg}u) {
    let z = f32(logits[base + c]);
    if (z > m) {
      s = s * exp(m - z) + 1.0;
      m = z;
    } else {
      s += exp(z - m);
    }
  }
  let rowMax = reduceMax(lid, m);
  let l = rowMax + log(reduceSum(lid, s * exp(m - rowMax)));
  if (lid == 0u) {
    lse[row] = l;
    let t = targets[row];
    var loss = 0.0;
    if (counted(t)) { loss = l - f32(logits[base + u32(t)]); }
    losses[row] = loss;
  }
}`;
}

// One workgroup: out = sum of the row losses (over the counted rows for "mean"), count = counted rows.
function reduceCode(sg: boolean): string {
  return `
@group(0) @binding(0) var<storage, read> losses: array<f32>;    // [N]
@group(0) @binding(1) var<storage, read> targets: array<i32>;   // [N]
@group(0) @binding(2) var<storage, read_write> out: array<f32>;   // [1]
@group(0) @binding(3) var<storage, read_write> count: array<f32>; // [1]
${PARAMS}
@group(0) @binding(4) var<uniform> p: P;
${workgroupReduceWgsl(ROW_WG, sg)}
@compute @workgroup_size(${ROW_WG})
fn main(@builtin(local_invocation_index) lid: u32${subgroupArgsWgsl(sg)}) {
  ${subgroupInitWgsl(sg)}
  var s = 0.0;
  var n = 0.0;
  for (var i = lid; i < p.R; i += ${ROW_WG}u) {
    s += losses[i];
    if (counted(targets[i])) { n += 1.0; }
  }
  s = reduceSum(lid, s);
  n = reduceSum(lid, n);
  if (lid == 0u) {
    out[0] = select(s, s / max(n, 1.0), p.mean == 1u);
    count[0] = n;
  }
}`;
}

// dlogits = (softmax - onehot) * scale on counted rows, 0 on ignored rows.
function backwardCode(t: DType, reduction: "mean" | "sum" | "none", wg: number): string {
  const scale = { none: "g[row]", sum: "g[0]", mean: "g[0] / max(count[0], 1.0)" }[reduction];
  return `${enableF16(t)}
@group(0) @binding(0) var<storage, read> logits: array<${t}>;      // [N, V]
@group(0) @binding(1) var<storage, read> targets: array<i32>;      // [N]
@group(0) @binding(2) var<storage, read> lse: array<f32>;          // [N]
@group(0) @binding(3) var<storage, read> g: array<f32>;            // [N] ("none") or [1]
@group(0) @binding(4) var<storage, read_write> dlogits: array<${t}>; // [N, V]
${reduction === "mean" ? "@group(0) @binding(5) var<storage, read> count: array<f32>; // [1]" : ""}
${PARAMS}
@group(0) @binding(${reduction === "mean" ? 6 : 5}) var<uniform> p: P;
${rowMainWgsl(wg)}
  let t = targets[row];
  var scale = 0.0;
  if (counted(t)) { scale = ${scale}; }
  let l = lse[row];
  for (var c = lid; c < p.C; c += ${wg}u) {
    let onehot = select(0.0, 1.0, i32(c) == t);
    dlogits[base + c] = ${t}((exp(f32(logits[base + c]) - l) - onehot) * scale);
  }
}`;
}

/**
 * Cross-entropy of `logits` against class ids `targets`, fused (log-softmax + NLL in one pass over
 * each row, math in f32). logits: [N, V] (f32 or f16; leading dims flatten into N), targets: i32 [N].
 * Rows whose target is `ignoreIndex`, or outside [0, V), count for nothing. Returns an f32 scalar []
 * ("mean", "sum") or the f32 row losses [N] ("none"). Differentiable in logits: the gradient has the
 * logits' dtype and is the only [N, V] tensor allocated.
 */
export function crossEntropy(logits: Tensor, targets: Tensor, opts: CrossEntropyOptions = {}): Tensor {
  const e = logits.engine;
  const ignore = opts.ignoreIndex ?? IGNORE_INDEX, reduction = opts.reduction ?? "mean";
  const { R: N, C: V } = rowsOf(logits, "crossEntropy");
  if (targets.dtype !== "i32" || targets.size !== N) {
    throw new Error(`crossEntropy: targets must be i32 with ${N} ids for ${logits}, got ${targets}`);
  }
  const params = [N, V, ignore >>> 0, reduction === "mean" ? 1 : 0];
  const lse = e.empty([N]), losses = e.empty(logits.shape.slice(0, -1));
  e.run({
    label: "cross_entropy",
    code: forwardCode(logits.dtype, rowThreads(V), e.hasSubgroups),
    bindings: [logits, targets, lse, losses],
    params,
    workgroups: rowGrid(N, rowThreads(V)),
  });
  let out = losses, count: Tensor | null = null;
  if (reduction !== "none") {
    out = e.empty([]);
    count = e.empty([1]);
    e.run({
      label: "cross_entropy_reduce",
      code: reduceCode(e.hasSubgroups),
      bindings: [losses, targets, out, count],
      params,
      workgroups: [1],
    });
    losses.dispose();
  }
  record(out, [logits, targets], (g, needs) => {
    if (!needs[0]) return [null, null];
    checkGrad(g, out, "crossEntropy");
    const dlogits = e.empty(logits.shape, logits.dtype);
    const bindings = [logits, targets, lse, g, dlogits];
    e.run({
      label: "cross_entropy_backward",
      code: backwardCode(logits.dtype, reduction, rowThreads(V)),
      bindings: reduction === "mean" ? [...bindings, count!] : bindings,
      params,
      workgroups: rowGrid(N, rowThreads(V)),
    });
    return [dlogits, null];
  });
  // Without a tape entry nothing reads the saved statistics again (later work is ordered after the kernels).
  if (!out.requiresGrad) {
    lse.dispose();
    count?.dispose();
  }
  return out;
}
