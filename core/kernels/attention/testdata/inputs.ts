/**
 * Inputs of the attention tests.
 * @module
 */

import { roundToF16 } from "../../../dtype.ts";
import { randn } from "../../../random.ts";
import type { AttentionDims } from "../attention_cpu.ts";

/** Inputs q, k, v, dout of shape d, rounded to f16 when asked (the CPU reference then sees the same values). */
export function attentionInputs(d: AttentionDims, seed: number, f16: boolean): {
  q: Float32Array;
  k: Float32Array;
  v: Float32Array;
  g: Float32Array;
} {
  const nq = d.B * d.NH * d.T * d.HS, nk = d.B * d.NKV * d.T * d.HS;
  const r = (a: Float32Array) => f16 ? roundToF16(a) : a;
  return {
    q: r(randn(nq, seed)),
    k: r(randn(nk, seed + 1)),
    v: r(randn(nk, seed + 2)),
    g: r(randn(nq, seed + 3)),
  };
}
