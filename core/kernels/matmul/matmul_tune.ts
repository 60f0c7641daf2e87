/**
 * Choosing matmul kernels by measuring them on the engine's own GPU: {@linkcode tuneMatmul} times the
 * kernels (and K splits) that can take a product and makes the fastest the choice of "auto" calls like
 * it. With {@linkcode recordMatmulShapes}, a model's own products are found by running a step
 * (`deno task train --tune` does this after each stage's first step).
 * @module
 */

import type { Engine } from "../../engine.ts";
import { fastestOf, type FastestOfOptions } from "../../timing.ts";
import {
  isTunedMatmul,
  type MatmulChoice,
  matmulInto,
  type MatmulKernel,
  type ProductShape,
  recordMatmulShapes,
  setTunedMatmul,
  takeRecordedShapes,
} from "./matmul.ts";

/** What {@linkcode tuneMatmul} measured. */
export interface MatmulTuning {
  /** The product timed. */
  shape: ProductShape;
  /** Milliseconds per product, per choice that takes it, as `kernel` or `kernel/splitK`. */
  ms: Record<string, number>;
  /** The fastest: now the choice of "auto" calls like the one timed. */
  best: MatmulChoice;
}

/**
 * The choices tried: on software adapters the texture kernel; the vec4 kernels with 64 and 128 tiles,
 * and with 64 tiles K split in 2, 4 and 8 (parts at least 256 deep); the tiled kernels only where no
 * vec4 kernel takes the product. A choice that cannot take a product throws before it runs and is left out.
 */
function choicesFor(e: Engine, s: ProductShape): MatmulChoice[][] {
  const one = (kernel: Exclude<MatmulKernel, "auto">, splitK = 1): MatmulChoice => ({ kernel, splitK });
  const splits = [2, 4, 8].filter((p) => s.K / p >= 256).map((p) => one("vec4", p));
  return [
    [...(e.info.isFallbackAdapter ? [one("texture")] : []), one("vec4_128"), one("vec4"), ...splits],
    [one("tiled128"), one("tiled")], // tried when no choice of the first group takes the product
  ];
}

/** A choice's name in {@linkcode MatmulTuning.ms}: `kernel`, or `kernel/parts` when K is split. */
export function choiceName(c: MatmulChoice): string {
  return c.splitK > 1 ? `${c.kernel}/${c.splitK}` : c.kernel;
}

/**
 * Times each kernel choice that takes products of shape `s` (on operands of 0.5s) and records the
 * fastest as the choice of "auto" calls on `e` with the same shape but M, at the M nearest theirs of
 * those tuned (see `setTunedMatmul`). Holds the product's operands and output while it runs.
 */
export async function tuneMatmul(
  e: Engine,
  s: ProductShape,
  opts: FastestOfOptions = {},
): Promise<MatmulTuning> {
  const { batch, M, N, K } = s;
  const a = e.full([batch * M * K], 0.5, s.dtype);
  const b = e.full([batch * K * N], 0.5, s.dtype);
  const out = e.empty([batch * M * N], s.dtype);
  try {
    for (const group of choicesFor(e, s)) {
      const { ms, best } = await fastestOf(
        e,
        group.map((c) => ({
          name: choiceName(c),
          run: () => matmulInto(out, a, b, s, { kernel: c.kernel, splitK: c.splitK, packedF16: s.packedF16 }),
        })),
        { trials: 3, trialMs: 50, ...opts },
      );
      const choice = group.find((c) => choiceName(c) === best);
      if (choice) {
        setTunedMatmul(e, s, choice);
        return { shape: { ...s }, ms, best: choice };
      }
    }
  } finally {
    for (const t of [a, b, out]) t.dispose();
  }
  throw new Error(`tuneMatmul: no kernel takes ${JSON.stringify(s)}`);
}

/**
 * Stops recording on `e` (see `recordMatmulShapes`) and measures each product recorded since it started
 * that has no choice measured at its very shape yet (see {@linkcode tuneMatmul}); `onEach` hears each
 * result as it comes.
 */
export async function tuneRecordedMatmuls(
  e: Engine,
  onEach: (t: MatmulTuning) => void = () => {},
  opts: FastestOfOptions = {},
): Promise<MatmulTuning[]> {
  const shapes = takeRecordedShapes(e).filter((s) => !isTunedMatmul(e, s));
  recordMatmulShapes(e, false);
  const done: MatmulTuning[] = [];
  for (const s of shapes) {
    done.push(await tuneMatmul(e, s, opts));
    onEach(done[done.length - 1]);
  }
  return done;
}

/**
 * One line of a tuning's result, e.g.
 * `matmul 2048x4096 @ 4096x4096^T f16: vec4_128 3.10 ms, vec4 3.52 ms, vec4/2 3.90 ms -> vec4_128`.
 */
export function formatMatmulTuning(t: MatmulTuning): string {
  const { batch, M, N, K, transA, transB, dtype, packedF16 } = t.shape;
  const [ra, ca] = transA ? [K, M] : [M, K], [rb, cb] = transB ? [N, K] : [K, N];
  const product = `${batch > 1 ? `${batch} x ` : ""}${ra}x${ca}${transA ? "^T" : ""} @ ${rb}x${cb}${
    transB ? "^T" : ""
  }`;
  const times = Object.entries(t.ms).map(([k, ms]) => `${k} ${ms.toFixed(ms < 10 ? 2 : 1)} ms`);
  return `matmul ${product} ${dtype}${packedF16 ? " packed" : ""}: ${times.join(", ")} -> ${
    choiceName(t.best)
  }`;
}
