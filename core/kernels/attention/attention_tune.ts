/**
 * Picking the attention implementation by measuring it on the engine's own GPU: {@linkcode tuneAttention}
 * times forward + backward of each implementation at a call's shape and makes the fastest the choice
 * of "auto" calls like it (`deno task train --tune` does this at the run's shapes).
 * @module
 */

import type { DType } from "../../dtype.ts";
import type { Engine } from "../../engine.ts";
import { randn } from "../../random.ts";
import { fastestOf, type FastestOfOptions } from "../../timing.ts";
import {
  attentionBackward,
  attentionForward,
  type AttentionImpl,
  type AttentionOptions,
  setTunedKernel,
} from "./attention.ts";
import type { AttentionDims } from "./attention_cpu.ts";
import { groupsPerChunk, scoreBudget } from "./attention_matmul.ts";

/** What {@linkcode tuneAttention} measured. */
export interface AttentionTuning {
  /** The shape timed. */
  dims: AttentionDims;
  /** The dtype of q, k and v. */
  dtype: DType;
  /** Milliseconds per forward + backward, per implementation timed (`matmul` only where its scores fit). */
  ms: Partial<Record<AttentionImpl, number>>;
  /** The fastest: now the choice of "auto" calls like the one timed. */
  best: AttentionImpl;
}

/**
 * Times forward + backward (dq, dk, dv) of each implementation at dims `d` with random inputs of
 * `dtype` and the mask of `opts`, and records the fastest as the choice of "auto" calls on `e` like it
 * (the same dtype, heads, head size, kind of mask and divisibility of T by 4), at the T nearest `d.T`
 * of those tuned (see `setTunedKernel`; until `setAttentionKernel(e, "auto")`). Flash goes first; an
 * implementation more than `tune.dropAbove` (default 3) times slower than the best before it is timed
 * once only (see `fastestOf`). Holds about 4 q-sized tensors (plus the matmul path's workspace) while
 * it runs.
 */
export async function tuneAttention(
  e: Engine,
  d: AttentionDims,
  dtype: "f32" | "f16",
  opts: Pick<AttentionOptions, "causal" | "window" | "scale"> = {},
  tune: FastestOfOptions = {},
): Promise<AttentionTuning> {
  if (dtype === "f16" && !e.hasF16) throw new Error("tuneAttention: f16 needs the adapter's shader-f16");
  const qShape = [d.B, d.NH, d.T, d.HS], kShape = [d.B, d.NKV, d.T, d.HS];
  const size = (s: number[]) => s.reduce((a, b) => a * b);
  const q = e.tensor(randn(size(qShape), 1, 0.5), qShape, dtype);
  const k = e.tensor(randn(size(kShape), 2, 0.5), kShape, dtype);
  const v = e.tensor(randn(size(kShape), 3, 0.5), kShape, dtype);
  const dout = e.tensor(randn(size(qShape), 4, 0.5), qShape, dtype);
  const kernels: AttentionImpl[] = groupsPerChunk(d, dtype, scoreBudget(e)) > 0
    ? ["flash", "matmul", "fused"]
    : ["flash", "fused"];
  try {
    const { ms, best } = await fastestOf(
      e,
      kernels.map((kernel) => ({
        name: kernel,
        run: () => {
          const call = { ...opts, kernel };
          const { out, lse } = attentionForward(q, k, v, call);
          attentionBackward(q, k, v, out, lse, dout, call);
        },
      })),
      { trials: 3, trialMs: 100, dropAbove: 3, ...tune },
    );
    const kernel = kernels.find((k) => k === best);
    if (!kernel) throw new Error(`tuneAttention: no implementation ran at ${JSON.stringify(d)}`);
    setTunedKernel(e, d, dtype, opts, kernel);
    return { dims: { ...d }, dtype, ms, best: kernel };
  } finally {
    for (const t of [q, k, v, dout]) t.dispose();
  }
}

/** One line of a tuning's result, e.g. `B1 NH32/32 T2048 HS128 f16: flash 8.1 ms, matmul 12.3 ms -> flash`. */
export function formatTuning(t: AttentionTuning): string {
  const { B, NH, NKV, T, HS } = t.dims;
  const times = Object.entries(t.ms).map(([k, ms]) => `${k} ${ms.toFixed(ms < 10 ? 2 : 1)} ms`);
  return `B${B} NH${NH}/${NKV} T${T} HS${HS} ${t.dtype}: ${times.join(", ")} -> ${t.best}`;
}
