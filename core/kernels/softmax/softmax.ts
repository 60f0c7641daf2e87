/**
 * Softmax over the last axis, one workgroup per row with tree reductions. Also exports the WGSL
 * row-reduction helpers and the row grid that the other row-wise kernels (layer norm, RMS norm,
 * cross-entropy) share.
 * @module
 */

import { record } from "../../autograd.ts";
import type { DType } from "../../dtype.ts";
import { grid1d } from "../../engine.ts";
import type { Tensor } from "../../tensor.ts";

/** Threads per workgroup of the row-wise kernels (a power of two). */
export const ROW_WG = 256;

/** `enable f16;` when any of `dtypes` is f16 (it must come first in the WGSL source). */
export function enableF16(...dtypes: DType[]): string {
  return dtypes.includes("f16") ? "enable f16;\n" : "";
}

/**
 * WGSL of workgroup tree reductions over {@linkcode ROW_WG} threads: `reduceSum(lid, v)` and
 * `reduceMax(lid, v)` return the reduction of every thread's `v` to every thread. Call them from
 * uniform control flow (they hold barriers).
 */
export function workgroupReduceWgsl(): string {
  const reduce = (name: string, op: string) => `
fn ${name}(lid: u32, v: f32) -> f32 {
  red[lid] = v;
  workgroupBarrier();
  for (var s = ${ROW_WG / 2}u; s > 0u; s = s >> 1u) {
    if (lid < s) { red[lid] = ${op}; }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}`;
  return `var<workgroup> red: array<f32, ${ROW_WG}>;` +
    reduce("reduceSum", "red[lid] + red[lid + s]") + reduce("reduceMax", "max(red[lid], red[lid + s])");
}

/** Workgroup counts for one workgroup per row; kernels index `row = wid.x + wid.y * nwg.x`. */
export function rowGrid(rows: number): [number, number] {
  return grid1d(rows, 1);
}

/** The last dimension C of `x` and the number of rows R = size / C; throws for a scalar. */
export function rowsOf(x: Tensor, op: string): { R: number; C: number } {
  if (x.shape.length === 0) throw new Error(`${op}: needs at least one dimension, got ${x}`);
  if (x.dtype !== "f32" && x.dtype !== "f16") throw new Error(`${op}: needs f32 or f16, got ${x}`);
  const C = x.shape[x.shape.length - 1];
  return { R: C === 0 ? 0 : x.size / C, C };
}

/**
 * The WGSL head of a row kernel (one workgroup of {@linkcode ROW_WG} threads per row of a [R, C]
 * tensor, launched on {@linkcode rowGrid}): opens `main`, defines `lid`, `row` and `base` (the row's
 * first element) and returns past the last row. Needs a uniform `p` with fields `R` and `C`.
 */
export const ROW_MAIN_WGSL = `@compute @workgroup_size(${ROW_WG})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= p.R) { return; }
  let base = row * p.C;`;

function forwardCode(t: DType): string {
  return `${enableF16(t)}
@group(0) @binding(0) var<storage, read> x: array<${t}>;       // [R, C]
@group(0) @binding(1) var<storage, read_write> y: array<${t}>; // [R, C]
struct P { R: u32, C: u32 }
@group(0) @binding(2) var<uniform> p: P;
${workgroupReduceWgsl()}
${ROW_MAIN_WGSL}
  var m = -3.0e38;
  for (var c = lid; c < p.C; c += ${ROW_WG}u) { m = max(m, f32(x[base + c])); }
  m = reduceMax(lid, m);
  var s = 0.0;
  for (var c = lid; c < p.C; c += ${ROW_WG}u) { s += exp(f32(x[base + c]) - m); }
  let inv = 1.0 / reduceSum(lid, s);
  for (var c = lid; c < p.C; c += ${ROW_WG}u) { y[base + c] = ${t}(exp(f32(x[base + c]) - m) * inv); }
}`;
}

function backwardCode(t: DType): string {
  return `${enableF16(t)}
@group(0) @binding(0) var<storage, read> y: array<${t}>;        // [R, C]
@group(0) @binding(1) var<storage, read> g: array<${t}>;        // [R, C]
@group(0) @binding(2) var<storage, read_write> dx: array<${t}>; // [R, C]
struct P { R: u32, C: u32 }
@group(0) @binding(3) var<uniform> p: P;
${workgroupReduceWgsl()}
${ROW_MAIN_WGSL}
  var d = 0.0;
  for (var c = lid; c < p.C; c += ${ROW_WG}u) { d += f32(g[base + c]) * f32(y[base + c]); }
  d = reduceSum(lid, d);
  for (var c = lid; c < p.C; c += ${ROW_WG}u) {
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
    code: forwardCode(x.dtype),
    bindings: [x, y],
    params: [R, C],
    workgroups: rowGrid(R),
  });
  return record(y, [x], (g) => {
    checkGrad(g, y, "softmax");
    const dx = e.empty(x.shape, x.dtype);
    e.run({
      label: "softmax_backward",
      code: backwardCode(x.dtype),
      bindings: [y, g, dx],
      params: [R, C],
      workgroups: rowGrid(R),
    });
    return [dx];
  });
}

/** Throws unless the incoming gradient `g` has the size and dtype of the op's output `out`. */
export function checkGrad(g: Tensor, out: Tensor, op: string): void {
  if (g.size !== out.size || g.dtype !== out.dtype) {
    throw new Error(`${op} backward: gradient ${g} does not match the output ${out}`);
  }
}
