/**
 * Rotary position embeddings (RoPE), rotate-half convention of Hugging Face LLaMA: dims i and
 * i + HS/2 of a head rotate together by (t + offset) * theta^(-2i/HS). Backward is the inverse
 * rotation (the same kernel with the sine negated). f32 or f16 storage; math in f32.
 * @module
 */

import { record } from "../../autograd.ts";
import { f32Bits } from "../../dtype.ts";
import { grid1d } from "../../engine.ts";
import type { Tensor } from "../../tensor.ts";

/** Options of {@linkcode rope}. */
export interface RopeOptions {
  /** The frequency base (default 10000). */
  theta?: number;
  /** Position of row t = 0 (default 0), e.g. the length of a cached prefix. */
  positionOffset?: number;
}

function ropeCode(dtype: string): string {
  return `${dtype === "f16" ? "enable f16;" : ""}
@group(0) @binding(0) var<storage, read> x: array<${dtype}>;        // [B, NH, T, HS]
@group(0) @binding(1) var<storage, read_write> y: array<${dtype}>;  // [B, NH, T, HS]
struct P {
  n: u32,          // pairs in all: B * NH * T * HS/2
  T: u32,
  half: u32,       // HS / 2
  offset: u32,     // position of t = 0
  log2theta: f32,
  sign: f32,       // +1: rotate (forward), -1: rotate back (backward)
}
@group(0) @binding(2) var<uniform> p: P;
const TWO_PI = 6.283185307179586;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let id = gid.x + gid.y * nwg.x * 256u;
  if (id >= p.n) { return; }
  let i = id % p.half;                  // pair (i, i + HS/2)
  let row = id / p.half;                // (b * NH + h) * T + t
  let pos = f32(row % p.T + p.offset);
  let turns = pos * exp2(-f32(i) / f32(p.half) * p.log2theta) / TWO_PI;
  let a = (turns - round(turns)) * TWO_PI;   // reduced to [-pi, pi] before cos/sin
  let c = cos(a);
  let s = p.sign * sin(a);
  let i1 = row * 2u * p.half + i;
  let i2 = i1 + p.half;
  let x1 = f32(x[i1]);
  let x2 = f32(x[i2]);
  y[i1] = ${dtype}(x1 * c - x2 * s);
  y[i2] = ${dtype}(x2 * c + x1 * s);
}`;
}

/** Rotates every row of x [B, NH, T, HS] by its position's angles; sign -1 rotates back. No autograd. */
export function ropeKernel(x: Tensor, opts: RopeOptions = {}, sign: 1 | -1 = 1): Tensor {
  if (x.shape.length !== 4 || x.shape[3] % 2 !== 0) {
    throw new Error(`rope(${x}): x must be [B, NH, T, HS], HS even`);
  }
  if (x.dtype !== "f32" && x.dtype !== "f16") throw new Error(`rope(${x}): dtype must be f32 or f16`);
  const offset = opts.positionOffset ?? 0;
  if (!(Number.isInteger(offset) && offset >= 0)) {
    throw new Error(`rope: positionOffset must be an integer >= 0`);
  }
  const [, , T, HS] = x.shape;
  const e = x.engine;
  const y = e.empty(x.shape, x.dtype);
  const n = x.size / 2;
  if (n === 0) return y;
  e.run({
    label: "rope",
    code: ropeCode(x.dtype),
    bindings: [x, y],
    params: [n, T, HS / 2, offset, f32Bits(Math.log2(opts.theta ?? 10000)), f32Bits(sign)],
    workgroups: grid1d(n, 256),
  });
  return y;
}

/**
 * Rotary position embeddings of x [B, NH, T, HS] (HS even), differentiable: returns y [B, NH, T, HS]
 * with y[i] = x[i] cos a - x[i + HS/2] sin a, y[i + HS/2] = x[i + HS/2] cos a + x[i] sin a, where
 * a = (t + positionOffset) * theta^(-2i/HS) for i < HS/2.
 */
export function rope(x: Tensor, opts: RopeOptions = {}): Tensor {
  const y = ropeKernel(x, opts, 1);
  return record(y, [x], (g) => [ropeKernel(g, opts, -1)]);
}
