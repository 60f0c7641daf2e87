/**
 * CPU reference of residual quantization (RQ), in f64: the readable spec that the GPU kernels of
 * `rq.ts` are tested against. Arrays are flat and row-major, with their sizes passed beside them.
 *
 * Depth d = 0..D-1: `k_d = argmin_k ||r_d - C_d[k]||^2` (plain squared L2; ties go to the lowest
 * index), `r_{d+1} = r_d - C_d[k_d]`, `r_0 = x`.
 * @module
 */

/** The sizes of a features matrix and its codebooks. */
export interface RqShape {
  /** Rows R of the features. */
  R: number;
  /** Width Dc of a feature and of a code vector. */
  Dc: number;
  /** Codes K per codebook. */
  K: number;
  /** Codebooks stored: 1 (one shared by every depth) or at least `depths`. */
  books: number;
  /** Depths D to quantize. */
  depths: number;
}

/** What {@linkcode rqEncodeCpu} computes. */
export interface RqCpuResult {
  /** The codes k_d, [R, D]. */
  codes: Int32Array;
  /** The best squared distance at each depth, [R, D]. */
  best: Float64Array;
  /**
   * The second-best minus the best squared distance at each depth, [R, D] (Infinity when K = 1): how
   * far each choice is from a tie. A GPU computing in f32 can only be expected to agree where this
   * margin is well above its rounding error.
   */
  margin: Float64Array;
  /** The final residual r_D, [R, Dc]. */
  residual: Float64Array;
}

/** Which stored codebook depth `d` uses: 0 for a shared codebook, else d. */
export function bookOf(d: number, books: number): number {
  return books === 1 ? 0 : d;
}

/**
 * Residual quantization of x [R, Dc] with codebooks [books, K, Dc]: the codes, the distances, the
 * near-tie margins and the final residual, all in f64.
 */
export function rqEncodeCpu(x: ArrayLike<number>, codebooks: ArrayLike<number>, s: RqShape): RqCpuResult {
  const { R, Dc, K, books, depths: D } = s;
  const codes = new Int32Array(R * D);
  const best = new Float64Array(R * D);
  const margin = new Float64Array(R * D);
  const residual = Float64Array.from(x);
  for (let r = 0; r < R; r++) {
    const res = residual.subarray(r * Dc, (r + 1) * Dc);
    for (let d = 0; d < D; d++) {
      const base = bookOf(d, books) * K * Dc;
      let b1 = Infinity, b2 = Infinity, k1 = -1;
      for (let k = 0; k < K; k++) {
        let dist = 0;
        for (let c = 0; c < Dc; c++) {
          const v = res[c] - codebooks[base + k * Dc + c];
          dist += v * v;
        }
        if (dist < b1) {
          b2 = b1;
          b1 = dist;
          k1 = k;
        } else if (dist < b2) {
          b2 = dist;
        }
      }
      codes[r * D + d] = k1;
      best[r * D + d] = b1;
      margin[r * D + d] = b2 - b1;
      for (let c = 0; c < Dc; c++) res[c] -= codebooks[base + k1 * Dc + c];
    }
  }
  return { codes, best, margin, residual };
}

/**
 * The reconstruction sum_d C_d[k_d] [R, Dc] of codes [R, D] (the first `depths` of each row; codes
 * outside [0, K) contribute nothing).
 */
export function rqDecodeCpu(
  codes: ArrayLike<number>,
  codebooks: ArrayLike<number>,
  s: { R: number; Dc: number; K: number; books: number; D: number; depths: number },
): Float64Array {
  const { R, Dc, K, books, D, depths } = s;
  const out = new Float64Array(R * Dc);
  for (let r = 0; r < R; r++) {
    for (let d = 0; d < depths; d++) {
      const k = codes[r * D + d];
      if (k < 0 || k >= K) continue;
      const base = (bookOf(d, books) * K + k) * Dc;
      for (let c = 0; c < Dc; c++) out[r * Dc + c] += codebooks[base + c];
    }
  }
  return out;
}
