/**
 * Softmax over the last axis, one workgroup per row reduced across the workgroup (by subgroups where
 * the device has them).
 * @module
 */

import { record } from "../../autograd.ts";
import type { DType } from "../../dtype.ts";
import type { Tensor } from "../../tensor.ts";
import {
  checkGrad,
  enableF16,
  rowGrid,
  rowMainWgsl,
  rowsOf,
  rowThreads,
  workgroupReduceWgsl,
} from "../rowwise.ts";

function forwardCode(t: DType, wg: number, sg: boolean): string {
  return `${enableF16(t)}
@group(0) @binding(0) var<storage, read> x: array<${t}>;       // [R, C]
@group(0) @binding(1) var<storage, read_write> y: array<${t}>; // [R, C]
struct P { R: u32, C: u32 }
@group(0) @binding(2) var<uniform> p: P;
${workgroupReduceWgsl(wg, sg)}
${rowMainWgsl(wg, sg)}
  var m = -3.0e38;
  for (var c = lid; c < p.C; c += ${wg}u) { m = max(m, f32(x[base + c])); }
  m = reduceMax(lid, m);
  var s = 0.0;
  for (var c = lid; c < p.C; c += ${wg}u) { s += exp(f32(x[base + c]) - m); }
  let inv = 1.0 / reduceSum(lid, s);
  for (var c = lid; c < p.C; c += ${wg}u) { y[base + c] = ${t}(exp(f32(x[base + c]) - m) * inv); }
}`;
}

function backwardCode(t: DType, wg: number, sg: boolean): string {
  return `${enableF16(t)}
@group(0) @binding(0) var<storage, read> y: array<${t}>;        // [R, C]
@group(0) @binding(1) var<storage, read> g: array<${t}>;        // [R, C]
@group(0) @binding(2) var<storage, read_write> dx: array<${t}>; // [R, C]
struct P { R: u32, C: u32 }
@group(0) @binding(3) var<uniform> p: P;
${workgroupReduceWgsl(wg, sg)}
${rowMainWgsl(wg, sg)}
  var d = 0.0;
  for (var c = lid; c < p.C; c += ${wg}u) { d += f32(g[base + c]) * f32(y[base + c]); }
  d = reduceSum(lid, d);
  for (var c = lid; c < p.C; c += ${wg}u) {
    let yc = f32(y[base + c]);
    dx[base + c] = ${t}(yc * (f32(g[base + c]) - d));
  }
}`;
}

/**
 * Softmax over the last axis, numerically stable (the row maximum is subtracted first).
 * x: [..., C] (f32 or f16; math in f32), returns y: [..., C] of x's dtype. Differentiable in x.
 */
export function softmax(x: Tensor): Tensor {
  const e = x.engine;
  const { R, C } = rowsOf(x, "softmax");
  const y = e.empty(x.shape, x.dtype);
  e.run({
    label: "softmax",
    code: forwardCode(x.dtype, rowThreads(C), e.hasSubgroups),
    bindings: [x, y],
    params: [R, C],
    workgroups: rowGrid(R, rowThreads(C)),
  });
  return record(y, [x], (g) => {
    checkGrad(g, y, "softmax");
    const dx = e.empty(x.shape, x.dtype);
    e.run({
      label: "softmax_backward",
      code: backwardCode(x.dtype, rowThreads(C), e.hasSubgroups),
      bindings: [y, g, dx],
      params: [R, C],
      workgroups: rowGrid(R, rowThreads(C)),
    });
    return [dx];
  });
}
