/**
 * Attention through the matmul kernels: flash attention's algorithm at the granularity of whole score
 * blocks. For a chunk of kv groups (a kv head of one batch row with its G = NH / NKV query heads),
 * the scores S = q k^T [G T, T] go to a workspace through the tiled (or texture) matmul, a row kernel
 * turns them into the masked softmax P in place and saves each row's logsumexp, and out = P v.
 * Backward recomputes S and dP = dout v^T, turns them into P and dS = scale P (dP - D) in one pass,
 * and gets dv = P^T dout, dq = dS k, dk = dS^T q (the products over a group's G T rows sum the query
 * heads' shares of dk and dv).
 *
 * It keeps what the fused kernel keeps for backward (out, lse). The workspace is transient: at most
 * {@linkcode SCORE_BUDGET} bytes per score buffer (one in forward, two in backward), plus copies of the
 * chunk's q/k/v rows when the call needs more than one chunk. The masked half of causal scores is
 * computed too, but at the matmul's rate, which the one-row-per-thread fused kernel is far from.
 * @module
 */

import { bytesPerElement, type DType } from "../../dtype.ts";
import { type Engine, grid1d } from "../../engine.ts";
import type { Tensor } from "../../tensor.ts";
import { matmulInto } from "../matmul/matmul.ts";
import { copyElements } from "../rows/rows.ts";
import { enableF16, rowGrid, rowMainWgsl, rowThreads, workgroupReduceWgsl } from "../rowwise.ts";
import type { AttentionOptions } from "./attention.ts";
import type { AttentionDims } from "./attention_cpu.ts";
import { maskParams, maskWgsl } from "./attention_mask.ts";

/** Bytes of one score buffer at most (capped further by the adapter's binding and buffer limits). */
export const SCORE_BUDGET = 128 * 2 ** 20;

/** The bytes one score buffer may take on `e`: {@linkcode SCORE_BUDGET} or less where limits are lower. */
export function scoreBudget(e: Engine): number {
  return Math.min(SCORE_BUDGET, e.limit("maxStorageBufferBindingSize"), e.limit("maxBufferSize"));
}

/** Kv groups whose scores fit one score buffer of `budget` bytes (at most all; 0: not even one fits). */
export function groupsPerChunk(d: AttentionDims, dtype: DType, budget: number): number {
  const perGroup = (d.NH / d.NKV) * d.T * d.T * bytesPerElement(dtype);
  return Math.min(d.B * d.NKV, Math.floor(budget / perGroup));
}

/**
 * Peak bytes of the workspace of one backward call (two score buffers, and the chunk's row copies
 * when there is more than one chunk), for memory plans. 0 when the call does not fit the matmul path.
 */
export function matmulAttentionWorkspace(d: AttentionDims, dtype: DType, budget = SCORE_BUDGET): number {
  const per = groupsPerChunk(d, dtype, budget);
  if (per === 0) return 0;
  const G = d.NH / d.NKV, bytes = bytesPerElement(dtype);
  const scores = 2 * per * G * d.T * d.T * bytes;
  // q, dout, dq (G T rows each) and k, v, dk, dv (T rows each) of a chunk
  const rows = per < d.B * d.NKV ? per * (3 * G + 4) * d.T * d.HS * bytes : 0;
  return scores + rows;
}

/** The parameters and masking rule shared by the two row kernels. */
function header(dtype: DType): string {
  return `${enableF16(dtype)}alias E = ${dtype};
// C: keys per row (T); a chunk's rows are its heads' T query rows in turn, so row r is query r % C.
// lse and D rows are rowBase + r.
struct P { R: u32, C: u32, rowBase: u32, causal: u32, window: u32, scale: f32 }
${maskWgsl("p.C")}
fn attends(i: u32, j: u32) -> bool { return j >= jlo(i) && j <= jhi(i); }`;
}

