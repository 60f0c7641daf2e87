/**
 * A plain-TypeScript reference of the `asvr_depth` head's forward loss, in f64, written straight from
 * ASVR_SPEC section 3 and the reference code's loops (one patch, one slot, one head at a time), for
 * checking the GPU head. Slow: tiny sizes only.
 * @module
 */

import { erf } from "../core/kernels/elementwise/elementwise_cpu.ts";
import { ASVR_RMS_EPS } from "./asvr_depth.ts";
import type { AsvrDepthHeadConfig } from "./config.ts";

/** The sizes the reference needs (a subset of {@linkcode AsvrDepthHeadConfig}). */
export type AsvrDepthCpuConfig = Pick<
  AsvrDepthHeadConfig,
  "width" | "heads" | "layers" | "depths" | "codebookDim"
>;

/** Inputs of {@linkcode asvrDepthLossCpu}; arrays are row-major. */
export interface AsvrDepthCpuInputs {
  /** The head's sizes. */
  cfg: AsvrDepthCpuConfig;
  /** The parameters under the reference's names (as `AsvrDepthHead.params()` names them). */
  params: Map<string, ArrayLike<number>>;
  /** Hidden states [B, N, llmWidth]. */
  hidden: ArrayLike<number>;
  /** Batch B, patches N, LLM width. */
  B: number;
  N: number;
  llmWidth: number;
  /** Codes [B, N, D] (-100 or out of range: not counted, and a zero codebook row for teacher forcing). */
  codes: ArrayLike<number>;
  /** Codebooks [D, K, Dc]. */
  codebooks: ArrayLike<number>;
  /** Codebook entries K. */
  K: number;
}

/** What {@linkcode asvrDepthLossCpu} computes. */
export interface AsvrDepthCpuResult {
  /** The mean over depths of the per-depth mean cross-entropy. */
  loss: number;
  /** The per-depth mean cross-entropy (0 for a depth with no counted row). */
  depthLosses: number[];
  /** The classifiers' inputs after headnorm, [B*N, D, C]. */
  states: Float64Array;
}

/** The `asvr_depth` loss of one batch, computed on the CPU in f64. */
export function asvrDepthLossCpu(inp: AsvrDepthCpuInputs): AsvrDepthCpuResult {
  const { cfg, B, N, K } = inp;
  const C = cfg.width, D = cfg.depths, Dc = cfg.codebookDim, NH = cfg.heads, HS = C / NH;
  const P = (name: string): ArrayLike<number> => {
    const p = inp.params.get(name);
    if (!p) throw new Error(`asvrDepthLossCpu: missing parameter "${name}"`);
    return p;
  };
  const R = B * N;
  const states = new Float64Array(R * D * C);
  const depthSums = new Array<number>(D).fill(0), depthCounts = new Array<number>(D).fill(0);

  for (let r = 0; r < R; r++) {
    // 1. Projector: o = W2 gelu(W1 h).
    const h = Array.from({ length: inp.llmWidth }, (_, i) => inp.hidden[r * inp.llmWidth + i]);
    const o = linear(
      geluVec(linear(h, P("projector.0.weight"), P("projector.0.bias"), C)),
      P("projector.2.weight"),
      P("projector.2.bias"),
      C,
    );
    // 2-3. Depth sequence: slot 0 = o, slot d = in_mlp_1(e_0 + ... + e_{d-1}).
    const code = (d: number) => inp.codes[r * D + d];
    const x: number[][] = [o];
    const c = new Array<number>(Dc).fill(0);
    for (let d = 0; d < D - 1; d++) {
      const k = code(d);
      if (k >= 0 && k < K) { for (let j = 0; j < Dc; j++) c[j] += inp.codebooks[(d * K + k) * Dc + j]; }
      x.push(linear(c, P("in_mlp_1.weight"), P("in_mlp_1.bias"), C));
    }
    // 4. Causal depth layers.
    let xs = x;
    for (let l = 0; l < cfg.layers; l++) xs = depthLayer(xs, `head_transformer.${l}.`, P, D, C, NH, HS);
    // 5. headnorm, classifiers, cross-entropy.
    for (let d = 0; d < D; d++) {
      const y = rmsNorm(xs[d], P("headnorm.weight"));
      for (let j = 0; j < C; j++) states[(r * D + d) * C + j] = y[j];
      const W = P(`heads.${d}.weight`), bias = P(`heads.${d}.bias`);
      const V = bias.length;
      const t = code(d);
      if (!(t >= 0 && t < V)) continue;
      const logits = linear(y, W, bias, V);
      let m = -Infinity;
      for (const v of logits) m = Math.max(m, v);
      let s = 0;
      for (const v of logits) s += Math.exp(v - m);
      depthSums[d] += m + Math.log(s) - logits[t];
      depthCounts[d]++;
    }
  }
  const depthLosses = depthSums.map((s, d) => (depthCounts[d] ? s / depthCounts[d] : 0));
  return { loss: depthLosses.reduce((a, b) => a + b, 0) / D, depthLosses, states };
}

