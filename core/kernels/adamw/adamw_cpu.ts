/**
 * CPU reference of one AdamW step (decoupled weight decay, bias-corrected moments), the spec the
 * fused GPU kernel is tested against. Same update as PyTorch's `torch.optim.AdamW`.
 * @module
 */

/** AdamW's hyperparameters. */
export interface AdamWHyper {
  /** Learning rate. */
  lr: number;
  /** Decay of the first moment (mean of the gradient). */
  beta1: number;
  /** Decay of the second moment (mean of the squared gradient). */
  beta2: number;
  /** Added to the root of the second moment. */
  eps: number;
  /** Decoupled weight decay: p -= lr * weightDecay * p each step. */
  weightDecay: number;
}

/**
 * Step number `t` (1 for the first) of AdamW on one parameter, in place on the parameter `p` and its
 * moments `m`, `v` (all [n]) given the gradient `g` [n]. Arithmetic is f64; the arrays' types decide
 * where values are rounded.
 */
export function adamwStepCpu(
  p: Float32Array | Float64Array,
  g: ArrayLike<number>,
  m: Float32Array | Float64Array,
  v: Float32Array | Float64Array,
  t: number,
  h: AdamWHyper,
): void {
  const bc1 = 1 - h.beta1 ** t, bc2 = 1 - h.beta2 ** t;
  for (let i = 0; i < p.length; i++) {
    let w = p[i];
    w -= h.lr * h.weightDecay * w;
    m[i] = h.beta1 * m[i] + (1 - h.beta1) * g[i];
    v[i] = h.beta2 * v[i] + (1 - h.beta2) * g[i] * g[i];
    w -= h.lr * (m[i] / bc1) / (Math.sqrt(v[i] / bc2) + h.eps);
    p[i] = w;
  }
}
