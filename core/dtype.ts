/**
 * Element types a tensor can hold. `f16` is storage only (kernels accumulate in f32) and needs the
 * adapter's `shader-f16` feature; WGSL has no bf16, so bf16 weights convert on load.
 * @module
 */

/** The element type of a tensor. */
export type DType = "f32" | "f16" | "i32" | "u32";

/** Bytes per element of a dtype. */
export function bytesPerElement(dtype: DType): number {
  switch (dtype) {
    case "f32":
    case "i32":
    case "u32":
      return 4;
    case "f16":
      return 2;
  }
}

/** True for the floating-point dtypes (the ones autograd differentiates). */
export function isFloat(dtype: DType): boolean {
  return dtype === "f32" || dtype === "f16";
}

/** The typed array a dtype reads back as (f16 reads back widened to f32). */
export type HostArray = Float32Array | Int32Array | Uint32Array;

/** Rounds an f32 to the nearest f16 and returns its 16-bit pattern (round half to even). */
export function f32ToF16Bits(x: number): number {
  f32Scratch[0] = x;
  const b = u32Scratch[0];
  const sign = (b >>> 16) & 0x8000;
  const exp = (b >>> 23) & 0xff;
  let mant = b & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0); // inf / nan
  let e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00; // overflow -> inf
  if (e <= 0) {
    if (e < -10) return sign; // underflow -> signed zero
    mant |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    let m = mant >>> shift;
    const rest = mant & ((1 << shift) - 1);
    if (rest > half || (rest === half && (m & 1))) m++;
    return sign | m;
  }
  let m = mant >>> 13;
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && (m & 1))) {
    m++;
    if (m === 0x400) {
      m = 0;
      e++;
      if (e >= 0x1f) return sign | 0x7c00;
    }
  }
  return sign | (e << 10) | m;
}

/** Widens a 16-bit f16 pattern to a number. */
export function f16BitsToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/** Rounds every value of `x` to the nearest f16, in place, and returns it. */
export function roundToF16(x: Float32Array): Float32Array {
  for (let i = 0; i < x.length; i++) x[i] = f16BitsToF32(f32ToF16Bits(x[i]));
  return x;
}

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/** Bit pattern of an f32, for passing float parameters in a u32 parameter block. */
export function f32Bits(x: number): number {
  f32Scratch[0] = x;
  return u32Scratch[0];
}