/** Scores [R, C] -> their masked softmax P in place, and lse[rowBase + r] = log sum_j exp(scale s_rj). */
function softmaxCode(dtype: DType, wg: number): string {
  return `${header(dtype)}
@group(0) @binding(0) var<storage, read_write> s: array<E>;     // [R, C] scores in, P out
@group(0) @binding(1) var<storage, read_write> lse: array<f32>; // [B, NH, T]
@group(0) @binding(2) var<uniform> p: P;
${workgroupReduceWgsl(wg)}
${rowMainWgsl(wg)}
  let i = row % p.C;
  let lo = jlo(i);
  let hi = jhi(i);
  var m = -3.0e38;
  for (var j = lo + lid; j <= hi; j += ${wg}u) { m = max(m, f32(s[base + j]) * p.scale); }
  m = reduceMax(lid, m);
  var l = 0.0;
  for (var j = lo + lid; j <= hi; j += ${wg}u) { l += exp(f32(s[base + j]) * p.scale - m); }
  l = reduceSum(lid, l);
  for (var j = lid; j < p.C; j += ${wg}u) {
    s[base + j] = E(select(0.0, exp(f32(s[base + j]) * p.scale - m) / l, j >= lo && j <= hi));
  }
  if (lid == 0u) { lse[p.rowBase + row] = m + log(l); }
}`;
}

/** Recomputed scores s and dp = dout . v [R, C] -> P into s and dS = scale P (dp - D) into dp. */
function gradCode(dtype: DType): string {
  return `${header(dtype)}
@group(0) @binding(0) var<storage, read_write> s: array<E>;  // [R, C] scores in, P out
@group(0) @binding(1) var<storage, read_write> dp: array<E>; // [R, C] dout . v in, dS out
@group(0) @binding(2) var<storage, read> lse: array<f32>;    // [B, NH, T]
@group(0) @binding(3) var<storage, read> D: array<f32>;      // [B, NH, T] rowsum(dout * out)
@group(0) @binding(4) var<uniform> p: P;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let x = gid.x + gid.y * nwg.x * 256u;
  if (x >= p.R * p.C) { return; }
  let row = x / p.C;
  let r = p.rowBase + row;
  let pr = select(0.0, exp(f32(s[x]) * p.scale - lse[r]), attends(row % p.C, x % p.C));
  s[x] = E(pr);
  dp[x] = E(pr * (f32(dp[x]) - D[r]) * p.scale);
}`;
}

/** The uniform block `P` for `rows` rows starting at row `rowBase` of lse/D. */
function rowParams(d: AttentionDims, rows: number, rowBase: number, opts: AttentionOptions): number[] {
  return [rows, d.T, rowBase, ...maskParams(d, opts)];
}

/** A chunk of kv groups: g0..g0+n-1. */
interface Chunk {
  g0: number;
  n: number;
  /** Whether it is the whole call (then q, k, v and the outputs are used in place, without copies). */
  whole: boolean;
}

/** Runs `fn` on each chunk of kv groups, in its own tidy scope. */
function eachChunk(e: Engine, d: AttentionDims, dtype: DType, fn: (c: Chunk) => void): void {
  const groups = d.B * d.NKV, per = groupsPerChunk(d, dtype, scoreBudget(e));
  if (per === 0) throw new Error(`attention (matmul path): one kv group's scores do not fit a buffer`);
  for (let g0 = 0; g0 < groups; g0 += per) {
    const n = Math.min(per, groups - g0);
    e.tidy(() => fn({ g0, n, whole: n === groups }));
  }
}

/**
 * The chunk's part of `t` (`width` elements per kv group): `t` itself for a whole-call chunk, else a
 * copy (or, with `copy` false, an empty tensor of that size, to be written back by {@linkcode putRows}).
 */
function rowsOf(t: Tensor, c: Chunk, width: number, copy = true): Tensor {
  if (c.whole) return t;
  const part = t.engine.empty([c.n * width], t.dtype);
  if (copy) copyElements(t, c.g0 * width, part, 0, c.n * width);
  return part;
}

