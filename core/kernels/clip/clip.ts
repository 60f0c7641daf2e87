/**
 * Global gradient norm and clipping by it, entirely on the GPU: the norm stays a [1] tensor that the
 * scaling kernel reads, so clipping needs no readback and no wait.
 * @module
 */

import { type DType, f32Bits, isFloat } from "../../dtype.ts";
import { leaves } from "../../autograd.ts";
import { grid1d } from "../../engine.ts";
import type { Tensor } from "../../tensor.ts";

const WG = 256;
/** Most workgroups one tensor's partial sum uses (each loops over the tensor with a grid stride). */
const MAX_GROUPS = 256;

/** WGSL that sums `sh` (workgroup memory, WG values) into sh[0]; every thread must reach it. */
const TREE_SUM = `
  workgroupBarrier();
  for (var k = ${WG / 2}u; k > 0u; k >>= 1u) {
    if (lid.x < k) { sh[lid.x] += sh[lid.x + k]; }
    workgroupBarrier();
  }`;

/** partial[off + group] = sum of x[i]^2 over the elements this workgroup visits. */
function sumSquaresCode(dtype: DType): string {
  return `${dtype === "f16" ? "enable f16;\n" : ""}
@group(0) @binding(0) var<storage, read> x: array<${dtype}>;        // [n]
@group(0) @binding(1) var<storage, read_write> partial: array<f32>; // [total groups of all tensors]
struct P { n: u32, off: u32 }
@group(0) @binding(2) var<uniform> p: P;
var<workgroup> sh: array<f32, ${WG}>;
@compute @workgroup_size(${WG})
fn main(@builtin(local_invocation_id) lid: vec3u, @builtin(workgroup_id) wid: vec3u,
        @builtin(num_workgroups) nwg: vec3u) {
  var s = 0.0;
  for (var i = wid.x * ${WG}u + lid.x; i < p.n; i += nwg.x * ${WG}u) {
    let v = f32(x[i]);
    s += v * v;
  }
  sh[lid.x] = s;${TREE_SUM}
  if (lid.x == 0u) { partial[p.off + wid.x] = sh[0]; }
}`;
}

/** One workgroup: norm[0] = sqrt(sum of the partial sums). */
const FINAL_CODE = `
@group(0) @binding(0) var<storage, read> partial: array<f32>;    // [n]
@group(0) @binding(1) var<storage, read_write> norm: array<f32>; // [1]
struct P { n: u32 }
@group(0) @binding(2) var<uniform> p: P;
var<workgroup> sh: array<f32, ${WG}>;
@compute @workgroup_size(${WG})
fn main(@builtin(local_invocation_id) lid: vec3u) {
  var s = 0.0;
  for (var i = lid.x; i < p.n; i += ${WG}u) { s += partial[i]; }
  sh[lid.x] = s;${TREE_SUM}
  if (lid.x == 0u) { norm[0] = sqrt(sh[0]); }
}`;

/** g[i] *= min(1, maxNorm / (norm[0] + 1e-6)). */
function scaleCode(dtype: DType): string {
  return `${dtype === "f16" ? "enable f16;\n" : ""}
@group(0) @binding(0) var<storage, read_write> g: array<${dtype}>; // [n]
@group(0) @binding(1) var<storage, read> norm: array<f32>;        // [1]
struct P { n: u32, maxNorm: f32 }
@group(0) @binding(2) var<uniform> p: P;
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * ${WG}u;
  if (i >= p.n) { return; }
  let scale = min(1.0, p.maxNorm / (norm[0] + 1e-6));
  g[i] = ${dtype}(f32(g[i]) * scale);
}`;
}

/**
 * The global L2 norm of `tensors` (f32/f16, any shapes): sqrt of the sum of squares of all their
 * elements, as an f32 [1] tensor on the GPU. Each tensor is reduced to at most 256 f32 partial sums
 * (one per workgroup), then one workgroup adds all partials; nothing is read back.
 */
export function globalNorm(tensors: Tensor[]): Tensor {
  if (tensors.length === 0) throw new Error("globalNorm: no tensors");
  const e = tensors[0].engine;
  for (const t of tensors) if (!isFloat(t.dtype)) throw new Error(`globalNorm: ${t} is not f32 or f16`);
  const groups = tensors.map((t) => Math.min(Math.ceil(t.size / WG), MAX_GROUPS));
  const total = groups.reduce((a, b) => a + b, 0);
  const partial = e.empty([Math.max(total, 1)]);
  const norm = e.zeros([1]);
  let off = 0;
  tensors.forEach((t, i) => {
    if (groups[i] === 0) return;
    e.run({
      label: "clip_sum_squares",
      code: sumSquaresCode(t.dtype),
      bindings: [t, partial],
      params: [t.size, off],
      workgroups: [groups[i]],
    });
    off += groups[i];
  });
  if (total > 0) {
    e.run({
      label: "clip_norm",
      code: FINAL_CODE,
      bindings: [partial, norm],
      params: [total],
      workgroups: [1],
    });
  }
  partial.dispose(); // work already encoded on it runs before any reuse
  return norm;
}

/**
 * Clips the gradients of `params` (those that have one) to a global norm of at most `maxNorm`: every
 * gradient is scaled in place by min(1, maxNorm / (norm + 1e-6)), as PyTorch's `clip_grad_norm_`,
 * by a kernel that reads the norm on the GPU (no readback, no wait). Returns the pre-clip norm, f32 [1]
 * (zero when no parameter has a gradient). When the norm is inf or NaN the scaled gradients are
 * meaningless: check the returned norm before stepping.
 */
export function clipGradNorm(params: Tensor[], maxNorm: number): Tensor {
  if (params.length === 0) throw new Error("clipGradNorm: no parameters");
  const grads = leaves(params).flatMap((p) => (p.grad ? [p.grad] : []));
  if (grads.length === 0) return params[0].engine.zeros([1]);
  const norm = globalNorm(grads);
  for (const g of grads) {
    if (g.size === 0) continue;
    g.engine.run({
      label: "clip_scale",
      code: scaleCode(g.dtype),
      bindings: [g, norm],
      params: [g.size, f32Bits(maxNorm)],
      workgroups: grid1d(g.size, WG),
    });
  }
  return norm;
}
