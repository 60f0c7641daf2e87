/**
 * Learning-rate schedules with linear warmup, as Hugging Face's `get_*_schedule_with_warmup`:
 * warmup steps = ceil(warmupRatio * totalSteps); during warmup the rate rises linearly from 0; then
 * it follows the schedule ("cosine" to `minLr`, "linear" to `minLr`, or "constant").
 *
 * `step` counts the optimizer updates already done, as the scheduler's counter in PyTorch: the first
 * update uses `lrAt(0, ...)`, which is 0 when there is a warmup (as in the Hugging Face trainer).
 *
 * ```ts
 * const opts = { lr: 1e-3, totalSteps: 2181, warmupRatio: 0.03, schedule: "cosine" } as const;
 * lrAt(66, opts); // 1e-3: the 66 warmup steps are done, the cosine starts at the peak
 * ```
 * @module
 */

import { z } from "zod";
import { parseSchema } from "../schema/parse.ts";

/** The shape of the rate after warmup. */
export type ScheduleKind = "cosine" | "constant" | "linear";

/** Every {@linkcode ScheduleKind}. */
export const SCHEDULE_KINDS: readonly ScheduleKind[] = ["cosine", "constant", "linear"];

/** A validated schedule, every field set (see {@linkcode parseLrSchedule}). */
export interface LrSchedule {
  /** The peak learning rate (> 0), reached at the end of warmup. */
  lr: number;
  /** The number of optimizer updates of the whole run (or stage). */
  totalSteps: number;
  /** The fraction of `totalSteps` spent warming up, in [0, 1] (default 0). */
  warmupRatio: number;
  /** The shape after warmup (default "cosine"). */
  schedule: ScheduleKind;
  /** The rate the cosine and linear schedules decay to (default 0; at most `lr`). */
  minLr: number;
}

/** A schedule as given: `lr` and `totalSteps`, and any of the fields that have a default. */
export type LrScheduleInput = Pick<LrSchedule, "lr" | "totalSteps"> & Partial<LrSchedule>;

// `LrSchedule` is written out because a published type must be (JSR's no-slow-types: not inferred from a
// schema); the schema is typed by it, so the compiler holds the two together. The rules and defaults live
// here.
const scheduleSchema: z.ZodType<LrSchedule, LrScheduleInput> = z.strictObject({
  lr: z.number().positive(),
  totalSteps: z.number().int().positive(),
  warmupRatio: z.number().min(0).max(1).default(0),
  schedule: z.enum(SCHEDULE_KINDS).default("cosine"),
  minLr: z.number().min(0).default(0),
}).superRefine((s, ctx) => {
  if (s.minLr > s.lr) {
    ctx.addIssue({
      code: "custom",
      path: ["minLr"],
      message: `${s.minLr} is above lr ${s.lr}; set it to at most lr`,
    });
  }
});

/**
 * Validates a schedule and fills in the defaults; errors name `path.field`, the value and what is
 * allowed (see `parseSchema`).
 *
 * @example
 * ```ts
 * parseLrSchedule({ lr: 2e-5, totalSteps: 5198 }, "trainer");
 * // { lr: 2e-5, totalSteps: 5198, warmupRatio: 0, schedule: "cosine", minLr: 0 }
 * ```
 */
export function parseLrSchedule(value: unknown, path = "schedule"): LrSchedule {
  return parseSchema(scheduleSchema, value, path);
}

/** The number of warmup steps: ceil(warmupRatio * totalSteps), as the Hugging Face trainer. */
export function warmupSteps(opts: LrScheduleInput): number {
  const s = parseLrSchedule(opts);
  return Math.ceil(s.warmupRatio * s.totalSteps);
}

/**
 * The learning rate for the update after `step` updates (an integer >= 0). Past `totalSteps` the
 * cosine and linear schedules stay at `minLr`.
 *
 * @example
 * ```ts
 * const opts = { lr: 1e-3, totalSteps: 13, warmupRatio: 0.2 }; // 3 warmup steps, then cosine
 * lrAt(1, opts); // 1e-3 / 3
 * lrAt(8, opts); // 5e-4: half way through the decay
 * ```
 */
export function lrAt(step: number, opts: LrScheduleInput): number {
  if (!Number.isInteger(step) || step < 0) {
    throw new Error(`lrAt: step must be an integer >= 0 (updates done so far), got ${step}`);
  }
  const s = parseLrSchedule(opts);
  const warmup = Math.ceil(s.warmupRatio * s.totalSteps);
  if (step < warmup) return s.lr * (step / warmup);
  const progress = Math.min(1, (step - warmup) / Math.max(1, s.totalSteps - warmup));
  let factor: number;
  switch (s.schedule) {
    case "constant":
      return s.lr;
    case "cosine":
      factor = 0.5 * (1 + Math.cos(Math.PI * progress));
      break;
    case "linear":
      factor = 1 - progress;
      break;
  }
  return s.minLr + (s.lr - s.minLr) * factor;
}
