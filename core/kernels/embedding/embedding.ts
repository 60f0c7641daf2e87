/**
 * Embedding lookup (a gather of rows) and its backward, a scatter-add of rows done without float
 * atomics: a counting sort groups the positions by id on the GPU, then each (row, column) of the
 * weight gradient sums its own positions in ascending order (the same result on every run).
 *
 * Shapes: weight [V, C] (f32 or f16), ids i32 [N] (any shape, flattened), out [N, C] of weight's dtype.
 * Ids outside [0, V) are never used to index: the forward writes a zero row for them and the
 * backward skips them, so they get no gradient.
 * @module
 */

import { record } from "../../autograd.ts";
import { type DType, isFloat } from "../../dtype.ts";
import { grid1d } from "../../engine.ts";
import type { Tensor } from "../../tensor.ts";
import { SplitTensor } from "../../split_tensor.ts";
import { add } from "../elementwise/elementwise.ts";

const WG = 256;

function header(dtype: DType): string {
  return dtype === "f16" ? "enable f16;\n" : "";
}

/** out[n, c] = weight[ids[n] - off, c], zero where that row is out of range. */
function gatherCode(dtype: DType): string {
  return `${header(dtype)}
@group(0) @binding(0) var<storage, read> weight: array<${dtype}>;   // [V, C]
@group(0) @binding(1) var<storage, read> ids: array<i32>;           // [N]
@group(0) @binding(2) var<storage, read_write> out: array<${dtype}>; // [N, C]
struct P { n: u32, c: u32, v: u32, off: u32 }  // n = N * C; off: the id of weight's row 0
@group(0) @binding(3) var<uniform> p: P;
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * ${WG}u;
  if (i >= p.n) { return; }
  let id = ids[i / p.c] - i32(p.off);
  if (id < 0 || u32(id) >= p.v) {
    out[i] = ${dtype}(0);
    return;
  }
  out[i] = weight[u32(id) * p.c + i % p.c];
}`;
}

/** Counting sort, step 1: counts[v] = number of positions n with ids[n] - off = v. */
const HISTOGRAM_CODE = `
@group(0) @binding(0) var<storage, read> ids: array<i32>;                 // [N]
@group(0) @binding(1) var<storage, read_write> counts: array<atomic<u32>>; // [V], zeroed
struct P { n: u32, v: u32, off: u32 }
@group(0) @binding(2) var<uniform> p: P;
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let n = gid.x + gid.y * nwg.x * ${WG}u;
  if (n >= p.n) { return; }
  let id = ids[n] - i32(p.off);
  if (id < 0 || u32(id) >= p.v) { return; }
  atomicAdd(&counts[u32(id)], 1u);
}`;

/**
 * Counting sort, step 2: offsets = exclusive prefix sum of counts, offsets[V] = total. One workgroup:
 * each thread sums a contiguous chunk, the chunk sums are scanned in workgroup memory, then each
 * thread writes its chunk's offsets.
 */
const SCAN_CODE = `
@group(0) @binding(0) var<storage, read> counts: array<u32>;        // [V]
@group(0) @binding(1) var<storage, read_write> offsets: array<u32>; // [V + 1]
struct P { v: u32 }
@group(0) @binding(2) var<uniform> p: P;
var<workgroup> sums: array<u32, ${WG}>;
@compute @workgroup_size(${WG})
fn main(@builtin(local_invocation_id) lid: vec3u) {
  let t = lid.x;
  let chunk = (p.v + ${WG - 1}u) / ${WG}u;
  let lo = min(t * chunk, p.v);
  let hi = min(lo + chunk, p.v);
  var own = 0u;
  for (var k = lo; k < hi; k++) { own += counts[k]; }
  sums[t] = own;
  workgroupBarrier();
  // Inclusive scan of the chunk sums (Hillis-Steele).
  for (var d = 1u; d < ${WG}u; d *= 2u) {
    var left = 0u;
    if (t >= d) { left = sums[t - d]; }
    workgroupBarrier();
    sums[t] += left;
    workgroupBarrier();
  }
  var run = sums[t] - own;
  for (var k = lo; k < hi; k++) {
    offsets[k] = run;
    run += counts[k];
  }
  if (t == ${WG - 1}u) { offsets[p.v] = sums[t]; }
}`;

