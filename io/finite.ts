/**
 * Finding NaN and infinities in weights as they load: one pass over a tensor's f32 bits (F16, BF16
 * and F64 tensors are checked after widening to f32, which keeps their NaN and infinities).
 * @module
 */

/** The index of the first NaN or ±Infinity in `x`, or -1 when every value is finite. */
export function firstNonFinite(x: Float32Array): number {
  const bits = new Uint32Array(x.buffer, x.byteOffset, x.length);
  for (let i = 0; i < bits.length; i++) {
    if ((bits[i] & 0x7f800000) === 0x7f800000) return i; // exponent all ones: Inf or NaN
  }
  return -1;
}

/** Where a checked tensor comes from, for the error. */
export interface FiniteCheckSource {
  /** The file it was read from. */
  file: string;
  /** Its name in the file. */
  name: string;
  /** Its stored dtype. */
  dtype: string;
  /** Its shape. */
  shape: readonly number[];
}

/**
 * Throws when `x` holds a NaN or an infinity: the error names the file, the tensor, the value and its
 * first index, then `fix` (what the caller can do, e.g. the option that allows it).
 */
export function assertFinite(x: Float32Array, src: FiniteCheckSource, fix: string): void {
  const i = firstNonFinite(x);
  if (i < 0) return;
  throw new Error(
    `${src.file}: tensor "${src.name}" (${src.dtype} [${src.shape}]) holds ${x[i]} at index ${i} ` +
      `(of ${x.length}): the weights are corrupt or diverged; ${fix}`,
  );
}
