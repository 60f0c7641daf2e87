/**
 * CPU reference of the embedding lookup: the readable spec that the GPU kernels are tested against.
 *
 * Shapes: weight [V, C], ids [N] (any shape, flattened), out [N, C].
 * An id outside [0, V) reads as a zero row and gets no gradient.
 * @module
 */

/** out[n, :] = weight[ids[n], :], or zeros where ids[n] is outside [0, V). Returns out [N, C]. */
export function embeddingCpu(
  weight: ArrayLike<number>,
  ids: ArrayLike<number>,
  V: number,
  C: number,
): Float64Array {
  const N = ids.length;
  const out = new Float64Array(N * C);
  for (let n = 0; n < N; n++) {
    const id = ids[n];
    if (id < 0 || id >= V) continue;
    for (let c = 0; c < C; c++) out[n * C + c] = weight[id * C + c];
  }
  return out;
}

/**
 * The weight gradient: dweight[v, :] = sum of dout[n, :] over the positions n with ids[n] = v
 * (zero for unused rows; out-of-range ids are skipped). dout [N, C] -> dweight [V, C].
 */
export function embeddingBackwardCpu(
  dout: ArrayLike<number>,
  ids: ArrayLike<number>,
  V: number,
  C: number,
): Float64Array {
  const dweight = new Float64Array(V * C);
  for (let n = 0; n < ids.length; n++) {
    const id = ids[n];
    if (id < 0 || id >= V) continue;
    for (let c = 0; c < C; c++) dweight[id * C + c] += dout[n * C + c];
  }
  return dweight;
}
