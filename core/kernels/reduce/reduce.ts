/**
 * Reductions on the GPU: `sum` and `mean` over all elements or one axis, `sumTo` (sums a broadcast
 * result back to an input's shape, the backward of broadcasting ops) and its adjoint `broadcastTo`.
 *
 * One kernel does every reduction: the input is seen as O outputs times R reduced elements (both may be
 * strided, several dims each); a workgroup of 256 threads sums a chunk of 1024 of one output's elements
 * in f32 and combines them across the workgroup (a tree in workgroup memory, or subgroup operations
 * where the device has them: workgroup_reduce.ts). When R exceeds a chunk, the partial sums
 * ([O, parts], f32) are reduced again by the same kernel until one remains, so millions of elements sum
 * in parallel and accurately (pairwise, not one serial loop).
 * @module
 */

import { record, reshape } from "../../autograd.ts";
import { grid1d } from "../../engine.ts";
import { type DType, f32Bits, isFloat } from "../../dtype.ts";
import type { Tensor } from "../../tensor.ts";
import { subgroupArgsWgsl, subgroupInitWgsl, workgroupReduceWgsl } from "../workgroup_reduce.ts";
import { checkBroadcastable, contiguousStrides, reduceShapes, shapeSize } from "./reduce_cpu.ts";

const WG = 256;
/** Elements one workgroup sums per pass (4 per thread). */
const CHUNK = 4 * WG;

/**
 * Sum of `x` over `axis` (one dim, negative counts from the end) or over all elements (default, giving a
 * scalar of shape []); `keepDims` keeps the reduced dim as size 1. f32 accumulation, result in x's dtype.
 * Differentiable.
 */
export function sum(x: Tensor, axis: number | "all" = "all", keepDims = false): Tensor {
  return reduceOp("sum", x, axis, keepDims);
}

/**
 * Mean of `x` over `axis` or all elements (default), like {@linkcode sum} divided by the number of
 * elements summed. Differentiable.
 */
export function mean(x: Tensor, axis: number | "all" = "all", keepDims = false): Tensor {
  return reduceOp("mean", x, axis, keepDims);
}

/**
 * `x` summed down to `shape`, a shape that broadcasts to x's (trailing dims aligned; e.g. [B,T,C] to [C],
 * [B,T,1], [B,1,C] or []): the gradient of an input that a broadcasting op repeated. When nothing is
 * summed (same number of elements) it returns a view of `x`. Differentiable (backward: broadcastTo).
 */
export function sumTo(x: Tensor, shape: readonly number[]): Tensor {
  checkFloat(x, "sumTo");
  checkBroadcastable(shape, x.shape, "sumTo");
  if (shapeSize(shape) === x.size) return reshape(x, shape);
  const keepShape = [...x.shape.slice(0, x.shape.length - shape.length).map(() => 1), ...shape];
  const out = reduceKernel(x, keepShape, shape, 1);
  return record(out, [x], (g) => [expandKernel(g, x.shape, 1)]);
}

/**
 * `x` repeated along dims of size 1 (and new leading dims) to `shape`, as a new contiguous tensor
 * (e.g. [C] to [B,T,C]). Differentiable (backward: sumTo).
 */
export function broadcastTo(x: Tensor, shape: readonly number[]): Tensor {
  checkFloat(x, "broadcastTo");
  checkBroadcastable(x.shape, shape, "broadcastTo");
  const out = expandKernel(x, shape, 1);
  return record(out, [x], (g) => [sumTo(g, x.shape)]);
}

function reduceOp(kind: "sum" | "mean", x: Tensor, axis: number | "all", keepDims: boolean): Tensor {
  checkFloat(x, kind);
  const { keepShape, outShape, count } = reduceShapes(x.shape, axis, keepDims);
  const scale = kind === "mean" ? 1 / count : 1;
  const out = reduceKernel(x, keepShape, outShape, scale);
  return record(out, [x], (g) => [expandKernel(g.view(keepShape), x.shape, scale)]);
}