/** Writes a chunk's part back into `t` (nothing for a whole-call chunk, which wrote `t` itself). */
function putRows(part: Tensor, t: Tensor, c: Chunk, width: number): void {
  if (!c.whole) copyElements(part, 0, t, c.g0 * width, c.n * width);
}

/**
 * Forward into `out` [B, NH, T, HS] and `lse` [B, NH, T] (f32) from q [B, NH, T, HS], k and v
 * [B, NKV, T, HS] (sizes checked by the caller).
 */
export function matmulAttentionForward(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  d: AttentionDims,
  opts: AttentionOptions,
  out: Tensor,
  lse: Tensor,
): void {
  const e = q.engine, G = d.NH / d.NKV, GT = G * d.T;
  const wg = rowThreads(d.T);
  eachChunk(e, d, q.dtype, (c) => {
    const qc = rowsOf(q, c, GT * d.HS), kc = rowsOf(k, c, d.T * d.HS), vc = rowsOf(v, c, d.T * d.HS);
    const s = e.empty([c.n, GT, d.T], q.dtype);
    matmulInto(s, qc, kc, { batch: c.n, M: GT, N: d.T, K: d.HS, transB: true });
    e.run({
      label: "attention_mm_softmax",
      code: softmaxCode(q.dtype, wg),
      bindings: [s, lse],
      params: rowParams(d, c.n * GT, c.g0 * GT, opts),
      workgroups: rowGrid(c.n * GT, wg),
    });
    const oc = rowsOf(out, c, GT * d.HS, false);
    matmulInto(oc, s, vc, { batch: c.n, M: GT, N: d.HS, K: d.T });
    putRows(oc, out, c, GT * d.HS);
  });
}

/** The gradients a backward writes (null: not wanted): dq [B, NH, T, HS], dk and dv [B, NKV, T, HS]. */
export interface AttentionGrads {
  dq: Tensor | null;
  dk: Tensor | null;
  dv: Tensor | null;
}

/**
 * Backward into dq [B, NH, T, HS] and dk, dv [B, NKV, T, HS] (each optional) from the forward's
 * inputs, lse, D = rowsum(dout * out) [B, NH, T] (f32) and dout [B, NH, T, HS].
 */
export function matmulAttentionBackward(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  dout: Tensor,
  lse: Tensor,
  D: Tensor,
  d: AttentionDims,
  opts: AttentionOptions,
  grads: AttentionGrads,
): void {
  const e = q.engine, G = d.NH / d.NKV, GT = G * d.T;
  const qw = GT * d.HS, kw = d.T * d.HS;
  eachChunk(e, d, q.dtype, (c) => {
    const qc = rowsOf(q, c, qw), kc = rowsOf(k, c, kw), vc = rowsOf(v, c, kw), gc = rowsOf(dout, c, qw);
    const s = e.empty([c.n, GT, d.T], q.dtype), dp = e.empty([c.n, GT, d.T], q.dtype);
    matmulInto(s, qc, kc, { batch: c.n, M: GT, N: d.T, K: d.HS, transB: true });
    matmulInto(dp, gc, vc, { batch: c.n, M: GT, N: d.T, K: d.HS, transB: true });
    e.run({
      label: "attention_mm_grad",
      code: gradCode(q.dtype),
      bindings: [s, dp, lse, D],
      params: rowParams(d, c.n * GT, c.g0 * GT, opts),
      workgroups: grid1d(s.size, 256),
    });
    // s now holds P and dp holds dS.
    const products: [Tensor | null, Tensor, Tensor, number, number, boolean][] = [
      [grads.dv, s, gc, kw, GT, true], // dv = P^T dout
      [grads.dq, dp, kc, qw, d.T, false], // dq = dS k
      [grads.dk, dp, qc, kw, GT, true], // dk = dS^T q
    ];
    for (const [grad, a, b, width, K, transA] of products) {
      if (!grad) continue;
      const part = rowsOf(grad, c, width, false);
      matmulInto(part, a, b, { batch: c.n, M: width / d.HS, N: d.HS, K, transA });
      putRows(part, grad, c, width);
    }
  });
}
