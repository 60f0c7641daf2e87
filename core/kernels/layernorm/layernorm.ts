/**
 * Layer norm over the last axis: one workgroup per row (two-pass mean and variance in f32), saving
 * the per-row mean and 1/std for backward. The weight and bias gradients are summed over rows
 * without float atomics: per-chunk column partials, then a column sum.
 * @module
 */

import { record } from "../../autograd.ts";
import { type DType, f32Bits } from "../../dtype.ts";
import type { Tensor } from "../../tensor.ts";
import {
  checkGrad,
  COL_WG,
  columnGrid,
  columnSum,
  enableF16,
  rowChunks,
  rowGrid,
  rowMainWgsl,
  rowsOf,
  rowThreads,
  workgroupReduceWgsl,
} from "../rowwise.ts";

function forwardCode(xt: DType, wt: DType, bt: DType | null, wg: number, sg: boolean): string {
  return `${enableF16(xt, wt, bt ?? wt)}
@group(0) @binding(0) var<storage, read> x: array<${xt}>;        // [R, C]
@group(0) @binding(1) var<storage, read> w: array<${wt}>;        // [C]
@group(0) @binding(2) var<storage, read_write> y: array<${xt}>;  // [R, C]
@group(0) @binding(3) var<storage, read_write> mean: array<f32>; // [R]
@group(0) @binding(4) var<storage, read_write> rstd: array<f32>; // [R]
${bt ? `@group(0) @binding(5) var<storage, read> b: array<${bt}>; // [C]` : ""}
struct P { R: u32, C: u32, eps: f32 }
@group(0) @binding(${bt ? 6 : 5}) var<uniform> p: P;
${workgroupReduceWgsl(wg, sg)}
${rowMainWgsl(wg, sg)}
  var s = 0.0;
  for (var c = lid; c < p.C; c += ${wg}u) { s += f32(x[base + c]); }
  let m = reduceSum(lid, s) / f32(p.C);
  var v = 0.0;
  for (var c = lid; c < p.C; c += ${wg}u) { let d = f32(x[base + c]) - m; v += d * d; }
  let rs = inverseSqrt(reduceSum(lid, v) / f32(p.C) + p.eps);
  if (lid == 0u) { mean[row] = m; rstd[row] = rs; }
  for (var c = lid; c < p.C; c += ${wg}u) {
    let yc = (f32(x[base + c]) - m) * rs * f32(w[c])${bt ? " + f32(b[c])" : ""};
    y[base + c] = ${xt}(yc);
  }
}`;
}

function backwardCode(xt: DType, wt: DType, wg: number, sg: boolean): string {
  return `${enableF16(xt, wt)}
@group(0) @binding(0) var<storage, read> x: array<${xt}>;        // [R, C]
@group(0) @binding(1) var<storage, read> w: array<${wt}>;        // [C]
@group(0) @binding(2) var<storage, read> g: array<${xt}>;        // [R, C]
@group(0) @binding(3) var<storage, read> mean: array<f32>;       // [R]
@group(0) @binding(4) var<storage, read> rstd: array<f32>;       // [R]
@group(0) @binding(5) var<storage, read_write> dx: array<${xt}>; // [R, C]
struct P { R: u32, C: u32 }
@group(0) @binding(6) var<uniform> p: P;
${workgroupReduceWgsl(wg, sg)}
${rowMainWgsl(wg, sg)}
  let m = mean[row];
  let rs = rstd[row];
  var a = 0.0;
  var b = 0.0;
  for (var c = lid; c < p.C; c += ${wg}u) {
    let dxhat = f32(g[base + c]) * f32(w[c]);
    a += dxhat;
    b += dxhat * (f32(x[base + c]) - m) * rs;
  }
  a = reduceSum(lid, a) / f32(p.C);
  b = reduceSum(lid, b) / f32(p.C);
  for (var c = lid; c < p.C; c += ${wg}u) {
    let xhat = (f32(x[base + c]) - m) * rs;
    dx[base + c] = ${xt}(rs * (f32(g[base + c]) * f32(w[c]) - a - xhat * b));
  }
}`;
}

// Column partials of the weight and bias gradients over chunk k of the rows:
// pw[k, c] = sum_r g[r, c] * xhat[r, c], pb[k, c] = sum_r g[r, c], r in [k * rowsPer, (k + 1) * rowsPer).
function partialsCode(xt: DType): string {
  return `${enableF16(xt)}
