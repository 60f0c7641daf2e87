/**
 * Differentiable row and axis ops: concat and slice along any axis, gather of rows (x[idx]) and
 * scatter of rows (a copy of a base with some rows replaced: how image features are spliced into a
 * text sequence).
 *
 * Any dtype can be moved (f32, f16, i32, u32); only f32/f16 inputs take part in autograd.
 * Row indices are i32; an index outside [0, N) is never used to address memory: gather gives a zero
 * row for it and scatter skips it.
 * @module
 */

import { record } from "../../autograd.ts";
import type { DType } from "../../dtype.ts";
import { grid1d } from "../../engine.ts";
import type { Tensor } from "../../tensor.ts";
import { embeddingBackward, embeddingForward } from "../embedding/embedding.ts";

const WG = 256;

/** outer = product of the dims before `axis`, inner = product of the dims after it. */
function aroundAxis(shape: readonly number[], axis: number): { outer: number; inner: number } {
  const outer = shape.slice(0, axis).reduce((a, b) => a * b, 1);
  const inner = shape.slice(axis + 1).reduce((a, b) => a * b, 1);
  return { outer, inner };
}

function header(dtype: DType): string {
  return dtype === "f16" ? "enable f16;\n" : "";
}

/** dst[o * dstStride + dstOff + j] = src[o * srcStride + srcOff + j] for o < outer, j < width. */
function copyBlockCode(dtype: DType): string {
  return `${header(dtype)}
@group(0) @binding(0) var<storage, read> src: array<${dtype}>;
@group(0) @binding(1) var<storage, read_write> dst: array<${dtype}>;
struct P { n: u32, width: u32, srcStride: u32, srcOff: u32, dstStride: u32, dstOff: u32 }  // n = outer * width
@group(0) @binding(2) var<uniform> p: P;
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * ${WG}u;
  if (i >= p.n) { return; }
  let o = i / p.width;
  let j = i % p.width;
  dst[o * p.dstStride + p.dstOff + j] = src[o * p.srcStride + p.srcOff + j];
}`;
}

