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

/** Options of {@linkcode fastestOf}. */
export interface FastestOfOptions extends MedianMsOptions {
  /**
   * A choice whose first timed call takes more than this many times the first timed call of the fastest
   * choice before it is timed by that call only (default 1.5): slow choices cost little time.
   */
  dropAbove?: number;
}

/**
 * Times each choice (its {@linkcode medianMs}) and returns the milliseconds per call by name and the
 * fastest's name; null when none ran. A choice that throws when first called is left out (e.g. a kernel
 * that cannot take the shape); choices slow at their first timed call are timed by it alone (see
 * `dropAbove`).
 */
export async function fastestOf(
  e: Engine,
  choices: { name: string; run: () => void }[],
  opts: FastestOfOptions = {},
): Promise<{ ms: Record<string, number>; best: string | null }> {
  const { dropAbove = 1.5, ...median } = opts;
  const ms: Record<string, number> = {};
  let best: { name: string; first: number } | null = null;
  for (const { name, run } of choices) {
    try {
      e.tidy(run); // compiles its pipelines
    } catch {
      continue;
    }
    await e.sync();
    const t0 = performance.now();
    e.tidy(run);
    await e.sync();
    const first = performance.now() - t0;
    ms[name] = best && first > dropAbove * best.first ? first : await medianMs(e, run, median);
    if (!best || ms[name] < ms[best.name]) best = { name, first };
  }
  return { ms, best: best?.name ?? null };
}

/**
 * A choice measured at one size (a sequence length, a product's rows) applies to calls up to this factor
 * away from it either way; further away, the built-in rules choose.
 */
export const TUNED_REACH = 4;

/** One measured choice as plain data (see {@linkcode MeasuredChoices.entries}). */
export interface MeasuredChoice<V> {
  /** The class of call it applies to. */
  class: string;
  /** The size it was measured at. */
  size: number;
  /** The fastest there. */
  choice: V;
}

/**
 * Choices measured at sizes, by class of call (what else a choice depends on, as a string): a call
 * gets the choice measured at the size nearest its own (by ratio) in its class, within
 * {@linkcode TUNED_REACH} times it.
 */
export class MeasuredChoices<V> {
  #byClass = new Map<string, { size: number; choice: V }[]>();

  /** Records `choice` for `cls` at `size`, replacing one recorded at that size. */
  set(cls: string, size: number, choice: V): void {
    const list = (this.#byClass.get(cls) ?? []).filter((m) => m.size !== size);
    this.#byClass.set(cls, [...list, { size, choice }]);
  }

  /** Every recorded choice, as plain data (JSON-serializable when the choices are). */
  entries(): MeasuredChoice<V>[] {
    return [...this.#byClass].flatMap(([cls, list]) =>
      list.map(({ size, choice }) => ({ class: cls, size, choice }))
    );
  }

  /** Whether a choice is recorded for `cls` at exactly `size`. */
  has(cls: string, size: number): boolean {
    return this.#byClass.get(cls)?.some((m) => m.size === size) ?? false;
  }

  /** The choice for a call of class `cls` and size `size`, if one was measured within reach. */
  nearest(cls: string, size: number): V | undefined {
    const list = this.#byClass.get(cls);
    if (!list) return undefined;
    const far = (s: number) => Math.abs(Math.log(s / size));
    const best = list.reduce((a, b) => far(b.size) < far(a.size) ? b : a);
    return far(best.size) <= Math.log(TUNED_REACH) ? best.choice : undefined;
  }
}
