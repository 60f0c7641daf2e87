/**
 * CPU reference of layer norm over the last axis: the readable spec the GPU kernels are tested
 * against. Math in f64.
 * @module
 */

/** A host array the CPU references read. */
export type Floats = Float32Array | Float64Array;

/**
 * Per row r of x [R, C]: mean[r] = mean_c x, rstd[r] = 1 / sqrt(var_c x + eps) (biased variance),
 * y[r, c] = (x[r, c] - mean[r]) * rstd[r] * w[c] + b[c]. w, b: [C]; b may be null (no bias).
 */
export function layerNormForwardCpu(
  x: Floats,
  w: Floats,
  b: Floats | null,
  C: number,
  eps: number,
): { y: Float64Array; mean: Float64Array; rstd: Float64Array } {
  const R = x.length / C;
  const y = new Float64Array(x.length), mean = new Float64Array(R), rstd = new Float64Array(R);
  for (let r = 0; r < R; r++) {
    const row = r * C;
    let m = 0;
    for (let c = 0; c < C; c++) m += x[row + c];
    m /= C;
    let v = 0;
    for (let c = 0; c < C; c++) v += (x[row + c] - m) ** 2;
    const s = 1 / Math.sqrt(v / C + eps);
    for (let c = 0; c < C; c++) y[row + c] = (x[row + c] - m) * s * w[c] + (b ? b[c] : 0);
    mean[r] = m;
    rstd[r] = s;
  }
  return { y, mean, rstd };
}

/**
 * Layer norm backward, given the output gradient g [R, C]. With xhat = (x - mean) * rstd and
 * dxhat = g * w: dx = rstd * (dxhat - mean_c dxhat - xhat * mean_c(dxhat * xhat)),
 * dw[c] = sum_r g[r, c] * xhat[r, c], db[c] = sum_r g[r, c].
 */
export function layerNormBackwardCpu(
  x: Floats,
  w: Floats,
  g: Floats,
  C: number,
  eps: number,
): { dx: Float64Array; dw: Float64Array; db: Float64Array } {
  const { mean, rstd } = layerNormForwardCpu(x, w, null, C, eps);
  const dx = new Float64Array(x.length), dw = new Float64Array(C), db = new Float64Array(C);
  for (let r = 0; r < x.length / C; r++) {
    const row = r * C;
    const xhat = (c: number) => (x[row + c] - mean[r]) * rstd[r];
    let a = 0, b = 0;
    for (let c = 0; c < C; c++) {
      a += g[row + c] * w[c];
      b += g[row + c] * w[c] * xhat(c);
    }
    a /= C;
    b /= C;
    for (let c = 0; c < C; c++) {
      dx[row + c] = rstd[r] * (g[row + c] * w[c] - a - xhat(c) * b);
      dw[c] += g[row + c] * xhat(c);
      db[c] += g[row + c];
    }
  }
  return { dx, dw, db };
}