function checkFloat(x: Tensor, label: string): void {
  if (!isFloat(x.dtype)) throw new Error(`${label}: ${x} is not f32 or f16`);
}

// ------------------------------------------------------------------ strided indexing (shared helpers)

/** Dims and, per operand, the stride of each dim: maps a flat index to one offset per operand. */
export interface Layout {
  /** Sizes of the dims, outermost first. */
  dims: number[];
  /** strides[j][k]: operand j's stride along dim k (0 where it is broadcast). */
  strides: number[][];
}

/**
 * The strides of a contiguous tensor of `inShape` broadcast to `outShape` (trailing dims aligned): its
 * row-major stride, or 0 along the dims it repeats.
 */
export function broadcastStrides(inShape: readonly number[], outShape: readonly number[]): number[] {
  const pad = outShape.length - inShape.length;
  const s = contiguousStrides(inShape);
  return outShape.map((_, k) => (k < pad || inShape[k - pad] === 1 ? 0 : s[k - pad]));
}

/**
 * Simplifies a layout without changing its flat index -> offsets map: drops dims of size 1 and merges
 * each dim into the one before it when every operand steps through both as through one dim.
 */
export function collapseLayout(layout: Layout): Layout {
  const dims: number[] = [];
  const strides: number[][] = layout.strides.map(() => []);
  layout.dims.forEach((d, k) => {
    if (d === 1) return;
    const last = dims.length - 1;
    if (last >= 0 && layout.strides.every((s, j) => strides[j][last] === s[k] * d)) {
      dims[last] *= d;
      layout.strides.forEach((s, j) => (strides[j][last] = s[k]));
    } else {
      dims.push(d);
      layout.strides.forEach((s, j) => strides[j].push(s[k]));
    }
  });
  return { dims, strides };
}

/**
 * WGSL for a layout of `nd` dims whose sizes and strides come from the params struct `p`: `fields` to
 * put in the struct (names prefixed by `tag`), and `code` that declares `var <operand> = <offset>;` for
 * each operand from the flat index expression `index`. Pass the values with {@linkcode layoutParams}.
 */
export function layoutCode(
  tag: string,
  nd: number,
  operands: readonly string[],
  index: string,
): { fields: string; code: string } {
  const fields: string[] = [];
  for (let k = 0; k < nd; k++) {
    fields.push(`${tag}d${k}: u32,`, ...operands.map((o) => `${tag}${o}${k}: u32,`));
  }
  const lines = operands.map((o) => `var ${o} = 0u;`);
  if (nd > 0) {
    lines.push(`var ${tag}r = ${index};`);
    for (let k = nd - 1; k >= 1; k--) {
      lines.push(`let ${tag}c${k} = ${tag}r % p.${tag}d${k}; ${tag}r = ${tag}r / p.${tag}d${k};`);
      lines.push(...operands.map((o) => `${o} += ${tag}c${k} * p.${tag}${o}${k};`));
    }
    lines.push(...operands.map((o) => `${o} += ${tag}r * p.${tag}${o}0;`));
  }
  return { fields: fields.join(" "), code: lines.join("\n  ") };
}

/** The param words of a layout, in the order of {@linkcode layoutCode}'s fields. */
export function layoutParams(layout: Layout): number[] {
  return layout.dims.flatMap((d, k) => [d, ...layout.strides.map((s) => s[k])]);
}

// ------------------------------------------------------------------ kernels

/**
 * Sums x (any shape) over the dims where keepShape (same rank) is 1, times `scale`; returns a new tensor
 * of `outShape` (keepShape's size) in x's dtype. Not recorded.
 */
