/**
 * Splitting a count into MPI-sized pieces: MPI's counts are C `int`s, so a buffer of more than 2^31 - 1
 * elements goes through several calls.
 * @module
 */

/** The largest count one MPI call takes: `INT_MAX`. */
export const MPI_MAX_COUNT = 2 ** 31 - 1;

/**
 * The pieces `[start, count]` covering `0 .. length`, each of at most `maxCount` elements, in order. Empty
 * for `length` 0.
 */
export function chunks(length: number, maxCount: number = MPI_MAX_COUNT): [start: number, count: number][] {
  if (!Number.isSafeInteger(length) || length < 0) throw new RangeError(`chunks: bad length ${length}`);
  if (!Number.isSafeInteger(maxCount) || maxCount < 1 || maxCount > MPI_MAX_COUNT) {
    throw new RangeError(`chunks: maxCount must be an integer in 1 .. ${MPI_MAX_COUNT}, got ${maxCount}`);
  }
  const out: [number, number][] = [];
  for (let start = 0; start < length; start += maxCount) {
    out.push([start, Math.min(maxCount, length - start)]);
  }
  return out;
}
