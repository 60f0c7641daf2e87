/**
 * CPU reference of softmax over the last axis: the readable spec the GPU kernels are tested against.
 * Math in f64.
 * @module
 */

/** A host array the CPU references read. */
export type Floats = Float32Array | Float64Array;

/**
 * y[r, c] = exp(x[r, c] - max_c x[r, :]) / sum_c' exp(x[r, c'] - max_c x[r, :]).
 * x: [R, C] flattened, returns y: [R, C].
 */
export function softmaxForwardCpu(x: Floats, C: number): Float64Array {
  const y = new Float64Array(x.length);
  for (let r = 0; r < x.length / C; r++) {
    const row = r * C;
    let m = -Infinity;
    for (let c = 0; c < C; c++) m = Math.max(m, x[row + c]);
    let s = 0;
    for (let c = 0; c < C; c++) s += Math.exp(x[row + c] - m);
    for (let c = 0; c < C; c++) y[row + c] = Math.exp(x[row + c] - m) / s;
  }
  return y;
}

/**
 * Softmax backward from the output: dx[r, c] = y[r, c] * (g[r, c] - sum_c' g[r, c'] * y[r, c']).
 * y, g: [R, C], returns dx: [R, C].
 */
export function softmaxBackwardCpu(y: Floats, g: Floats, C: number): Float64Array {
  const dx = new Float64Array(y.length);
  for (let r = 0; r < y.length / C; r++) {
    const row = r * C;
    let dot = 0;
    for (let c = 0; c < C; c++) dot += g[row + c] * y[row + c];
    for (let c = 0; c < C; c++) dx[row + c] = y[row + c] * (g[row + c] - dot);
  }
  return dx;
}
