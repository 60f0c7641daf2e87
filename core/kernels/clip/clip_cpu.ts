/**
 * CPU reference of global-norm gradient clipping, the spec the GPU kernels are tested against.
 * @module
 */

/** sqrt of the sum of squares of every element of every array (f64). */
export function globalNormCpu(xs: ArrayLike<number>[]): number {
  let sum = 0;
  for (const x of xs) {
    for (let i = 0; i < x.length; i++) sum += x[i] * x[i];
  }
  return Math.sqrt(sum);
}

/**
 * Scales every gradient in place by min(1, maxNorm / (norm + 1e-6)), where norm is their global norm,
 * and returns that (pre-clip) norm. Same rule as PyTorch's `clip_grad_norm_`.
 */
export function clipGradNormCpu(grads: (Float32Array | Float64Array)[], maxNorm: number): number {
  const norm = globalNormCpu(grads);
  const scale = Math.min(1, maxNorm / (norm + 1e-6));
  for (const g of grads) {
    for (let i = 0; i < g.length; i++) g[i] *= scale;
  }
  return norm;
}