function reduceKernel(
  x: Tensor,
  keepShape: readonly number[],
  outShape: readonly number[],
  scale: number,
): Tensor {
  const e = x.engine;
  const strides = contiguousStrides(x.shape);
  const axes = x.shape.map((_, k) => k);
  const keptAxes = axes.filter((k) => keepShape[k] !== 1);
  const redAxes = axes.filter((k) => keepShape[k] === 1);
  const numOut = shapeSize(keepShape); // O
  let kept = collapseLayout({
    dims: keptAxes.map((k) => x.shape[k]),
    strides: [keptAxes.map((k) => strides[k])],
  });
  let red = collapseLayout({
    dims: redAxes.map((k) => x.shape[k]),
    strides: [redAxes.map((k) => strides[k])],
  });
  let count = shapeSize(red.dims); // R
  if (numOut === 0) return e.empty(outShape, x.dtype);
  let src = x;
  for (;;) {
    const parts = Math.max(1, Math.ceil(count / CHUNK));
    const last = parts === 1;
    const out = last ? e.empty(outShape, x.dtype) : e.empty([numOut, parts], "f32");
    e.run({
      label: "reduce",
      code: reduceCode(src.dtype, out.dtype, kept.dims.length, red.dims.length, e.hasSubgroups),
      bindings: [src, out],
      params: [
        numOut * parts,
        parts,
        count,
        f32Bits(last ? scale : 1),
        ...layoutParams(kept),
        ...layoutParams(red),
      ],
      workgroups: grid1d(numOut * parts, 1),
    });
    if (src !== x) src.dispose();
    if (last) return out;
    // Next pass: the partial sums [O, parts], one output per row.
    src = out;
    kept = collapseLayout({ dims: [numOut], strides: [[parts]] });
    red = { dims: [parts], strides: [[1]] };
    count = parts;
  }
}

function reduceCode(inType: DType, outType: DType, nk: number, nr: number, sg: boolean): string {
  const keptIdx = layoutCode("k", nk, ["base"], "o");
  const redIdx = layoutCode("r", nr, ["off"], "j");
  return `${inType === "f16" || outType === "f16" ? "enable f16;" : ""}
@group(0) @binding(0) var<storage, read> x: array<${inType}>;
@group(0) @binding(1) var<storage, read_write> out: array<${outType}>; // [O, parts]
struct P { groups: u32, parts: u32, count: u32, scale: f32, ${keptIdx.fields} ${redIdx.fields} }
@group(0) @binding(2) var<uniform> p: P;
${workgroupReduceWgsl(WG, sg)}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32${subgroupArgsWgsl(sg)}) {
  ${subgroupInitWgsl(sg)}
  let g = wid.x + wid.y * nwg.x; // one workgroup per (output o, chunk of its elements)
  if (g >= p.groups) { return; }
  let o = g / p.parts;
  let start = (g % p.parts) * ${CHUNK}u;
  let end = min(start + ${CHUNK}u, p.count);
  ${keptIdx.code}
  var s = 0.0;
  for (var j = start + lid; j < end; j += ${WG}u) {
    ${redIdx.code}
    s += f32(x[base + off]);
  }
  s = reduceSum(lid, s);
  if (lid == 0u) { out[g] = ${outType}(s * p.scale); }
}`;
}

/** x broadcast to `shape`, times `scale`, as a new tensor in x's dtype. Not recorded. */
function expandKernel(x: Tensor, shape: readonly number[], scale: number): Tensor {
  const e = x.engine;
  const out = e.empty(shape, x.dtype);
  if (out.size === 0) return out;
  const layout = collapseLayout({ dims: [...shape], strides: [broadcastStrides(x.shape, shape)] });
  e.run({
    label: "broadcast",
    code: expandCode(x.dtype, layout.dims.length),
    bindings: [x, out],
    params: [out.size, f32Bits(scale), ...layoutParams(layout)],
    workgroups: grid1d(out.size, WG),
  });
  return out;
}

function expandCode(dtype: DType, nd: number): string {
  const idx = layoutCode("b", nd, ["src"], "i");
  return `${dtype === "f16" ? "enable f16;" : ""}
@group(0) @binding(0) var<storage, read> x: array<${dtype}>;
@group(0) @binding(1) var<storage, read_write> out: array<${dtype}>;
struct P { n: u32, scale: f32, ${idx.fields} }
@group(0) @binding(2) var<uniform> p: P;
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * ${WG}u;
  if (i >= p.n) { return; }
  ${idx.code}
  out[i] = ${dtype}(f32(x[src]) * p.scale);
}`;
}
