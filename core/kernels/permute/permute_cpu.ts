/**
 * CPU reference of permute: out[j0, j1, ...] = x[i] where out's axis k is x's axis perm[k].
 * @module
 */

/** The shape after permuting `shape` by `perm`. */
export function permutedShape(shape: readonly number[], perm: readonly number[]): number[] {
  return perm.map((p) => shape[p]);
}

/** The inverse permutation (the permute that undoes `perm`). */
export function inversePerm(perm: readonly number[]): number[] {
  const inv = new Array<number>(perm.length);
  perm.forEach((p, k) => inv[p] = k);
  return inv;
}

/** Permutes the axes of a row-major array `x` of `shape`. */
export function permuteCpu(
  x: ArrayLike<number>,
  shape: readonly number[],
  perm: readonly number[],
): Float64Array {
  const outShape = permutedShape(shape, perm);
  const n = x.length;
  const inStrides = stridesOf(shape);
  const out = new Float64Array(n);
  const idx = new Array<number>(shape.length).fill(0); // index into out, row-major
  for (let o = 0; o < n; o++) {
    let src = 0;
    for (let k = 0; k < perm.length; k++) src += idx[k] * inStrides[perm[k]];
    out[o] = x[src];
    for (let k = outShape.length - 1; k >= 0; k--) {
      if (++idx[k] < outShape[k]) break;
      idx[k] = 0;
    }
  }
  return out;
}

/** Backward of permute: the gradient permuted back by the inverse permutation. */
export function permuteBackwardCpu(
  g: ArrayLike<number>,
  shape: readonly number[],
  perm: readonly number[],
): Float64Array {
  return permuteCpu(g, permutedShape(shape, perm), inversePerm(perm));
}

/** Row-major strides of a shape. */
export function stridesOf(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let k = shape.length - 1; k >= 0; k--) {
    s[k] = acc;
    acc *= shape[k];
  }
  return s;
}
