/**
 * An independent bfloat16 rounding for tests: picks the nearer of the two bf16 neighbours of `x` in
 * f64 arithmetic (ties to the even mantissa), without the bit tricks of io/float_bits.ts.
 * @module
 */

/** `x` (an f32 value) rounded to the nearest bfloat16, ties to even, as a number. */
export function bf16Reference(x: number): number {
  if (!Number.isFinite(x) || x === 0) return x;
  const a = Math.abs(x);
  // bf16 keeps 8 significant bits: the spacing at |x| is 2^(exponent - 7); below 2^-126 it is 2^-133.
  const exp = Math.max(Math.floor(Math.log2(a)), -126);
  let ulp = 2 ** (exp - 7);
  if (2 ** exp > a) ulp /= 2; // log2 rounding guard
  const lo = Math.floor(a / ulp) * ulp, hi = lo + ulp;
  let r: number;
  if (a - lo < hi - a) r = lo;
  else if (a - lo > hi - a) r = hi;
  else r = (Math.round(lo / ulp) % 2 === 0) ? lo : hi;
  if (r >= 2 ** 128) r = Infinity; // past the largest bf16 (same exponent range as f32)
  return Math.sign(x) * r;
}
