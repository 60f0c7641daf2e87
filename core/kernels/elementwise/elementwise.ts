/**
 * Elementwise ops on the GPU, each differentiable: add / sub / mul with numpy broadcasting of trailing
 * dims, scale and addScalar, GELU (tanh approximation and exact erf), quick GELU, SiLU, fused SwiGLU
 * and f32 <-> f16 casts. f16 tensors are storage only: every kernel computes in f32.
 * @module
 */

import { record, reshape } from "../../autograd.ts";
import { grid1d } from "../../engine.ts";
import { type DType, f32Bits, isFloat } from "../../dtype.ts";
import type { Tensor } from "../../tensor.ts";
import { broadcastStrides, collapseLayout, layoutCode, layoutParams, sumTo } from "../reduce/reduce.ts";
import { type BinaryOp, broadcastShape } from "./elementwise_cpu.ts";

const WG = 256;

// ------------------------------------------------------------------ broadcasting binary ops

/** a + b with numpy broadcasting (e.g. [B,T,C] + [C]); same dtype. Differentiable. */
export function add(a: Tensor, b: Tensor): Tensor {
  return binary("add", a, b);
}

/** a - b with numpy broadcasting; same dtype. Differentiable. */
export function sub(a: Tensor, b: Tensor): Tensor {
  return binary("sub", a, b);
}

/** a * b with numpy broadcasting (e.g. [B,T,C] * [B,T,1]); same dtype. Differentiable. */
export function mul(a: Tensor, b: Tensor): Tensor {
  return binary("mul", a, b);
}

function binary(op: BinaryOp, a: Tensor, b: Tensor): Tensor {
  if (a.dtype !== b.dtype || !isFloat(a.dtype)) {
    throw new Error(`${op}: inputs must share a float dtype, got ${a} and ${b}`);
  }
  const shape = broadcastShape(a.shape, b.shape, op);
  const out = binaryKernel(op, a, b, shape);
  return record(out, [a, b], (g, needs) => {
    let da: Tensor | null = null, db: Tensor | null = null;
    if (needs[0]) da = sumTo(op === "mul" ? binaryKernel("mul", g, b, shape) : g, a.shape);
    if (needs[1]) {
      if (op === "mul") db = sumTo(binaryKernel("mul", g, a, shape), b.shape);
      else if (op === "add") db = sumTo(g, b.shape);
      else db = scaleKernel(sumTo(g, b.shape), -1);
    }
    return [da, db];
  });
}

/** out[i] = a[ia] op b[ib] over the broadcast shape; a new tensor. Not recorded. */
function binaryKernel(op: BinaryOp, a: Tensor, b: Tensor, shape: readonly number[]): Tensor {
  const e = a.engine;
  const out = e.empty(shape, a.dtype);
  if (out.size === 0) return out;
  const layout = collapseLayout({
    dims: [...shape],
    strides: [broadcastStrides(a.shape, shape), broadcastStrides(b.shape, shape)],
  });
  e.run({
    label: op,
    code: binaryCode(op, a.dtype, layout.dims.length),
    bindings: [a, b, out],
    params: [out.size, ...layoutParams(layout)],
    workgroups: grid1d(out.size, WG),
  });
  return out;
}

function binaryCode(op: BinaryOp, dtype: DType, nd: number): string {
  const idx = layoutCode("x", nd, ["ia", "ib"], "i");
  const sign = { add: "+", sub: "-", mul: "*" }[op];
  return `${dtype === "f16" ? "enable f16;" : ""}
@group(0) @binding(0) var<storage, read> a: array<${dtype}>;
@group(0) @binding(1) var<storage, read> b: array<${dtype}>;
@group(0) @binding(2) var<storage, read_write> out: array<${dtype}>;
struct P { n: u32, ${idx.fields} }
@group(0) @binding(3) var<uniform> p: P;
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * ${WG}u;
  if (i >= p.n) { return; }
  ${idx.code}
  out[i] = ${dtype}(f32(a[ia]) ${sign} f32(b[ib]));
}`;
}

