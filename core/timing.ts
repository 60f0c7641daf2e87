/**
 * Wall-clock timing of GPU work: encode several runs, wait once, divide; the median of several trials.
 * One wait costs ~11 ms in Deno, so each trial runs enough calls to last well over that.
 * @module
 */

import type { Engine } from "./engine.ts";

/** Options of {@linkcode medianMs}. */
export interface MedianMsOptions {
  /** Trials (default 5). */
  trials?: number;
  /** About how long each trial lasts, in ms (default 300): it runs that many calls' worth, at least 2. */
  trialMs?: number;
}

/**
 * Median milliseconds per call of `fn` (run inside a tidy scope so intermediates are freed): a warm-up
 * (compiles pipelines, fills the pool), one timed call that sets the calls per trial, then the trials.
 */
export async function medianMs(e: Engine, fn: () => unknown, opts: MedianMsOptions = {}): Promise<number> {
  const { trials = 5, trialMs = 300 } = opts;
  e.tidy(fn);
  await e.sync();
  let t0 = performance.now();
  e.tidy(fn);
  await e.sync();
  const reps = Math.max(2, Math.ceil(trialMs / (performance.now() - t0)));
  const times: number[] = [];
  for (let t = 0; t < trials; t++) {
    t0 = performance.now();
    for (let r = 0; r < reps; r++) e.tidy(fn);
    await e.sync();
    times.push((performance.now() - t0) / reps);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}