/** One CasualDepthTransformerLayer on the D slots of one patch. */
function depthLayer(
  x: number[][],
  pre: string,
  P: (name: string) => ArrayLike<number>,
  D: number,
  C: number,
  NH: number,
  HS: number,
): number[][] {
  const att = `${pre}self_attention.`;
  const wIn = P(`${att}in_proj_weight`), bIn = P(`${att}in_proj_bias`);
  const qkv = x.map((xl) => linear(rmsNorm(xl, P(`${pre}layernorm1.weight`)), wIn, bIn, 3 * C)); // [D][3C]
  const merged = x.map(() => new Array<number>(C).fill(0));
  for (let hd = 0; hd < NH; hd++) {
    for (let i = 0; i < D; i++) {
      // Query slot i sees slots j <= i.
      const scores: number[] = [];
      for (let j = 0; j <= i; j++) {
        let s = 0;
        for (let u = 0; u < HS; u++) s += qkv[i][hd * HS + u] * qkv[j][C + hd * HS + u];
        scores.push(s / Math.sqrt(HS));
      }
      const m = Math.max(...scores);
      const w = scores.map((s) => Math.exp(s - m));
      const z = w.reduce((a, b) => a + b, 0);
      for (let j = 0; j <= i; j++) {
        for (let u = 0; u < HS; u++) merged[i][hd * HS + u] += (w[j] / z) * qkv[j][2 * C + hd * HS + u];
      }
    }
  }
  const w1 = P(`${pre}linear1.weight`), w2 = P(`${pre}linear2.weight`); // (2C, D, C) and (C, D, 2C)
  return x.map((xl, l) => {
    const a = linear(merged[l], P(`${att}out_proj.weight`), P(`${att}out_proj.bias`), C);
    const s = rmsNorm(a.map((v, j) => v + xl[j]), P(`${pre}layernorm2.weight`));
    const u = new Array<number>(2 * C).fill(0);
    for (let t = 0; t < 2 * C; t++) {
      let acc = 0;
      for (let j = 0; j < C; j++) acc += w1[(t * D + l) * C + j] * s[j];
      u[t] = gelu(acc);
    }
    return s.map((sv, j) => {
      let acc = 0;
      for (let t = 0; t < 2 * C; t++) acc += w2[(j * D + l) * 2 * C + t] * u[t];
      return sv + acc;
    });
  });
}

/** y = W x + b with W [out, in]. */
function linear(x: ArrayLike<number>, W: ArrayLike<number>, b: ArrayLike<number>, out: number): number[] {
  const n = x.length;
  return Array.from({ length: out }, (_, o) => {
    let acc = b[o];
    for (let i = 0; i < n; i++) acc += W[o * n + i] * x[i];
    return acc;
  });
}

function rmsNorm(x: ArrayLike<number>, w: ArrayLike<number>): number[] {
  let ss = 0;
  for (let i = 0; i < x.length; i++) ss += x[i] * x[i];
  const inv = 1 / Math.sqrt(ss / x.length + ASVR_RMS_EPS);
  return Array.from({ length: x.length }, (_, i) => x[i] * inv * w[i]);
}

function gelu(v: number): number {
  return 0.5 * v * (1 + erf(v / Math.SQRT2));
}

function geluVec(x: number[]): number[] {
  return x.map(gelu);
}
