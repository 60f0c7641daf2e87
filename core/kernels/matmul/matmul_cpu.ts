/**
 * CPU reference of the matmul op: the readable spec that the GPU kernels are tested against.
 *
 * Storage layouts (row-major, batch outermost):
 *   a: [batch, M, K], or [batch, K, M] with `transA`
 *   b: [batch, K, N], or [batch, N, K] with `transB`; one matrix shared by every batch with `broadcastB`
 *   bias: [N]; out: [batch, M, N]
 * and out[z, m, n] = bias[n] + sum_k A(z, m, k) * B(z, k, n).
 * @module
 */

/** Shape of a (batched) matmul. */
export interface MatmulDims {
  /** Number of matrices in the batch (default 1). */
  batch?: number;
  /** Rows of the output. */
  M: number;
  /** Columns of the output. */
  N: number;
  /** The contracted dimension. */
  K: number;
  /** `a` is stored [batch, K, M] instead of [batch, M, K]. */
  transA?: boolean;
  /** `b` is stored [batch, N, K] instead of [batch, K, N]. */
  transB?: boolean;
  /** `b` is one matrix shared by the whole batch. */
  broadcastB?: boolean;
}

/** Gradients of {@linkcode matmulCpu}'s inputs, each in its input's storage layout. */
export interface MatmulGradsCpu {
  /** d loss / d a, shaped like `a`. */
  da: Float64Array;
  /** d loss / d b, shaped like `b` (summed over the batch when `b` was broadcast). */
  db: Float64Array;
  /** d loss / d bias [N]. */
  dbias: Float64Array;
}

/** Index into `a` of A(z, m, k). */
function indexA(d: MatmulDims, z: number, m: number, k: number): number {
  return z * d.M * d.K + (d.transA ? k * d.M + m : m * d.K + k);
}

/** Index into `b` of B(z, k, n). */
function indexB(d: MatmulDims, z: number, k: number, n: number): number {
  const zb = d.broadcastB ? 0 : z;
  return zb * d.K * d.N + (d.transB ? n * d.K + k : k * d.N + n);
}

/** out[z, m, n] = bias[n] + sum_k A(z, m, k) B(z, k, n), in f64 (no bias when `bias` is omitted). */
export function matmulCpu(
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  d: MatmulDims,
  bias?: ArrayLike<number> | null,
): Float64Array {
  const { batch = 1, M, N, K } = d;
  const out = new Float64Array(batch * M * N);
  for (let z = 0; z < batch; z++) {
    for (let m = 0; m < M; m++) {
      for (let n = 0; n < N; n++) {
        let s = bias ? bias[n] : 0;
        for (let k = 0; k < K; k++) s += a[indexA(d, z, m, k)] * b[indexB(d, z, k, n)];
        out[(z * M + m) * N + n] = s;
      }
    }
  }
  return out;
}

/**
 * Backward of {@linkcode matmulCpu} given g = d loss / d out [batch, M, N]:
 * dA(z, m, k) = sum_n g[z, m, n] B(z, k, n); dB(z, k, n) = sum_m A(z, m, k) g[z, m, n] (also summed
 * over z when `b` is broadcast); dbias[n] = sum_{z, m} g[z, m, n].
 */
export function matmulBackwardCpu(
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  g: ArrayLike<number>,
  d: MatmulDims,
): MatmulGradsCpu {
  const { batch = 1, M, N, K } = d;
  const da = new Float64Array(batch * M * K);
  const db = new Float64Array((d.broadcastB ? 1 : batch) * K * N);
  const dbias = new Float64Array(N);
  for (let z = 0; z < batch; z++) {
    for (let m = 0; m < M; m++) {
      for (let n = 0; n < N; n++) {
        const gv = g[(z * M + m) * N + n];
        dbias[n] += gv;
        for (let k = 0; k < K; k++) {
          da[indexA(d, z, m, k)] += gv * b[indexB(d, z, k, n)];
          db[indexB(d, z, k, n)] += gv * a[indexA(d, z, m, k)];
        }
      }
    }
  }
  return { da, db, dbias };
}
