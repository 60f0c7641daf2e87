/**
 * CPU reference of RMS norm (LLaMA style) over the last axis: the readable spec the GPU kernels are
 * tested against. Math in f64.
 * @module
 */

/** A host array the CPU references read. */
export type Floats = Float32Array | Float64Array;

/**
 * Per row r of x [R, C]: rrms[r] = 1 / sqrt(mean_c x[r, c]^2 + eps), y[r, c] = x[r, c] * rrms[r] * w[c].
 * w: [C].
 */
export function rmsNormForwardCpu(
  x: Floats,
  w: Floats,
  C: number,
  eps: number,
): { y: Float64Array; rrms: Float64Array } {
  const R = x.length / C;
  const y = new Float64Array(x.length), rrms = new Float64Array(R);
  for (let r = 0; r < R; r++) {
    const row = r * C;
    let ss = 0;
    for (let c = 0; c < C; c++) ss += x[row + c] * x[row + c];
    rrms[r] = 1 / Math.sqrt(ss / C + eps);
    for (let c = 0; c < C; c++) y[row + c] = x[row + c] * rrms[r] * w[c];
  }
  return { y, rrms };
}

/**
 * RMS norm backward, given the output gradient g [R, C]. With dy = g * w:
 * dx = rrms * (dy - x * rrms^2 * mean_c(dy * x)), dw[c] = sum_r g[r, c] * x[r, c] * rrms[r].
 */
export function rmsNormBackwardCpu(
  x: Floats,
  w: Floats,
  g: Floats,
  C: number,
  eps: number,
): { dx: Float64Array; dw: Float64Array } {
  const { rrms } = rmsNormForwardCpu(x, w, C, eps);
  const dx = new Float64Array(x.length), dw = new Float64Array(C);
  for (let r = 0; r < x.length / C; r++) {
    const row = r * C, s = rrms[r];
    let d = 0;
    for (let c = 0; c < C; c++) d += g[row + c] * w[c] * x[row + c];
    d /= C;
    for (let c = 0; c < C; c++) {
      dx[row + c] = s * (g[row + c] * w[c] - x[row + c] * s * s * d);
      dw[c] += g[row + c] * x[row + c] * s;
    }
  }
  return { dx, dw };
}
