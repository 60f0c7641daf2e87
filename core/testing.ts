/**
 * Helpers for kernel tests: a shared engine, seeded random data, closeness checks and finite
 * differences for checking CPU references' gradients.
 * @module
 */

import { Engine } from "./engine.ts";

import { randn } from "./random.ts";

export { randInt, randn, rng } from "./random.ts";

let shared: Promise<Engine> | null = null;

/**
 * The engine tests share (one per test worker). Fails, never skips, when no adapter exists. Its device
 * is destroyed when the worker unloads, so the driver's threads stop before the process exits.
 */
export function testEngine(): Promise<Engine> {
  if (!shared) {
    shared = Engine.create();
    shared.then((e) => globalThis.addEventListener("unload", () => e.destroy()), () => {});
  }
  return shared;
}

/**
 * Registers a GPU test twice on the shared engine: with subgroup operations where the device grants
 * them ("[subgroups]"), and with them turned off by {@linkcode Engine.setSubgroups} ("[no subgroups]").
 */
export function gpuTestSubgroups(name: string, fn: (e: Engine) => Promise<void> | void): void {
  for (const [tag, on] of [["subgroups", true], ["no subgroups", false]] as const) {
    Deno.test({
      name: `${name} [${tag}]`,
      sanitizeResources: false,
      sanitizeOps: false,
      fn: async () => {
        const e = await testEngine();
        const was = e.setSubgroups(on);
        try {
          await fn(e);
        } finally {
          e.setSubgroups(was);
          await settle(e);
        }
      },
    });
  }
}

/** Registers a GPU test (resource/op sanitizers off: the device lives across tests). */
export function gpuTest(name: string, fn: (e: Engine) => Promise<void> | void): void {
  Deno.test({
    name,
    sanitizeResources: false,
    sanitizeOps: false,
    fn: async () => {
      const e = await testEngine();
      try {
        await fn(e);
      } finally {
        await settle(e);
      }
    },
  });
}

/**
 * Submits what a test left pending and waits for the GPU to finish it (without checking errors), so no
 * work runs past its test, nor while the worker unloads and destroys the device.
 */
async function settle(e: Engine): Promise<void> {
  e.flush();
  await e.device.queue.onSubmittedWorkDone();
}

/** Largest |a - b| over two arrays. */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/**
 * Asserts |actual - expected| <= atol + rtol * |expected| elementwise; the message names the first
 * offending index and the largest error.
 */
export function assertClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  opts: { atol?: number; rtol?: number; label?: string } = {},
): void {
  const atol = opts.atol ?? 1e-5, rtol = opts.rtol ?? 1e-4;
  const label = opts.label ? `${opts.label}: ` : "";
  if (actual.length !== expected.length) {
    throw new Error(`${label}length ${actual.length} != expected ${expected.length}`);
  }
  let bad = -1, worst = 0;
  for (let i = 0; i < actual.length; i++) {
    const d = Math.abs(actual[i] - expected[i]);
    if (!(d <= atol + rtol * Math.abs(expected[i]))) {
      if (bad < 0) bad = i;
    }
    if (!(d <= worst)) worst = d;
  }
  if (bad >= 0) {
    throw new Error(
      `${label}mismatch at index ${bad}: got ${actual[bad]}, expected ${expected[bad]} ` +
        `(max abs err ${worst}, atol ${atol}, rtol ${rtol}, n ${actual.length})`,
    );
  }
}

/**
 * Central finite-difference gradient of a scalar function `f` at `x` (f64 arithmetic expected inside
 * `f`); returns d f / d x.
 */
export function finiteDiff(f: (x: Float64Array) => number, x: ArrayLike<number>, eps = 1e-5): Float64Array {
  const xx = Float64Array.from(x);
  const g = new Float64Array(xx.length);
  for (let i = 0; i < xx.length; i++) {
    const v = xx[i];
    xx[i] = v + eps;
    const fp = f(xx);
    xx[i] = v - eps;
    const fm = f(xx);
    xx[i] = v;
    g[i] = (fp - fm) / (2 * eps);
  }
  return g;
}

/** A weighted sum of an array with fixed pseudo-random weights: turns any output into a scalar loss. */
export function probe(n: number, seed = 99): Float32Array {
  return randn(n, seed);
}
