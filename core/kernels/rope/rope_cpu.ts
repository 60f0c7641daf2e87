/**
 * CPU reference of rotary position embeddings (RoPE), rotate-half convention of Hugging Face LLaMA:
 * the spec the GPU kernel is tested against.
 * @module
 */

import type { RopeOptions } from "./rope.ts";

/** Sizes of a RoPE call: x [B, NH, T, HS], HS even. */
export interface RopeDims {
  /** Batch. */
  B: number;
  /** Heads. */
  NH: number;
  /** Sequence length. */
  T: number;
  /** Head size (even). */
  HS: number;
}

/** The rotation angle of pair i (dims i and i + HS/2) at position `pos`: pos * theta^(-2i/HS). */
export function ropeAngle(pos: number, i: number, HS: number, theta = 10000): number {
  return pos * Math.pow(theta, (-2 * i) / HS);
}

/**
 * Forward: for each row at position t (plus the offset) and each pair i < HS/2 with angle a,
 * y[i] = x[i] cos a - x[i + HS/2] sin a and y[i + HS/2] = x[i + HS/2] cos a + x[i] sin a.
 * Returns y [B, NH, T, HS].
 */
export function ropeCpu(
  x: Float32Array | Float64Array,
  dims: RopeDims,
  opts: RopeOptions = {},
): Float64Array {
  const { B, NH, T, HS } = dims;
  const half = HS / 2;
  const y = new Float64Array(B * NH * T * HS);
  for (let row = 0; row < B * NH * T; row++) {
    const pos = (row % T) + (opts.positionOffset ?? 0);
    for (let i = 0; i < half; i++) {
      const a = ropeAngle(pos, i, HS, opts.theta);
      const x1 = x[row * HS + i], x2 = x[row * HS + i + half];
      y[row * HS + i] = x1 * Math.cos(a) - x2 * Math.sin(a);
      y[row * HS + i + half] = x2 * Math.cos(a) + x1 * Math.sin(a);
    }
  }
  return y;
}

/**
 * Backward of {@linkcode ropeCpu}: the rotation is orthogonal, so the gradient is the inverse
 * rotation of dy: dx[i] = dy[i] cos a + dy[i + HS/2] sin a, dx[i + HS/2] = dy[i + HS/2] cos a - dy[i] sin a.
 * Returns dx [B, NH, T, HS].
 */
export function ropeBackwardCpu(
  dy: Float32Array | Float64Array,
  dims: RopeDims,
  opts: RopeOptions = {},
): Float64Array {
  const { B, NH, T, HS } = dims;
  const half = HS / 2;
  const dx = new Float64Array(B * NH * T * HS);
  for (let row = 0; row < B * NH * T; row++) {
    const pos = (row % T) + (opts.positionOffset ?? 0);
    for (let i = 0; i < half; i++) {
      const a = ropeAngle(pos, i, HS, opts.theta);
      const g1 = dy[row * HS + i], g2 = dy[row * HS + i + half];
      dx[row * HS + i] = g1 * Math.cos(a) + g2 * Math.sin(a);
      dx[row * HS + i + half] = g2 * Math.cos(a) - g1 * Math.sin(a);
    }
  }
  return dx;
}
