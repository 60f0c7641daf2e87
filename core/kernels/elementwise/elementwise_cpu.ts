/**
 * CPU reference of the elementwise ops (the spec the GPU kernels are tested against), in f64:
 * broadcasting add / sub / mul, scale, addScalar, GELU (tanh approximation and exact erf), quick GELU,
 * SiLU, SwiGLU and casts, each with its backward. Values are row-major arrays, shapes passed alongside.
 * @module
 */

import { broadcastToCpu, sumToCpu } from "../reduce/reduce_cpu.ts";

/** A broadcasting binary op. */
export type BinaryOp = "add" | "sub" | "mul";

/**
 * The numpy broadcast of two shapes: aligned at the trailing dims, each pair equal or one of them 1.
 * Throws, naming both shapes, when they do not broadcast.
 */
export function broadcastShape(a: readonly number[], b: readonly number[], label = "broadcast"): number[] {
  const n = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let k = 0; k < n; k++) {
    const da = a[a.length - n + k] ?? 1, db = b[b.length - n + k] ?? 1;
    if (da !== db && da !== 1 && db !== 1) {
      throw new Error(`${label}: shapes [${a}] and [${b}] do not broadcast`);
    }
    out.push(da === 1 ? db : da);
  }
  return out;
}

/** `a op b` with broadcasting; the result has shape broadcastShape(aShape, bShape). */
export function binaryCpu(
  op: BinaryOp,
  a: ArrayLike<number>,
  aShape: readonly number[],
  b: ArrayLike<number>,
  bShape: readonly number[],
): Float64Array {
  const shape = broadcastShape(aShape, bShape);
  const A = broadcastToCpu(a, aShape, shape), B = broadcastToCpu(b, bShape, shape);
  return A.map((x, i) => (op === "add" ? x + B[i] : op === "sub" ? x - B[i] : x * B[i]));
}

/**
 * Gradients of {@linkcode binaryCpu} w.r.t. a and b given the gradient `g` of its result: the
 * elementwise gradients summed over the dims each input was broadcast along.
 */
export function binaryBackwardCpu(
  op: BinaryOp,
  a: ArrayLike<number>,
  aShape: readonly number[],
  b: ArrayLike<number>,
  bShape: readonly number[],
  g: ArrayLike<number>,
): { da: Float64Array; db: Float64Array } {
  const shape = broadcastShape(aShape, bShape);
  const A = broadcastToCpu(a, aShape, shape), B = broadcastToCpu(b, bShape, shape);
  const gA = A.map((_, i) => (op === "mul" ? g[i] * B[i] : g[i]));
  const gB = B.map((_, i) => (op === "mul" ? g[i] * A[i] : op === "sub" ? -g[i] : g[i]));
  return { da: sumToCpu(gA, shape, aShape), db: sumToCpu(gB, shape, bShape) };
}

/** x * s. (Backward: scaleCpu(g, s).) */
export function scaleCpu(x: ArrayLike<number>, s: number): Float64Array {
  return Float64Array.from(x, (v) => v * s);
}

/** x + s. (Backward: the gradient passes unchanged.) */
export function addScalarCpu(x: ArrayLike<number>, s: number): Float64Array {
  return Float64Array.from(x, (v) => v + s);
}

// ------------------------------------------------------------------ erf

/**
 * erfc(x) to about 1e-15 relative: the Maclaurin series of erf for |x| < 2.5, the Laplace continued
 * fraction erfc(x) = exp(-x^2)/sqrt(pi) / (x + (1/2)/(x + 1/(x + (3/2)/(x + ...)))) beyond.
 */
export function erfc(x: number): number {
  if (x < 0) return 2 - erfc(-x);
  if (x < 2.5) return 1 - erf(x);
  let f = x;
  for (let n = 120; n >= 1; n--) f = x + n / 2 / f;
  return Math.exp(-x * x) / (Math.sqrt(Math.PI) * f);
}

