/**
 * The optimization options both tiny pretraining runs take (steps, batch, AdamW, schedule, clipping,
 * seed, how often losses are read back), their defaults, and validation whose errors name the
 * function, the option, the value given and what it must be.
 * @module
 */

import { z } from "zod";

/** Optimization options shared by the tiny pretraining runs (every field optional). */
export interface PretrainOptions {
  /** Optimizer steps (default 300). */
  steps?: number;
  /** Examples per step (default 16). */
  batch?: number;
  /** Peak learning rate of AdamW (default 3e-3). */
  lr?: number;
  /** Fraction of the steps spent warming the rate up linearly, before a cosine decay (default 0.05). */
  warmupRatio?: number;
  /** AdamW's decoupled weight decay (default 0.01). */
  weightDecay?: number;
  /** Gradients are clipped to this global norm (default 1). */
  maxGradNorm?: number;
  /** Seed of the initialization and of the batch order (default 0). */
  seed?: number;
  /** Read the losses back every this many steps (default 25): each read waits on the GPU. */
  readEvery?: number;
  /** Called with each step's loss (in order, as the losses are read back). */
  onStep?: (step: number, loss: number) => void;
}

const posInt = z.number().int().positive();
const finite = z.number().refine(Number.isFinite);

/** The schema of {@linkcode PretrainOptions}' numeric fields, holding their defaults. */
export const pretrainSchema = z.strictObject({
  steps: posInt.default(300),
  batch: posInt.default(16),
  lr: finite.refine((v) => v > 0).default(3e-3),
  warmupRatio: finite.min(0).max(1).default(0.05),
  weightDecay: finite.min(0).default(0.01),
  maxGradNorm: finite.refine((v) => v > 0).default(1),
  seed: z.number().int().nonnegative().default(0),
  readEvery: posInt.default(25),
});

/** What each shared option must be, for errors. */
export const PRETRAIN_WANT: Record<string, string> = {
  steps: "an integer >= 1",
  batch: "an integer >= 1",
  lr: "a finite number > 0",
  warmupRatio: "a number in [0, 1]",
  weightDecay: "a finite number >= 0",
  maxGradNorm: "a finite number > 0",
  seed: "an integer >= 0",
  readEvery: "an integer >= 1",
};

/**
 * Validates `value` (options without their callbacks) against `schema` and fills in the defaults.
 * Errors read "`fn`: option `field` is `value`; it must be `want[field]`".
 */
export function parseOptions<S extends z.ZodType>(
  schema: S,
  value: Record<string, unknown>,
  fn: string,
  want: Record<string, string>,
): z.output<S> {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  if (issue.code === "unrecognized_keys") {
    throw new Error(`${fn}: unknown option ${issue.keys.join(", ")}; the options are ${Object.keys(want)}`);
  }
  const field = String(issue.path[0] ?? "");
  const raw = value[field];
  const got = typeof raw === "number" ? String(raw) : JSON.stringify(raw);
  throw new Error(`${fn}: option ${field} is ${got}; it must be ${want[field] ?? issue.message}`);
}
