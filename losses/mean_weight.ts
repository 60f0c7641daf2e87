/**
 * The weight that turns a sum of per-row losses into their mean over the counted rows, computed on
 * the GPU from the targets (so a loss needs no readback to know how many rows count).
 * @module
 */

import { IGNORE_INDEX } from "../core/labels.ts";
import type { Engine } from "../core/engine.ts";
import { ROW_WG, workgroupReduceWgsl } from "../core/kernels/rowwise.ts";
import type { Tensor } from "../core/tensor.ts";

// One workgroup loops over the R targets; a target counts when it is a class id in [0, C) and not `ignore`
// (the same test as crossEntropy's kernel).
const CODE = `
@group(0) @binding(0) var<storage, read> targets: array<i32>;     // [R]
@group(0) @binding(1) var<storage, read_write> out: array<f32>;   // [1]
struct P { R: u32, C: u32, ignore: i32 }
@group(0) @binding(2) var<uniform> p: P;
${workgroupReduceWgsl()}
@compute @workgroup_size(${ROW_WG})
fn main(@builtin(local_invocation_index) lid: u32) {
  var n = 0.0;
  for (var i = lid; i < p.R; i += ${ROW_WG}u) {
    let t = targets[i];
    if (t != p.ignore && t >= 0 && t < i32(p.C)) { n += 1.0; }
  }
  n = reduceSum(lid, n);
  if (lid == 0u) { out[0] = 1.0 / max(n, 1.0); }
}`;

/**
 * 1 / max(n, 1) as an f32 scalar [], where n counts the targets (i32 [R]) that are class ids in
 * [0, classes) and not `ignoreIndex` (default -100): the rows {@linkcode crossEntropy}-style losses
 * count. Multiplying a sum of row losses by it gives their mean, and 0 when no row counts.
 */
export function meanWeight(targets: Tensor, classes: number, ignoreIndex: number = IGNORE_INDEX): Tensor {
  if (targets.dtype !== "i32") throw new Error(`meanWeight: targets must be i32, got ${targets}`);
  if (!Number.isInteger(classes) || classes < 1) {
    throw new Error(`meanWeight: classes must be a positive integer, got ${classes}`);
  }
  const e: Engine = targets.engine;
  const out = e.empty([]);
  e.run({
    label: "mean_weight",
    code: CODE,
    bindings: [targets, out],
    params: [targets.size, classes, ignoreIndex >>> 0],
    workgroups: [1],
  });
  return out;
}
