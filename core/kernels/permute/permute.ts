/**
 * permute: reorders the axes of a tensor (up to 6), e.g. [B, T, NH, HS] -> [B, NH, T, HS] around attention.
 * One invocation per output run of L elements; the run's input index comes from the permuted strides.
 * L is 1, or on CPU adapters the last axis's length when the permutation keeps the last axis last (the
 * index arithmetic, integer divisions that CPUs cannot vectorize, is then paid once per run).
 * @module
 */

import { record } from "../../autograd.ts";
import { grid1d } from "../../engine.ts";
import type { Tensor } from "../../tensor.ts";
import { inversePerm, permutedShape, stridesOf } from "./permute_cpu.ts";

const MAX_DIMS = 6;

function permuteCode(dtype: string): string {
  return `${dtype === "f16" ? "enable f16;\n" : ""}
@group(0) @binding(0) var<storage, read> x: array<${dtype}>;
@group(0) @binding(1) var<storage, read_write> y: array<${dtype}>;
struct P { n: u32, ndim: u32, L: u32, outShape: array<vec4u, 2>, srcStride: array<vec4u, 2> }
@group(0) @binding(2) var<uniform> p: P;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let o = gid.x + gid.y * nwg.x * 256u;
  if (o >= p.n) { return; }
  var rest = o;
  var src = 0u;
  for (var k = i32(p.ndim) - 1; k >= 0; k--) {
    let d = p.outShape[k / 4][k % 4];
    src += (rest % d) * p.srcStride[k / 4][k % 4];
    rest /= d;
  }
  for (var c = 0u; c < p.L; c++) { y[o * p.L + c] = x[src + c]; }
}`;
}

/**
 * Permutes the axes of `x`: output axis k is input axis `perm[k]`. Differentiable (the gradient is
 * permuted back). Any dtype, up to 6 axes.
 */
export function permute(x: Tensor, perm: readonly number[]): Tensor {
  const nd = x.shape.length;
  if (perm.length !== nd || [...perm].sort().some((p, i) => p !== i) || nd > MAX_DIMS) {
    throw new Error(`permute: [${perm}] is not a permutation of the ${nd} axes of ${x}`);
  }
  const e = x.engine;
  const outShape = permutedShape(x.shape, perm);
  const out = e.empty(outShape, x.dtype);
  const strides = stridesOf(x.shape);
  // Runs: the last axis when it stays last (on CPU adapters), else single elements.
  const L = nd > 0 && perm[nd - 1] === nd - 1 && e.info.isFallbackAdapter ? x.shape[nd - 1] : 1;
  const axes = L > 1 ? nd - 1 : nd;
  const shapeWords = new Array(8).fill(1), strideWords = new Array(8).fill(0);
  for (let k = 0; k < axes; k++) {
    shapeWords[k] = outShape[k];
    strideWords[k] = strides[perm[k]];
  }
  if (out.size > 0) {
    e.run({
      label: "permute",
      code: permuteCode(x.dtype),
      bindings: [x, out],
      params: [out.size / L, axes, L, 0, ...shapeWords, ...strideWords],
      workgroups: grid1d(out.size / L, 256),
    });
  }
  return record(out, [x], (g) => [permute(g, inversePerm(perm))]);
}
