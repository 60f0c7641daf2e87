/**
 * The kernel choices a run measured (`--tune`: attention implementations by tuneAttention, matmul
 * kernels by tuneMatmul) as part of the run's state. Each checkpoint's trainer state holds them, so a
 * resumed run on the same adapter runs the kernels it ran before (the same numbers as a run not
 * stopped) and measures only shapes new to it; another adapter measures its own. In a data-parallel
 * run rank 0 measures and {@linkcode shareKernelChoices} gives its choices to the other ranks, so
 * every rank runs the same kernels.
 *
 * ```ts ignore
 * await saveCheckpoint(dir, { ..., trainerState: { position, kernelChoices: kernelChoicesOf(e) } });
 * restoreKernelChoices(e, checkTrainerState(state, file, stages).kernelChoices!); // on resume
 * ```
 * @module
 */

import { z } from "zod";
import type { Engine } from "../core/engine.ts";
import type { MeasuredChoice } from "../core/timing.ts";
import {
  ATTENTION_KERNELS,
  type AttentionImpl,
  setTunedAttentionChoices,
  tunedAttentionChoices,
} from "../core/kernels/attention/attention.ts";
import {
  MATMUL_KERNELS,
  type MatmulChoice,
  setTunedMatmulChoices,
  tunedMatmulChoices,
} from "../core/kernels/matmul/matmul.ts";
import type { DataParallel } from "./data_parallel.ts";

/** The choices measured on an engine, as plain data (`kernelChoices` of `trainer_state.json`). */
export interface KernelChoices {
  /** The adapter they were measured on (`DeviceInfo.description`); absent in older checkpoints. */
  adapter?: string;
  /** Attention implementations, by class of call and T (see setTunedKernel). */
  attention: MeasuredChoice<AttentionImpl>[];
  /** Matmul kernels, by class of product and M (see setTunedMatmul). */
  matmul: MeasuredChoice<MatmulChoice>[];
}

const measured = <V extends z.ZodType>(choice: V) =>
  z.array(z.strictObject({ class: z.string(), size: z.number().int().positive(), choice }));

/** The schema of {@linkcode KernelChoices}: a damaged checkpoint's choices are refused, not run. */
export const kernelChoicesSchema: z.ZodType<KernelChoices> = z.strictObject({
  adapter: z.string().optional(),
  attention: measured(z.enum(ATTENTION_KERNELS.filter((k) => k !== "auto"))),
  matmul: measured(z.strictObject({
    kernel: z.enum(MATMUL_KERNELS.filter((k) => k !== "auto")),
    splitK: z.number().int().positive(),
  })),
});

/** The choices measured on `e` so far. */
export function kernelChoicesOf(e: Engine): KernelChoices {
  return { adapter: e.info.description, attention: tunedAttentionChoices(e), matmul: tunedMatmulChoices(e) };
}

/** Makes `c` the choices measured on `e`, in place of any it had. */
export function setKernelChoices(e: Engine, c: KernelChoices): void {
  setTunedAttentionChoices(e, c.attention);
  setTunedMatmulChoices(e, c.matmul);
}

/**
 * Restores the choices a checkpoint kept (`kept`) on `e`, where they were measured on the same adapter
 * (or an older checkpoint does not say where); choices measured on another adapter are left out, since
 * timings there say nothing of this one (`--tune` measures them again). Returns the line that says
 * which, or null when `kept` holds no choices.
 */
export function restoreKernelChoices(e: Engine, kept: KernelChoices): string | null {
  const count = countKernelChoices(kept);
  if (!count) return null;
  if (kept.adapter !== undefined && kept.adapter !== e.info.description) {
    return `kernel choices measured earlier in this run on ${kept.adapter} not kept: this adapter is ` +
      `${e.info.description} (--tune measures them here)`;
  }
  setKernelChoices(e, kept);
  return `kernel choices measured earlier in this run, kept: ${count}`;
}

/** How many choices `c` holds, in words: `2 attention shapes and 33 matmul products` (empty: none). */
export function countKernelChoices(c: KernelChoices): string {
  const n = (k: number, what: string) => `${k} ${what}${k === 1 ? "" : "s"}`;
  const parts = [
    ...(c.attention.length ? [n(c.attention.length, "attention shape")] : []),
    ...(c.matmul.length ? [n(c.matmul.length, "matmul product")] : []),
  ];
  return parts.join(" and ");
}

/**
 * Gives rank 0's measured choices to every other rank (each replaces its own with them); nothing
 * without `dp`. A collective: every rank calls it at the same point.
 */
export async function shareKernelChoices(e: Engine, dp: DataParallel | null): Promise<void> {
  if (!dp) return;
  const choices = await dp.shareFromRoot(dp.rank === 0 ? kernelChoicesOf(e) : null);
  if (dp.rank !== 0) setKernelChoices(e, choices!);
}