// ------------------------------------------------------------------ same-shape elementwise maps

/** WGSL helpers of the activations (f32 math). */
const ACTIVATIONS_WGSL = `
const SQRT_2_OVER_PI = 0.7978845608028654;
const GELU_C = 0.044715;
const INV_SQRT_2 = 0.7071067811865476;
const INV_SQRT_2PI = 0.3989422804014327;
fn sigmoid(x: f32) -> f32 { return 1.0 / (1.0 + exp(-x)); }
fn silu(x: f32) -> f32 { return x * sigmoid(x); }
fn silu_grad(x: f32) -> f32 { let s = sigmoid(x); return s * (1.0 + x * (1.0 - s)); }
fn quick_gelu(x: f32) -> f32 { return x * sigmoid(1.702 * x); }
fn quick_gelu_grad(x: f32) -> f32 { let s = sigmoid(1.702 * x); return s * (1.0 + 1.702 * x * (1.0 - s)); }
// GELU (tanh): 0.5 x (1 + tanh(u)) = x sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3); with
// 0.5 (1 - tanh(u)^2) = 2 s (1 - s) the gradient needs no tanh, keeps its precision where 1 + tanh(u)
// is tiny, and cannot overflow.
fn gelu_tanh(x: f32) -> f32 { return x * sigmoid(2.0 * SQRT_2_OVER_PI * (x + GELU_C * x * x * x)); }
fn gelu_tanh_grad(x: f32) -> f32 {
  let s = sigmoid(2.0 * SQRT_2_OVER_PI * (x + GELU_C * x * x * x));
  return s + 2.0 * x * s * (1.0 - s) * SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_C * x * x);
}
// erfc(z) for z >= 0: Numerical Recipes' Chebyshev fit "erfcc", relative error < 1.2e-7 everywhere
// (unlike 1 - erf, it stays precise in the tail).
fn erfc_pos(z: f32) -> f32 {
  let t = 1.0 / (1.0 + 0.5 * z);
  return t * exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 +
    t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))));
}
// The standard normal CDF Phi(x) = (1 + erf(x / sqrt 2)) / 2 = erfc(-x / sqrt 2) / 2.
fn normal_cdf(x: f32) -> f32 {
  let c = 0.5 * erfc_pos(abs(x) * INV_SQRT_2);
  return select(1.0 - c, c, x < 0.0);
}
fn gelu_erf(x: f32) -> f32 { return x * normal_cdf(x); }
fn gelu_erf_grad(x: f32) -> f32 { return normal_cdf(x) + x * INV_SQRT_2PI * exp(-0.5 * x * x); }
`;

/**
 * Runs `body` for every element of the same-size `inputs`: it reads f32 values x0, x1, ... and must
 * define f32 values y0, y1, ... (one per output dtype, may use `p.s` = `s` and the activation helpers).
 * Returns the outputs, of inputs[0]'s shape. Not recorded.
 */
function map(label: string, inputs: Tensor[], outDtypes: DType[], body: string, s = 0): Tensor[] {
  const e = inputs[0].engine;
  const n = inputs[0].size;
  const outputs = outDtypes.map((d) => e.empty(inputs[0].shape, d));
  if (n === 0) return outputs;
  const all = [...inputs, ...outputs];
  const decls = all.map((t, j) => {
    const access = j < inputs.length ? "read" : "read_write";
    const name = j < inputs.length ? `in${j}` : `out${j - inputs.length}`;
    return `@group(0) @binding(${j}) var<storage, ${access}> ${name}: array<${t.dtype}>;`;
  });
  const code = `${all.some((t) => t.dtype === "f16") ? "enable f16;" : ""}
${decls.join("\n")}
struct P { n: u32, s: f32 }
@group(0) @binding(${all.length}) var<uniform> p: P;
${ACTIVATIONS_WGSL}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * ${WG}u;
  if (i >= p.n) { return; }
  ${inputs.map((_, j) => `let x${j} = f32(in${j}[i]);`).join(" ")}
  ${body}
  ${outputs.map((t, j) => `out${j}[i] = ${t.dtype}(y${j});`).join(" ")}
}`;
  e.run({ label, code, bindings: all, params: [n, f32Bits(s)], workgroups: grid1d(n, WG) });
  return outputs;
}