/**
 * Counting sort, step 3: each position takes a slot in its id's range of \`order\`. Counting the
 * counts back down to zero hands out the slots, so the order inside one id's range is arbitrary
 * (step 4 puts it right).
 */
const SCATTER_CODE = `
@group(0) @binding(0) var<storage, read> ids: array<i32>;                 // [N]
@group(0) @binding(1) var<storage, read_write> counts: array<atomic<u32>>; // [V]
@group(0) @binding(2) var<storage, read> offsets: array<u32>;             // [V + 1]
@group(0) @binding(3) var<storage, read_write> order: array<u32>;         // [N]
struct P { n: u32, v: u32, off: u32 }
@group(0) @binding(4) var<uniform> p: P;
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let n = gid.x + gid.y * nwg.x * ${WG}u;
  if (n >= p.n) { return; }
  let id = ids[n] - i32(p.off);
  if (id < 0 || u32(id) >= p.v) { return; }
  let slot = offsets[u32(id)] + atomicSub(&counts[u32(id)], 1u) - 1u;
  order[slot] = n;
}`;

/**
 * Counting sort, step 4: each id's positions in ascending order, so that step 5 sums them in the same
 * order on every run. A position's place in its id's range of \`sorted\` is the number of smaller
 * positions in that range (work: the sum over ids of their count squared, spread over the positions).
 */
const RANK_CODE = `
@group(0) @binding(0) var<storage, read> ids: array<i32>;           // [N]
@group(0) @binding(1) var<storage, read> offsets: array<u32>;       // [V + 1]
@group(0) @binding(2) var<storage, read> order: array<u32>;         // [N], any order within an id
@group(0) @binding(3) var<storage, read_write> sorted: array<u32>;  // [N], ascending within an id
struct P { v: u32, off: u32 }
@group(0) @binding(4) var<uniform> p: P;
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let k = gid.x + gid.y * nwg.x * ${WG}u;
  if (k >= offsets[p.v]) { return; }  // slots of in-range ids only
  let n = order[k];
  let id = u32(ids[n] - i32(p.off));
  let lo = offsets[id];
  let hi = offsets[id + 1u];
  var rank = 0u;
  for (var j = lo; j < hi; j++) { rank += select(0u, 1u, order[j] < n); }
  sorted[lo + rank] = n;
}`;

/** Step 5: dweight[v, c] = sum of dout[sorted[k], c] for k in offsets[v] .. offsets[v + 1], in order. */
function sumRowsCode(dtype: DType): string {
  return `${header(dtype)}
@group(0) @binding(0) var<storage, read> dout: array<${dtype}>;         // [N, C]
@group(0) @binding(1) var<storage, read> offsets: array<u32>;          // [V + 1]
@group(0) @binding(2) var<storage, read> sorted: array<u32>;           // [N], ascending within an id
@group(0) @binding(3) var<storage, read_write> dweight: array<${dtype}>; // [V, C]
struct P { n: u32, c: u32 }  // n = V * C
@group(0) @binding(4) var<uniform> p: P;
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * ${WG}u;
  if (i >= p.n) { return; }
  let v = i / p.c;
  let c = i % p.c;
  let end = offsets[v + 1u];
  var acc = 0.0;
  for (var k = offsets[v]; k < end; k++) {
    acc += f32(dout[sorted[k] * p.c + c]);
  }
  dweight[i] = ${dtype}(acc);
}`;
}

function checkIds(ids: Tensor, op: string): void {
  if (ids.dtype !== "i32") throw new Error(`${op}: ids must be i32, got ${ids}`);
}

/**
 * The forward gather without autograd: weight [V, C], ids i32 [...] -> [..., C] (weight's dtype).
 * Rows of out-of-range ids are zero. Any dtype works (f32, f16, i32, u32). With `rowOffset`, weight
 * holds the rows of ids rowOffset .. rowOffset + V - 1 (a piece of a split table).
 */
