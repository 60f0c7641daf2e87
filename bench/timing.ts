/**
 * Wall-clock timing of GPU work: encode `reps` runs, wait once, divide; the median of several trials.
 * One wait costs ~11 ms in Deno, so `reps` should make a trial last well over that.
 * @module
 */

import type { Engine } from "../core/engine.ts";

/**
 * Median milliseconds per call of `fn` (run inside a tidy scope so intermediates are freed): a warm-up
 * (compiles pipelines, fills the pool), then 5 trials of enough calls to last ~0.3 s each.
 */
export async function medianMs(e: Engine, fn: () => unknown, trials = 5): Promise<number> {
  e.tidy(fn);
  await e.sync();
  let t0 = performance.now();
  e.tidy(fn);
  await e.sync();
  const reps = Math.max(2, Math.ceil(300 / (performance.now() - t0)));
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

/** One result line of `deno task bench -- --json`. */
export interface BenchRecord {
  op: string;
  shape: number[];
  dtype: string;
  median_ms: number;
  gflops?: number;
  gbps?: number;
  max_abs_err: number;
  ref_ms?: number;
  ref_impl?: string;
  /** GPU time over the reference's time (above 1: slower than the reference). */
  ratio_vs_ref?: number;
}

/**
 * Runs a PyTorch CPU reference script of this folder (default bench/ops_ref.py) with `args` and returns
 * its records by op and shape ("op BxNHx..."), or an empty map.
 */
export async function referenceTimings(
  script = "ops_ref.py",
  args: string[] = [],
): Promise<Map<string, { median_ms: number; impl: string }>> {
  const out = new Map<string, { median_ms: number; impl: string }>();
  try {
    const here = new URL(".", import.meta.url).pathname;
    const r = await new Deno.Command("/usr/bin/python3", {
      args: [here + script, ...args],
      stderr: "inherit",
    })
      .output();
    for (const line of new TextDecoder().decode(r.stdout).split("\n")) {
      if (!line.trim()) continue;
      const rec = JSON.parse(line);
      if (rec.error) {
        console.error(`reference timings unavailable: ${rec.error}`);
        continue;
      }
      out.set(`${rec.op} ${rec.shape.join("x")}`, { median_ms: rec.median_ms, impl: rec.impl });
    }
  } catch (err) {
    console.error(`reference timings unavailable (${(err as Error).message}); apt-get install python3-torch`);
  }
  return out;
}