/** out[idx[m], c] = src[m, c] (or 0 when `zero`), skipping out-of-range idx[m]. */
function writeRowsCode(dtype: DType, zero: boolean): string {
  return `${header(dtype)}
@group(0) @binding(0) var<storage, read_write> out: array<${dtype}>; // [N, C]
@group(0) @binding(1) var<storage, read> idx: array<i32>;           // [M]
${zero ? "" : `@group(0) @binding(2) var<storage, read> src: array<${dtype}>;   // [M, C]`}
struct P { n: u32, c: u32, rows: u32 }  // n = M * C, rows = N
@group(0) @binding(${zero ? 2 : 3}) var<uniform> p: P;
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * ${WG}u;
  if (i >= p.n) { return; }
  let row = idx[i / p.c];
  if (row < 0 || u32(row) >= p.rows) { return; }
  out[u32(row) * p.c + i % p.c] = ${zero ? `${dtype}(0)` : "src[i]"};
}`;
}

/** dst[dstOffset + i] = src[srcOffset + i] for i < n, without autograd (one dtype; any offsets). */
export function copyElements(
  src: Tensor,
  srcOffset: number,
  dst: Tensor,
  dstOffset: number,
  n: number,
): void {
  if (src.dtype !== dst.dtype || srcOffset + n > src.size || dstOffset + n > dst.size) {
    throw new Error(`copyElements: ${n} elements from ${src} at ${srcOffset} into ${dst} at ${dstOffset}`);
  }
  copyBlocks(src, dst, 1, n, { stride: n, offset: srcOffset }, { stride: n, offset: dstOffset });
}

/** Copies `outer` blocks of `width` elements from src (block stride, offset) into dst (stride, offset). */
function copyBlocks(
  src: Tensor,
  dst: Tensor,
  outer: number,
  width: number,
  from: { stride: number; offset: number },
  to: { stride: number; offset: number },
): void {
  const n = outer * width;
  if (n === 0) return;
  src.engine.run({
    label: "rows_copy_blocks",
    code: copyBlockCode(src.dtype),
    bindings: [src, dst],
    params: [n, width, from.stride, from.offset, to.stride, to.offset],
    workgroups: grid1d(n, WG),
  });
}

function normAxis(axis: number, rank: number, op: string): number {
  const a = axis < 0 ? axis + rank : axis;
  if (!Number.isInteger(a) || a < 0 || a >= rank) {
    throw new Error(`${op}: axis ${axis} out of range for rank ${rank}`);
  }
  return a;
}

/** `x` [..., S, ...] without autograd: the part start <= i < end along `axis` (>= 0). */
function sliceForward(x: Tensor, axis: number, start: number, end: number): Tensor {
  const { outer, inner } = aroundAxis(x.shape, axis);
  const out = x.engine.empty(x.shape.map((d, i) => (i === axis ? end - start : d)), x.dtype);
  const width = (end - start) * inner;
  copyBlocks(x, out, outer, width, { stride: x.shape[axis] * inner, offset: start * inner }, {
    stride: width,
    offset: 0,
  });
  return out;
}

/**
 * Concatenation along `axis` (negative counts from the end): tensors of one dtype and rank whose
 * shapes agree except along `axis`. E.g. [B, T1, C] and [B, T2, C] on axis 1 -> [B, T1 + T2, C].
 * Backward: the gradient cut back into the pieces.
 */
export function concat(tensors: Tensor[], axis: number): Tensor {
  if (tensors.length === 0) throw new Error("concat: no tensors");
  const first = tensors[0];
  const a = normAxis(axis, first.shape.length, "concat");
  for (const t of tensors) {
    const same = t.dtype === first.dtype && t.shape.length === first.shape.length &&
      t.shape.every((d, i) => i === a || d === first.shape[i]);
    if (!same) throw new Error(`concat on axis ${a}: ${t} does not fit ${first}`);
  }
  const total = tensors.reduce((s, t) => s + t.shape[a], 0);
  const shape = first.shape.map((d, i) => (i === a ? total : d));
  const { outer, inner } = aroundAxis(shape, a);
  const out = first.engine.empty(shape, first.dtype);
  const starts: number[] = []; // where along the axis each input starts
  let at = 0;
  for (const t of tensors) {
    const width = t.shape[a] * inner;
    copyBlocks(t, out, outer, width, { stride: width, offset: 0 }, {
      stride: total * inner,
      offset: at * inner,
    });
    starts.push(at);
    at += t.shape[a];
  }
  return record(
    out,
    tensors,
    (g, needs) =>
      tensors.map((t, i) => (needs[i] ? sliceForward(g, a, starts[i], starts[i] + t.shape[a]) : null)),
  );
}

/**
 * The part of `x` with index start <= i < end along `axis` (negative axis counts from the end),
 * e.g. [B, T, C] on axis 1 -> [B, end - start, C]. Backward: the gradient placed into zeros of x's shape.
 */
export function slice(x: Tensor, axis: number, start: number, end: number): Tensor {
  const a = normAxis(axis, x.shape.length, "slice");
  if (
    !(Number.isInteger(start) && Number.isInteger(end) && 0 <= start && start <= end && end <= x.shape[a])
  ) {
    throw new Error(`slice: range ${start}..${end} out of bounds for axis ${a} of ${x}`);
  }
  const out = sliceForward(x, a, start, end);
  return record(out, [x], (g) => {
    const { outer, inner } = aroundAxis(x.shape, a);
    const dx = x.engine.zeros(x.shape, g.dtype);
    const width = (end - start) * inner;
    copyBlocks(g, dx, outer, width, { stride: width, offset: 0 }, {
      stride: x.shape[a] * inner,
      offset: start * inner,
    });
    return [dx];
  });
}

function checkRows(x: Tensor, idx: Tensor, op: string): void {
  if (x.shape.length !== 2) throw new Error(`${op}: expected a [N, C] tensor, got ${x}`);
  if (idx.dtype !== "i32" || idx.shape.length !== 1) {
    throw new Error(`${op}: idx must be i32 [M], got ${idx}`);
  }
}

/**
 * Rows of x: x [N, C], idx i32 [M] -> [M, C] with out[m] = x[idx[m]] (a zero row where idx[m] is out
 * of range). Duplicates are allowed; the backward scatter-adds into [N, C] (see `embeddingBackward`).
 */
export function gatherRows(x: Tensor, idx: Tensor): Tensor {
  checkRows(x, idx, "gatherRows");
  const out = embeddingForward(x, idx);
  return record(out, [x, idx], (g, needs) => [needs[0] ? embeddingBackward(g, idx, x.shape[0]) : null, null]);
}

/**
 * A copy of base [N, C] with row idx[m] replaced by src[m] for each m: idx i32 [M] (unique; with
 * duplicates which src row lands is undefined; out-of-range entries are skipped), src [M, C].
 * Backward: dbase = g with the replaced rows zeroed, dsrc = the rows of g at idx.
 */
export function scatterRows(base: Tensor, idx: Tensor, src: Tensor): Tensor {
  checkRows(base, idx, "scatterRows");
  const [N, C] = base.shape;
  const M = idx.shape[0];
  if (src.dtype !== base.dtype || src.shape.length !== 2 || src.shape[0] !== M || src.shape[1] !== C) {
    throw new Error(
      `scatterRows: src ${src} must be ${base.dtype}[${M},${C}] for base ${base} and idx ${idx}`,
    );
  }
  const e = base.engine;
  const writeRows = (out: Tensor, rows: Tensor | null) => {
    if (M * C === 0) return;
    e.run({
      label: "rows_write",
      code: writeRowsCode(out.dtype, rows === null),
      bindings: rows ? [out, idx, rows] : [out, idx],
      params: [M * C, C, N],
      workgroups: grid1d(M * C, WG),
    });
  };
  const out = e.empty(base.shape, base.dtype);
  e.copy(base, out);
  writeRows(out, src);
  return record(out, [base, idx, src], (g, needs) => {
    let dbase: Tensor | null = null;
    if (needs[0]) {
      dbase = e.empty(base.shape, g.dtype);
      e.copy(g, dbase);
      writeRows(dbase, null);
    }
    return [dbase, null, needs[2] ? embeddingForward(g, idx) : null];
  });
}
