/**
 * Helpers shared by the row-wise kernels (softmax, layer norm, RMS norm, cross-entropy): a thread per
 * narrow row, or a workgroup per wide row reduced across the workgroup ({@linkcode rowThreads}; the
 * reductions, by tree or by subgroups, are in workgroup_reduce.ts), and column sums of per-chunk
 * partials for the gradients of per-column weights (no float atomics).
 * @module
 */

import type { DType } from "../dtype.ts";
import { grid1d } from "../engine.ts";
import type { Tensor } from "../tensor.ts";
import { ROW_WG, subgroupArgsWgsl, subgroupInitWgsl } from "./workgroup_reduce.ts";

export { ROW_WG, subgroupArgsWgsl, subgroupInitWgsl, workgroupReduceWgsl } from "./workgroup_reduce.ts";

/** Rows per workgroup when each thread owns a whole row (rowThreads 1). */
const ROWS_PER_WG = 64;

/**
 * Threads per row for rows of C elements: 1 for C <= 256 (a thread owns a row, 64 rows per workgroup, no
 * barriers: CPU adapters pay a lot per workgroup and per barrier, and such rows are cheap anyway), else
 * about 8 elements per thread, 64 to {@linkcode ROW_WG} threads, reduced across the workgroup.
 */
export function rowThreads(C: number): number {
  if (C <= 256) return 1;
  let wg = 64;
  while (wg < ROW_WG && wg * 8 < C) wg *= 2;
  return wg;
}

/** `enable f16;` when any of `dtypes` is f16 (it must come first in the WGSL source). */
export function enableF16(...dtypes: DType[]): string {
  return dtypes.includes("f16") ? "enable f16;\n" : "";
}

/** Workgroup counts for `rows` rows of `wg` threads each (`wg` from {@linkcode rowThreads}). */
export function rowGrid(rows: number, wg: number): [number, number] {
  return grid1d(rows, wg === 1 ? ROWS_PER_WG : 1);
}

/** The last dimension C of `x` and the number of rows R = size / C; throws for a scalar. */
export function rowsOf(x: Tensor, op: string): { R: number; C: number } {
  if (x.shape.length === 0) throw new Error(`${op}: needs at least one dimension, got ${x}`);
  if (x.dtype !== "f32" && x.dtype !== "f16") throw new Error(`${op}: needs f32 or f16, got ${x}`);
  const C = x.shape[x.shape.length - 1];
  return { R: C === 0 ? 0 : x.size / C, C };
}

/**
 * The WGSL head of a row kernel (one workgroup of `wg` threads per row of a [R, C] tensor, launched on
 * {@linkcode rowGrid}; `wg` from {@linkcode rowThreads}): opens `main`, defines `lid`, `row` and `base`
 * (the row's first element) and returns past the last row. Needs a uniform `p` with fields `R` and `C`.
 * The row loops stride by `wg`; the row index is uniform across the workgroup, so the early return
 * keeps the reductions' barriers in uniform control flow. With `wg` 1 a workgroup holds 64 rows, one
 * per thread (`lid` is 0), and the reductions are the identity. With `subgroups` (for the subgroup
 * variant of `workgroupReduceWgsl`, wg > 1) it also takes the subgroup builtins.
 */
export function rowMainWgsl(wg: number, subgroups = false): string {
  if (wg === 1) {
    return `@compute @workgroup_size(${ROWS_PER_WG})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) li: u32) {
  let row = (wid.x + wid.y * nwg.x) * ${ROWS_PER_WG}u + li;
  if (row >= p.R) { return; }
  let lid = 0u;
  let base = row * p.C;`;
  }
  return `@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32${subgroupArgsWgsl(subgroups)}) {${
    subgroups ? "\n  " + subgroupInitWgsl(true) : ""
  }
  let row = wid.x + wid.y * nwg.x;
  if (row >= p.R) { return; }
  let base = row * p.C;`;
}

/** Throws unless the incoming gradient `g` has the size and dtype of the op's output `out`. */
export function checkGrad(g: Tensor, out: Tensor, op: string): void {
  if (g.size !== out.size || g.dtype !== out.dtype) {
    throw new Error(`${op} backward: gradient ${g} does not match the output ${out}`);
  }
}

/** Threads per workgroup of the column kernels (one thread per column, launched on {@linkcode columnGrid}). */
export const COL_WG = 64;

function columnSumCode(t: DType): string {
  return `${enableF16(t)}
@group(0) @binding(0) var<storage, read> partial: array<f32>;   // [P, C]
@group(0) @binding(1) var<storage, read_write> out: array<${t}>; // [C]
struct P { P: u32, C: u32 }
@group(0) @binding(2) var<uniform> p: P;
@compute @workgroup_size(${COL_WG})
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let c = gid.x;
  if (c >= p.C) { return; }
  var s = 0.0;
  for (var k = 0u; k < p.P; k++) { s += partial[k * p.C + c]; }
  out[c] = ${t}(s);
}`;
}

/**
 * How the rows of a column reduction are split: `chunks` partial sums (at most 256) of `rowsPer`
 * rows each, so the partial kernels have chunks x C threads and {@linkcode columnSum} loops `chunks`.
 */
export function rowChunks(R: number): { chunks: number; rowsPer: number } {
  const chunks = Math.max(1, Math.min(256, Math.ceil(R / 32)));
  return { chunks, rowsPer: Math.max(1, Math.ceil(R / chunks)) };
}

/** Workgroups of the column kernels: [ceil(C / 64), chunks]. */
export function columnGrid(C: number, chunks: number): [number, number] {
  const x = Math.max(1, Math.ceil(C / COL_WG));
  if (x > 65535) throw new Error(`column reduction: C = ${C} is over ${65535 * COL_WG} columns`);
  return [x, chunks];
}

/** Sums the rows of `partial` (f32 [P, C]) into a new [C] tensor of `dtype` (a weight gradient). */
export function columnSum(partial: Tensor, shape: readonly number[], dtype: DType): Tensor {
  const e = partial.engine;
  const [P, C] = partial.shape;
  const out = e.empty(shape, dtype);
  e.run({
    label: "column_sum",
    code: columnSumCode(dtype),
    bindings: [partial, out],
    params: [P, C],
    workgroups: columnGrid(C, 1),
  });
  return out;
}
