/**
 * Conversions between f32 and the 16-bit float formats of checkpoints (IEEE f16 and bfloat16),
 * over whole arrays. Rounding is to nearest, ties to even, as PyTorch's `.to(torch.float16)` and
 * `.to(torch.bfloat16)` do.
 * @module
 */

import { f16BitsToF32, f32ToF16Bits } from "../core/dtype.ts";

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** Rounds an f32 to the nearest bfloat16 and returns its 16-bit pattern (NaN stays a quiet NaN). */
export function f32ToBf16Bits(x: number): number {
  f32[0] = x;
  const b = u32[0];
  if ((b & 0x7f800000) === 0x7f800000 && (b & 0x7fffff) !== 0) return ((b >>> 16) | 0x40) & 0xffff; // NaN
  const rounded = b + 0x7fff + ((b >>> 16) & 1); // ties to even; overflow rounds to inf
  return (rounded >>> 16) & 0xffff;
}

/** Widens a bfloat16 bit pattern to a number (exact: bf16 is the upper half of an f32). */
export function bf16BitsToF32(h: number): number {
  u32[0] = (h & 0xffff) << 16;
  return f32[0];
}

let f16Table: Float32Array | null = null;

/** Widens f16 bit patterns to f32 (a 64 Ki-entry lookup table, built on first use). */
export function f16ArrayToF32(bits: Uint16Array): Float32Array {
  if (!f16Table) {
    f16Table = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) f16Table[h] = f16BitsToF32(h);
  }
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = f16Table[bits[i]];
  return out;
}

/** Widens bf16 bit patterns to f32. */
export function bf16ArrayToF32(bits: Uint16Array): Float32Array {
  const out = new Uint32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = bits[i] << 16;
  return new Float32Array(out.buffer);
}

/** Rounds f32 values to f16 bit patterns (round half to even; overflow becomes infinity). */
export function f32ArrayToF16(x: Float32Array): Uint16Array {
  const out = new Uint16Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = f32ToF16Bits(x[i]);
  return out;
}

/** Rounds f32 values to bf16 bit patterns (round half to even). */
export function f32ArrayToBf16(x: Float32Array): Uint16Array {
  const out = new Uint16Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = f32ToBf16Bits(x[i]);
  return out;
}
