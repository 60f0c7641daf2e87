/**
 * Normal random initialization on the GPU: the host never builds the values, so a 7B-parameter model
 * initializes in the time of one write pass instead of minutes of host work. Element i is a function
 * of (seed, i) only (see randn_cpu.ts), so results do not depend on the adapter or the dispatch shape.
 * @module
 */

import { type EmptyOptions, type Engine, grid1d } from "../../engine.ts";
import type { DType } from "../../dtype.ts";
import type { Tensor } from "../../tensor.ts";
import { f32Bits } from "../../dtype.ts";

const WG = 256;

/**
 * A tensor of `shape` filled with N(0, std^2) values from `seed` (f32 or f16). Not differentiable.
 * With `opts.split`, a tensor larger than one binding is split by rows (same values as unsplit).
 */
export function randnGpu(
  e: Engine,
  shape: readonly number[],
  seed: number,
  std = 1,
  dtype: DType = "f32",
  opts: EmptyOptions = {},
): Tensor {
  if (dtype !== "f32" && dtype !== "f16") throw new Error(`randnGpu: dtype must be f32 or f16, got ${dtype}`);
  const out = e.empty(shape, dtype, opts);
  const n = out.size;
  if (n === 0) return out;
  if (2 * n > 2 ** 32) throw new Error(`randnGpu: ${n} elements exceed the generator's 2^31 counter range`);
  const code = `${dtype === "f16" ? "enable f16;" : ""}
@group(0) @binding(0) var<storage, read_write> out: array<${dtype}>; // [n]
struct P { n: u32, seed: u32, scale: f32, start: u32 } // start: the index of out[0] in the whole tensor
@group(0) @binding(1) var<uniform> p: P;
fn pcg(x: u32) -> u32 {
  let state = x * 747796405u + 2891336453u;
  let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
  return (word >> 22u) ^ word;
}
fn uniformAt(counter: u32) -> f32 {
  // (hash + 1) / 2^32 in (0, 1]; computed from the top 24 bits so the f32 value is exact.
  return (f32(pcg(pcg(p.seed) ^ counter) >> 8u) + 1.0) / 16777216.0;
}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * ${WG}u;
  if (i >= p.n) { return; }
  let u = uniformAt(2u * (p.start + i));
  let v = uniformAt(2u * (p.start + i) + 1u);
  out[i] = ${dtype}(p.scale * sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
}`;
  let start = 0;
  for (const piece of out.pieces) {
    e.run({
      label: "randn",
      code,
      bindings: [piece],
      params: [piece.size, seed >>> 0, f32Bits(std), start],
      workgroups: grid1d(piece.size, WG),
    });
    start += piece.size;
  }
  return out;
}