/** The error function erf(x) = 2/sqrt(pi) * integral_0^x exp(-t^2) dt, to about 1e-15. */
export function erf(x: number): number {
  if (Math.abs(x) >= 2.5) return Math.sign(x) * (1 - erfc(Math.abs(x)));
  // erf(x) = 2/sqrt(pi) * sum_n (-1)^n x^(2n+1) / (n! (2n+1))
  let term = x, total = x;
  for (let n = 1; n < 100; n++) {
    term *= -x * x / n;
    const add = term / (2 * n + 1);
    total += add;
    if (Math.abs(add) < 1e-17 * Math.abs(total)) break;
  }
  return (2 / Math.sqrt(Math.PI)) * total;
}

/** The standard normal CDF Phi(x) = erfc(-x / sqrt 2) / 2 (via erfc, so the left tail stays precise). */
export function normalCdf(x: number): number {
  return 0.5 * erfc(-x / Math.SQRT2);
}

// ------------------------------------------------------------------ activations

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);
const GELU_C = 0.044715;

/**
 * GELU: "none" is exact, x * Phi(x); "tanh" is the approximation
 * 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
 */
export function geluCpu(x: ArrayLike<number>, approximate: "tanh" | "none"): Float64Array {
  return Float64Array.from(x, (v) => {
    if (approximate === "none") return v * normalCdf(v);
    return 0.5 * v * (1 + Math.tanh(SQRT_2_OVER_PI * (v + GELU_C * v ** 3)));
  });
}

/** Gradient of {@linkcode geluCpu} w.r.t. x, given the gradient `g` of its result. */
export function geluBackwardCpu(
  x: ArrayLike<number>,
  g: ArrayLike<number>,
  approximate: "tanh" | "none",
): Float64Array {
  return Float64Array.from(x, (v, i) => {
    if (approximate === "none") {
      return g[i] * (normalCdf(v) + v * Math.exp(-0.5 * v * v) / Math.sqrt(2 * Math.PI));
    }
    const t = Math.tanh(SQRT_2_OVER_PI * (v + GELU_C * v ** 3));
    return g[i] * (0.5 * (1 + t) + 0.5 * v * (1 - t * t) * SQRT_2_OVER_PI * (1 + 3 * GELU_C * v * v));
  });
}

/** The logistic sigmoid 1 / (1 + exp(-x)). */
export function sigmoid(x: number): number {
  return 1 / (1 + Math.exp(-x));
}

/** Quick GELU (CLIP): x * sigmoid(1.702 x). */
export function quickGeluCpu(x: ArrayLike<number>): Float64Array {
  return Float64Array.from(x, (v) => v * sigmoid(1.702 * v));
}

/** Gradient of {@linkcode quickGeluCpu}: g * (s + 1.702 x s (1 - s)), s = sigmoid(1.702 x). */
export function quickGeluBackwardCpu(x: ArrayLike<number>, g: ArrayLike<number>): Float64Array {
  return Float64Array.from(x, (v, i) => {
    const s = sigmoid(1.702 * v);
    return g[i] * s * (1 + 1.702 * v * (1 - s));
  });
}

/** SiLU (swish): x * sigmoid(x). */
export function siluCpu(x: ArrayLike<number>): Float64Array {
  return Float64Array.from(x, (v) => v * sigmoid(v));
}

/** Gradient of {@linkcode siluCpu}: g * s (1 + x (1 - s)), s = sigmoid(x). */
export function siluBackwardCpu(x: ArrayLike<number>, g: ArrayLike<number>): Float64Array {
  return Float64Array.from(x, (v, i) => {
    const s = sigmoid(v);
    return g[i] * s * (1 + v * (1 - s));
  });
}

/** SwiGLU: silu(gate) * up, elementwise (same shapes). */
export function swigluCpu(gate: ArrayLike<number>, up: ArrayLike<number>): Float64Array {
  const s = siluCpu(gate);
  return s.map((v, i) => v * up[i]);
}

/** Gradients of {@linkcode swigluCpu} w.r.t. gate and up, given the gradient `g` of its result. */
export function swigluBackwardCpu(
  gate: ArrayLike<number>,
  up: ArrayLike<number>,
  g: ArrayLike<number>,
): { dgate: Float64Array; dup: Float64Array } {
  const s = siluCpu(gate);
  const gu = Float64Array.from(g, (v, i) => v * up[i]);
  return { dgate: siluBackwardCpu(gate, gu), dup: s.map((v, i) => v * g[i]) };
}