export function embeddingForward(weight: Tensor, ids: Tensor, rowOffset = 0): Tensor {
  checkIds(ids, "embedding");
  if (weight.shape.length !== 2) throw new Error(`embedding: weight must be [V, C], got ${weight}`);
  const e = weight.engine;
  const [V, C] = weight.shape;
  const out = e.empty([...ids.shape, C], weight.dtype);
  const n = ids.size * C;
  if (n === 0) return out;
  e.run({
    label: "embedding_gather",
    code: gatherCode(weight.dtype),
    bindings: [weight, ids, out],
    params: [n, C, V, rowOffset],
    workgroups: grid1d(n, WG),
  });
  return out;
}

/**
 * The scatter-add of rows: dout [..., C], ids i32 [...] -> dweight [V, C] with dweight[v] = sum of the
 * rows of dout whose id is v; rows of unused ids are zero and out-of-range ids are skipped. No float
 * atomics: a counting sort of the positions by id (histogram, scan, scatter), then a sum per element
 * of dweight over its id's positions in ascending order, so the result is the same on every run. Cost
 * O(V * C + N * C), plus the square of each id's count to order its positions. With `rowOffset`,
 * dweight holds the rows of ids rowOffset .. rowOffset + V - 1.
 */
export function embeddingBackward(dout: Tensor, ids: Tensor, V: number, rowOffset = 0): Tensor {
  checkIds(ids, "embedding backward");
  const e = dout.engine;
  const N = ids.size;
  const C = dout.shape[dout.shape.length - 1];
  if (dout.size !== N * C) throw new Error(`embedding backward: gradient ${dout} does not match ids ${ids}`);
  const counts = e.zeros([V], "u32");
  const offsets = e.empty([V + 1], "u32");
  const order = e.empty([N], "u32");
  const sorted = e.empty([N], "u32");
  const dweight = e.empty([V, C], dout.dtype);
  if (N > 0) {
    e.run({
      label: "embedding_histogram",
      code: HISTOGRAM_CODE,
      bindings: [ids, counts],
      params: [N, V, rowOffset],
      workgroups: grid1d(N, WG),
    });
  }
  e.run({
    label: "embedding_scan",
    code: SCAN_CODE,
    bindings: [counts, offsets],
    params: [V],
    workgroups: [1],
  });
  if (N > 0) {
    e.run({
      label: "embedding_scatter",
      code: SCATTER_CODE,
      bindings: [ids, counts, offsets, order],
      params: [N, V, rowOffset],
      workgroups: grid1d(N, WG),
    });
    e.run({
      label: "embedding_rank",
      code: RANK_CODE,
      bindings: [ids, offsets, order, sorted],
      params: [V, rowOffset],
      workgroups: grid1d(N, WG),
    });
  }
  if (V * C > 0) {
    e.run({
      label: "embedding_sum_rows",
      code: sumRowsCode(dout.dtype),
      bindings: [dout, offsets, sorted, dweight],
      params: [V * C, C],
      workgroups: grid1d(V * C, WG),
    });
  }
  // Work already encoded on these buffers runs before any later reuse of them.
  counts.dispose();
  offsets.dispose();
  order.dispose();
  sorted.dispose();
  return dweight;
}

/**
 * Embedding lookup, differentiable in `weight`: weight [V, C] (f32/f16), ids i32 [...] -> [..., C].
 * Out-of-range ids give zero rows and no gradient (the kernels never read out of bounds).
 * The backward is {@linkcode embeddingBackward}. A table split over several buffers
 * ({@linkcode SplitTensor}) is looked up piece by piece and the rows summed (each id hits one piece).
 */
export function embedding(weight: Tensor, ids: Tensor): Tensor {
  if (!isFloat(weight.dtype)) throw new Error(`embedding: weight must be f32 or f16, got ${weight}`);
  if (weight instanceof SplitTensor) {
    const parts = weight.pieces.map((piece, i) => lookup(piece, ids, weight.rowStarts[i]));
    return parts.reduce((sum, part) => add(sum, part));
  }
  return lookup(weight, ids, 0);
}

/** The differentiable lookup in one table of rows rowOffset .. rowOffset + V - 1. */
function lookup(weight: Tensor, ids: Tensor, rowOffset: number): Tensor {
  const out = embeddingForward(weight, ids, rowOffset);
  return record(out, [weight, ids], (g, needs) => [
    needs[0] ? embeddingBackward(g, ids, weight.shape[0], rowOffset) : null,
    null,
  ]);
}
