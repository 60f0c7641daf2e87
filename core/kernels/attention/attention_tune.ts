/**
 * Picking the attention implementation by measuring it on the engine's own GPU: {@linkcode tuneAttention}
 * times forward + backward of each implementation at a call's shape and makes the fastest the choice
 * of "auto" calls like it (`deno task train --attention tune` does this at the run's shape).
 * @module
 */

import type { DType } from "../../dtype.ts";
import type { Engine } from "../../engine.ts";
import { randn } from "../../random.ts";
import { medianMs } from "../../timing.ts";
import { attentionBackward, attentionForward, type AttentionOptions, setTunedKernel } from "./attention.ts";
import type { AttentionDims } from "./attention_cpu.ts";
import { groupsPerChunk, scoreBudget } from "./attention_matmul.ts";

/** The implementations a tuning times. */
export type TunedKernel = "fused" | "matmul" | "flash";

/** Options of {@linkcode tuneAttention}. */
export interface TuneAttentionOptions {
  /** Trials per implementation; the median counts (default 3). */
  trials?: number;
  /** About how long each trial lasts, in ms (default 100). */
  trialMs?: number;
  /**
   * Implementations slower than this many times the fastest one timed before them are timed once only
   * (default 3): a slow kernel at a long T would otherwise cost most of the tuning's time.
   */
  dropAbove?: number;
}

/** What {@linkcode tuneAttention} measured. */
export interface AttentionTuning {
  /** The shape timed. */
  dims: AttentionDims;
  /** The dtype of q, k and v. */
  dtype: DType;
  /** Milliseconds per forward + backward, per implementation timed (`matmul` only where its scores fit). */
  ms: Partial<Record<TunedKernel, number>>;
  /** The fastest: now the choice of "auto" calls like the one timed. */
  best: TunedKernel;
}

/**
 * Times forward + backward (dq, dk, dv) of each implementation at dims `d` with random inputs of
 * `dtype` and the mask of `opts`, and records the fastest as the choice of "auto" calls on `e` with the
 * same dtype, heads, head size and kind of mask, at the T nearest `d.T` of those tuned (until
 * `setAttentionKernel(e, "auto")`). Flash goes first; fused is timed once only where it is more than
 * `dropAbove` times slower than the best before it. Holds about 4 q-sized tensors (plus the matmul path's
 * workspace) while it runs.
 */
export async function tuneAttention(
  e: Engine,
  d: AttentionDims,
  dtype: "f32" | "f16",
  opts: Pick<AttentionOptions, "causal" | "window" | "scale"> = {},
  tune: TuneAttentionOptions = {},
): Promise<AttentionTuning> {
  if (dtype === "f16" && !e.hasF16) throw new Error("tuneAttention: f16 needs the adapter's shader-f16");
  const { trials = 3, trialMs = 100, dropAbove = 3 } = tune;
  const qShape = [d.B, d.NH, d.T, d.HS], kShape = [d.B, d.NKV, d.T, d.HS];
  const size = (s: number[]) => s.reduce((a, b) => a * b);
  const q = e.tensor(randn(size(qShape), 1, 0.5), qShape, dtype);
  const k = e.tensor(randn(size(kShape), 2, 0.5), kShape, dtype);
  const v = e.tensor(randn(size(kShape), 3, 0.5), kShape, dtype);
  const dout = e.tensor(randn(size(qShape), 4, 0.5), qShape, dtype);
  const kernels: TunedKernel[] = groupsPerChunk(d, dtype, scoreBudget(e)) > 0
    ? ["flash", "matmul", "fused"]
    : ["flash", "fused"];
  const ms: Partial<Record<TunedKernel, number>> = {};
  try {
    for (const kernel of kernels) {
      const call = { ...opts, kernel };
      const step = () => {
        const { out, lse } = attentionForward(q, k, v, call);
        attentionBackward(q, k, v, out, lse, dout, call);
      };
      const best = Math.min(...Object.values(ms));
      const once = await onceMs(e, step);
      ms[kernel] = once > dropAbove * best ? once : await medianMs(e, step, { trials, trialMs });
    }
  } finally {
    for (const t of [q, k, v, dout]) t.dispose();
  }
  const best = kernels.reduce((a, b) => ms[b]! < ms[a]! ? b : a);
  setTunedKernel(e, d, dtype, opts, best);
  return { dims: { ...d }, dtype, ms, best };
}

/** Milliseconds of one call of `fn` after a warm-up call (which compiles its pipelines). */
async function onceMs(e: Engine, fn: () => void): Promise<number> {
  e.tidy(fn);
  await e.sync();
  const t0 = performance.now();
  e.tidy(fn);
  await e.sync();
  return performance.now() - t0;
}

/** One line of a tuning's result, e.g. `B1 NH32/32 T2048 HS128 f16: flash 8.1 ms, matmul 12.3 ms -> flash`. */
export function formatTuning(t: AttentionTuning): string {
  const { B, NH, NKV, T, HS } = t.dims;
  const times = Object.entries(t.ms).map(([k, ms]) => `${k} ${ms.toFixed(ms < 10 ? 2 : 1)} ms`);
  return `B${B} NH${NH}/${NKV} T${T} HS${HS} ${t.dtype}: ${times.join(", ")} -> ${t.best}`;
}
