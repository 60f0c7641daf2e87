/**
 * CPU reference of the GPU normal generator: a counter-based hash, so element i depends only on
 * (seed, i) and the GPU can fill any tensor in parallel with the same values on every machine.
 * @module
 */

/** A 32-bit integer hash (PCG's output permutation over one LCG step). */
export function pcgHash(x: number): number {
  const state = (Math.imul(x >>> 0, 747796405) + 2891336453) >>> 0;
  const word = Math.imul(((state >>> ((state >>> 28) + 4)) ^ state) >>> 0, 277803737) >>> 0;
  return ((word >>> 22) ^ word) >>> 0;
}

/** Uniform in (0, 1] from the top 24 bits of the hash of (seed, counter), exact in f32. */
export function uniformAt(seed: number, counter: number): number {
  return ((pcgHash((pcgHash(seed) ^ counter) >>> 0) >>> 8) + 1) / 16777216;
}

/** `n` standard-normal values times `std` (Box-Muller on two hashed uniforms per element). */
export function randnHashCpu(n: number, seed: number, std = 1): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const u = uniformAt(seed, 2 * i), v = uniformAt(seed, 2 * i + 1);
    out[i] = std * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }
  return out;
}