@group(0) @binding(0) var<storage, read> x: array<${xt}>;  // [R, C]
@group(0) @binding(1) var<storage, read> g: array<${xt}>;  // [R, C]
@group(0) @binding(2) var<storage, read> mean: array<f32>; // [R]
@group(0) @binding(3) var<storage, read> rstd: array<f32>; // [R]
@group(0) @binding(4) var<storage, read_write> pw: array<f32>; // [P, C]
@group(0) @binding(5) var<storage, read_write> pb: array<f32>; // [P, C]
struct P { R: u32, C: u32, rowsPer: u32 }
@group(0) @binding(6) var<uniform> p: P;
@compute @workgroup_size(${COL_WG})
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let c = gid.x;
  let k = gid.y;
  if (c >= p.C) { return; }
  var sw = 0.0;
  var sb = 0.0;
  for (var r = k * p.rowsPer; r < min((k + 1u) * p.rowsPer, p.R); r++) {
    let gc = f32(g[r * p.C + c]);
    sw += gc * (f32(x[r * p.C + c]) - mean[r]) * rstd[r];
    sb += gc;
  }
  pw[k * p.C + c] = sw;
  pb[k * p.C + c] = sb;
}`;
}

/**
 * Layer norm over the last axis: y = (x - mean) / sqrt(var + eps) * weight + bias, with the biased
 * variance, computed in f32. x: [..., C] (f32 or f16), weight and bias: [C] (f32 or f16, each its
 * own dtype; bias optional), returns y: [..., C] of x's dtype. Differentiable in x, weight and bias
 * (the weight and bias gradients are summed over all rows).
 */
export function layerNorm(x: Tensor, weight: Tensor, bias?: Tensor | null, eps = 1e-5): Tensor {
  const e = x.engine;
  const { R, C } = rowsOf(x, "layerNorm");
  for (const p of bias ? [weight, bias] : [weight]) {
    if (p.size !== C || (p.dtype !== "f32" && p.dtype !== "f16")) {
      throw new Error(`layerNorm: weight and bias must be float [${C}] for ${x}, got ${p}`);
    }
  }
  const y = e.empty(x.shape, x.dtype);
  const mean = e.empty([R]), rstd = e.empty([R]);
  e.run({
    label: "layernorm",
    code: forwardCode(x.dtype, weight.dtype, bias?.dtype ?? null, rowThreads(C), e.hasSubgroups),
    bindings: bias ? [x, weight, y, mean, rstd, bias] : [x, weight, y, mean, rstd],
    params: [R, C, f32Bits(eps)],
    workgroups: rowGrid(R, rowThreads(C)),
  });
  const inputs = bias ? [x, weight, bias] : [x, weight];
  record(y, inputs, (g, needs) => {
    checkGrad(g, y, "layerNorm");
    let dx: Tensor | null = null, dw: Tensor | null = null, db: Tensor | null = null;
    if (needs[0]) {
      dx = e.empty(x.shape, x.dtype);
      e.run({
        label: "layernorm_backward",
        code: backwardCode(x.dtype, weight.dtype, rowThreads(C), e.hasSubgroups),
        bindings: [x, weight, g, mean, rstd, dx],
        params: [R, C],
        workgroups: rowGrid(R, rowThreads(C)),
      });
    }
    if (needs[1] || needs[2]) {
      const { chunks, rowsPer } = rowChunks(R);
      const pw = e.empty([chunks, C]), pb = e.empty([chunks, C]);
      e.run({
        label: "layernorm_backward_partials",
        code: partialsCode(x.dtype),
        bindings: [x, g, mean, rstd, pw, pb],
        params: [R, C, rowsPer],
        workgroups: columnGrid(C, chunks),
      });
      if (needs[1]) dw = columnSum(pw, weight.shape, weight.dtype);
      if (needs[2]) db = columnSum(pb, bias!.shape, bias!.dtype);
      pw.dispose();
      pb.dispose();
    }
    return bias ? [dx, dw, db] : [dx, dw];
  });
  // Without a tape entry nothing reads the saved statistics again (later work is ordered after the kernel).
  if (!y.requiresGrad) {
    mean.dispose();
    rstd.dispose();
  }
  return y;
}
