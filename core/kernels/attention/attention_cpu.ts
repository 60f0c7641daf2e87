/**
 * CPU reference of causal (optionally sliding-window) attention with grouped-query heads: the spec
 * the GPU kernels are tested against. Plain loops in f64; the full softmax row is materialized here.
 * @module
 */

import type { AttentionOptions } from "./attention.ts";

/** Sizes of an attention call: q [B, NH, T, HS], k and v [B, NKV, T, HS], NH % NKV == 0. */
export interface AttentionDims {
  /** Batch. */
  B: number;
  /** Query heads. */
  NH: number;
  /** Key/value heads; query head h uses kv head floor(h / (NH / NKV)). */
  NKV: number;
  /** Sequence length. */
  T: number;
  /** Head size. */
  HS: number;
}

/** Numbers accepted by the CPU references. */
export type Floats = Float32Array | Float64Array;

/** Whether query position `i` attends to key position `j` (causal: j <= i; window: i - j < window). */
export function attends(i: number, j: number, opts: AttentionOptions = {}): boolean {
  if ((opts.causal ?? true) && j > i) return false;
  if (opts.window !== undefined && i - j >= opts.window) return false;
  return true;
}

/**
 * Forward: out[b,h,i] = sum_j softmax_j(scale * q[b,h,i] . k[b,g,j]) v[b,g,j] over the keys j that i
 * attends to, g = floor(h / (NH / NKV)). Also returns lse[b,h,i], the log of the softmax denominator
 * (log sum_j exp(s_ij)), which the GPU kernels save for backward.
 * Returns out [B, NH, T, HS] and lse [B, NH, T].
 */
export function attentionCpu(
  q: Floats,
  k: Floats,
  v: Floats,
  dims: AttentionDims,
  opts: AttentionOptions = {},
): { out: Float64Array; lse: Float64Array } {
  const { B, NH, NKV, T, HS } = dims;
  const G = NH / NKV;
  const scale = opts.scale ?? 1 / Math.sqrt(HS);
  const out = new Float64Array(B * NH * T * HS);
  const lse = new Float64Array(B * NH * T);
  const p = new Float64Array(T);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < NH; h++) {
      const qo = (b * NH + h) * T * HS, ko = (b * NKV + Math.floor(h / G)) * T * HS;
      for (let i = 0; i < T; i++) {
        lse[(b * NH + h) * T + i] = softmaxRow(q, k, qo + i * HS, ko, i, T, HS, scale, opts, p);
        for (let d = 0; d < HS; d++) {
          let acc = 0;
          for (let j = 0; j < T; j++) acc += p[j] * v[ko + j * HS + d];
          out[qo + i * HS + d] = acc;
        }
      }
    }
  }
  return { out, lse };
}

/**
 * The softmax row of query i (its HS values start at q[qi]) over the keys of one kv head (starting at
 * k[ko]): fills p [T] with the weights (0 for masked keys) and returns the log-sum-exp of the scores.
 */
function softmaxRow(
  q: Floats,
  k: Floats,
  qi: number,
  ko: number,
  i: number,
  T: number,
  HS: number,
  scale: number,
  opts: AttentionOptions,
  p: Float64Array,
): number {
  let m = -Infinity;
  for (let j = 0; j < T; j++) {
    p[j] = -Infinity;
    if (!attends(i, j, opts)) continue;
    let dot = 0;
    for (let d = 0; d < HS; d++) dot += q[qi + d] * k[ko + j * HS + d];
    p[j] = scale * dot;
    m = Math.max(m, p[j]);
  }
  let l = 0;
  for (let j = 0; j < T; j++) {
    p[j] = Math.exp(p[j] - m); // masked keys: exp(-inf) = 0
    l += p[j];
  }
  for (let j = 0; j < T; j++) p[j] /= l;
  return m + Math.log(l);
}

/**
 * Backward of {@linkcode attentionCpu} given dout [B, NH, T, HS]. With p_ij the softmax weights,
 * dp_ij = dout_i . v_j and D_i = sum_j p_ij dp_ij (= dout_i . out_i), ds_ij = p_ij (dp_ij - D_i):
 * dq_i = scale sum_j ds_ij k_j, dk_j = scale sum_i ds_ij q_i, dv_j = sum_i p_ij dout_i, where the
 * sums over i run over every query head of k/v's group. Returns dq [B, NH, T, HS], dk and dv [B, NKV, T, HS].
 */
export function attentionBackwardCpu(
  q: Floats,
  k: Floats,
  v: Floats,
  dout: Floats,
  dims: AttentionDims,
  opts: AttentionOptions = {},
): { dq: Float64Array; dk: Float64Array; dv: Float64Array } {
  const { B, NH, NKV, T, HS } = dims;
  const G = NH / NKV;
  const scale = opts.scale ?? 1 / Math.sqrt(HS);
  const dq = new Float64Array(B * NH * T * HS);
  const dk = new Float64Array(B * NKV * T * HS);
  const dv = new Float64Array(B * NKV * T * HS);
  const p = new Float64Array(T), dp = new Float64Array(T);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < NH; h++) {
      const qo = (b * NH + h) * T * HS, ko = (b * NKV + Math.floor(h / G)) * T * HS;
      for (let i = 0; i < T; i++) {
        softmaxRow(q, k, qo + i * HS, ko, i, T, HS, scale, opts, p); // recompute the softmax row p_i
        // dp_ij = dout_i . v_j, D_i = sum_j p_ij dp_ij
        let D = 0;
        for (let j = 0; j < T; j++) {
          let dot = 0;
          for (let d = 0; d < HS; d++) dot += dout[qo + i * HS + d] * v[ko + j * HS + d];
          dp[j] = dot;
          D += p[j] * dot;
        }
        for (let j = 0; j < T; j++) {
          if (!attends(i, j, opts)) continue;
          const ds = p[j] * (dp[j] - D);
          for (let d = 0; d < HS; d++) {
            dq[qo + i * HS + d] += scale * ds * k[ko + j * HS + d];
            dk[ko + j * HS + d] += scale * ds * q[qo + i * HS + d];
            dv[ko + j * HS + d] += p[j] * dout[qo + i * HS + d];
          }
        }
      }
    }
  }
  return { dq, dk, dv };
}