function scaleKernel(x: Tensor, s: number): Tensor {
  return map("scale", [x], [x.dtype], "let y0 = x0 * p.s;", s)[0];
}

function checkFloat(x: Tensor, label: string): void {
  if (!isFloat(x.dtype)) throw new Error(`${label}: ${x} is not f32 or f16`);
}

/** x * s. Differentiable. */
export function scale(x: Tensor, s: number): Tensor {
  checkFloat(x, "scale");
  return record(scaleKernel(x, s), [x], (g) => [scaleKernel(g, s)]);
}

/** x + s. Differentiable. */
export function addScalar(x: Tensor, s: number): Tensor {
  checkFloat(x, "addScalar");
  const [y] = map("add_scalar", [x], [x.dtype], "let y0 = x0 + p.s;", s);
  return record(y, [x], (g) => [g]);
}

/** An activation y = f(x) with f and f' named by WGSL helpers in ACTIVATIONS_WGSL. */
function activation(fn: string, x: Tensor): Tensor {
  checkFloat(x, fn);
  const [y] = map(fn, [x], [x.dtype], `let y0 = ${fn}(x0);`);
  return record(y, [x], (g) => map(`${fn}_grad`, [x, g], [x.dtype], `let y0 = x1 * ${fn}_grad(x0);`));
}

/**
 * GELU: with `approximate` "none" the exact x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)) (erf from a
 * Chebyshev fit, relative error ~1e-7), with "tanh" the approximation
 * 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). Differentiable.
 */
export function gelu(x: Tensor, approximate: "tanh" | "none"): Tensor {
  return activation(approximate === "tanh" ? "gelu_tanh" : "gelu_erf", x);
}

/** Quick GELU as in CLIP: x * sigmoid(1.702 x). Differentiable. */
export function quickGelu(x: Tensor): Tensor {
  return activation("quick_gelu", x);
}

/** SiLU (swish): x * sigmoid(x). Differentiable. */
export function silu(x: Tensor): Tensor {
  return activation("silu", x);
}

/**
 * SwiGLU, fused: silu(gate) * up, elementwise on same-shape tensors (e.g. [B,T,M]). Differentiable in
 * both inputs.
 */
export function swiglu(gate: Tensor, up: Tensor): Tensor {
  if (gate.dtype !== up.dtype || !isFloat(gate.dtype) || gate.shape.join() !== up.shape.join()) {
    throw new Error(`swiglu: gate and up must have the same shape and float dtype, got ${gate} and ${up}`);
  }
  const [y] = map("swiglu", [gate, up], [gate.dtype], "let y0 = silu(x0) * x1;");
  return record(y, [gate, up], (g, needs) => {
    // x0 = gate, x1 = up, x2 = g
    const terms: string[] = [];
    if (needs[0]) terms.push("x2 * x1 * silu_grad(x0)");
    if (needs[1]) terms.push("x2 * silu(x0)");
    const body = terms.map((t, j) => `let y${j} = ${t};`).join(" ");
    const grads = map("swiglu_grad", [gate, up, g], terms.map(() => gate.dtype), body);
    return [needs[0] ? grads[0] : null, needs[1] ? grads.at(-1)! : null];
  });
}

/**
 * x converted to `dtype` (f32 <-> f16; f16 rounds to nearest). The gradient is cast back to x's dtype.
 * Casting to x's own dtype returns a view of x.
 */
export function cast(x: Tensor, dtype: DType): Tensor {
  if (!isFloat(x.dtype) || !isFloat(dtype)) throw new Error(`cast: ${x} to ${dtype}: only f32 <-> f16`);
  if (dtype === x.dtype) return reshape(x, x.shape);
  const [y] = map("cast", [x], [dtype], "let y0 = x0;");
  return record(y, [x], (g) => map("cast", [g], [x.dtype], "let y0 = x0;"));
}
