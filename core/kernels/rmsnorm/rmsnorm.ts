/**
 * RMS norm (LLaMA style) over the last axis: one workgroup per row, the mean of squares in f32,
 * saving the per-row 1/rms for backward. The weight gradient is summed over rows without float
 * atomics (per-chunk column partials, then a column sum).
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

function forwardCode(xt: DType, wt: DType, wg: number, sg: boolean): string {
  return `${enableF16(xt, wt)}
@group(0) @binding(0) var<storage, read> x: array<${xt}>;        // [R, C]
@group(0) @binding(1) var<storage, read> w: array<${wt}>;        // [C]
@group(0) @binding(2) var<storage, read_write> y: array<${xt}>;  // [R, C]
@group(0) @binding(3) var<storage, read_write> rrms: array<f32>; // [R]
struct P { R: u32, C: u32, eps: f32 }
@group(0) @binding(4) var<uniform> p: P;
${workgroupReduceWgsl(wg, sg)}
${rowMainWgsl(wg, sg)}
  var ss = 0.0;
  for (var c = lid; c < p.C; c += ${wg}u) { let v = f32(x[base + c]); ss += v * v; }
  let s = inverseSqrt(reduceSum(lid, ss) / f32(p.C) + p.eps);
  if (lid == 0u) { rrms[row] = s; }
  for (var c = lid; c < p.C; c += ${wg}u) { y[base + c] = ${xt}(f32(x[base + c]) * s * f32(w[c])); }
}`;
}

function backwardCode(xt: DType, wt: DType, wg: number, sg: boolean): string {
  return `${enableF16(xt, wt)}
@group(0) @binding(0) var<storage, read> x: array<${xt}>;        // [R, C]
@group(0) @binding(1) var<storage, read> w: array<${wt}>;        // [C]
@group(0) @binding(2) var<storage, read> g: array<${xt}>;        // [R, C]
@group(0) @binding(3) var<storage, read> rrms: array<f32>;       // [R]
@group(0) @binding(4) var<storage, read_write> dx: array<${xt}>; // [R, C]
struct P { R: u32, C: u32 }
@group(0) @binding(5) var<uniform> p: P;
${workgroupReduceWgsl(wg, sg)}
${rowMainWgsl(wg, sg)}
  let s = rrms[row];
  var d = 0.0;
  for (var c = lid; c < p.C; c += ${wg}u) { d += f32(g[base + c]) * f32(w[c]) * f32(x[base + c]); }
  d = reduceSum(lid, d) / f32(p.C);
  for (var c = lid; c < p.C; c += ${wg}u) {
    let xc = f32(x[base + c]);
    dx[base + c] = ${xt}(s * (f32(g[base + c]) * f32(w[c]) - xc * s * s * d));
  }
}`;
}

// Column partials of the weight gradient over chunk k of the rows:
// pw[k, c] = sum_r g[r, c] * x[r, c] * rrms[r], r in [k * rowsPer, (k + 1) * rowsPer).
function partialsCode(xt: DType): string {
  return `${enableF16(xt)}
@group(0) @binding(0) var<storage, read> x: array<${xt}>;      // [R, C]
@group(0) @binding(1) var<storage, read> g: array<${xt}>;      // [R, C]
@group(0) @binding(2) var<storage, read> rrms: array<f32>;     // [R]
@group(0) @binding(3) var<storage, read_write> pw: array<f32>; // [P, C]
struct P { R: u32, C: u32, rowsPer: u32 }
@group(0) @binding(4) var<uniform> p: P;
@compute @workgroup_size(${COL_WG})
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let c = gid.x;
  let k = gid.y;
  if (c >= p.C) { return; }
  var sw = 0.0;
  for (var r = k * p.rowsPer; r < min((k + 1u) * p.rowsPer, p.R); r++) {
    sw += f32(g[r * p.C + c]) * f32(x[r * p.C + c]) * rrms[r];
  }
  pw[k * p.C + c] = sw;
}`;
}

/**
 * RMS norm over the last axis (LLaMA): y = x / sqrt(mean(x^2) + eps) * weight, the mean of squares
 * in f32. x: [..., C] (f32 or f16), weight: [C] (f32 or f16, its own dtype), returns y: [..., C] of
 * x's dtype. Differentiable in x and weight (the weight gradient is summed over all rows).
 */
export function rmsNorm(x: Tensor, weight: Tensor, eps = 1e-6): Tensor {
  const e = x.engine;
  const { R, C } = rowsOf(x, "rmsNorm");
  if (weight.size !== C || (weight.dtype !== "f32" && weight.dtype !== "f16")) {
    throw new Error(`rmsNorm: weight must be float [${C}] for ${x}, got ${weight}`);
  }
  const y = e.empty(x.shape, x.dtype);
  const rrms = e.empty([R]);
  e.run({
    label: "rmsnorm",
    code: forwardCode(x.dtype, weight.dtype, rowThreads(C), e.hasSubgroups),
    bindings: [x, weight, y, rrms],
    params: [R, C, f32Bits(eps)],
    workgroups: rowGrid(R, rowThreads(C)),
  });
  record(y, [x, weight], (g, needs) => {
    checkGrad(g, y, "rmsNorm");
    let dx: Tensor | null = null, dw: Tensor | null = null;
    if (needs[0]) {
      dx = e.empty(x.shape, x.dtype);
      e.run({
        label: "rmsnorm_backward",
        code: backwardCode(x.dtype, weight.dtype, rowThreads(C), e.hasSubgroups),
        bindings: [x, weight, g, rrms, dx],
        params: [R, C],
        workgroups: rowGrid(R, rowThreads(C)),
      });
    }
    if (needs[1]) {
      const { chunks, rowsPer } = rowChunks(R);
      const pw = e.empty([chunks, C]);
      e.run({
        label: "rmsnorm_backward_partials",
        code: partialsCode(x.dtype),
        bindings: [x, g, rrms, pw],
        params: [R, C, rowsPer],
        workgroups: columnGrid(C, chunks),
      });
      dw = columnSum(pw, weight.shape, weight.dtype);
      pw.dispose();
    }
    return [dx, dw];
  });
  // Without a tape entry nothing reads the saved 1/rms again (later work is ordered after the kernel).
  if (!y.requiresGrad) rrms.dispose();
  return y;
}
