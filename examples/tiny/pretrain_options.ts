/**
 * The optimization options both tiny pretraining runs take (steps, batch, AdamW, schedule, clipping,
 * seed, how often losses are read back), their defaults, and validation whose errors name the
 * function, the option, the value given and what it must be.
 * @module
 */

import { z } from "zod";
import { describeValue } from "../../schema/parse.ts";

const posInt = z.number().int().positive();

/** The schema of {@linkcode PretrainOptions}' data fields, holding their defaults. */
export const pretrainSchema = z.strictObject({
  /** Optimizer steps (default 300). */
  steps: posInt.default(300),
  /** Examples per step (default 16). */
  batch: posInt.default(16),
  /** Peak learning rate of AdamW (default 3e-3). */
  lr: z.number().positive().default(3e-3),
  /** Fraction of the steps spent warming the rate up linearly, before a cosine decay (default 0.05). */
  warmupRatio: z.number().min(0).max(1).default(0.05),
  /** AdamW's decoupled weight decay (default 0.01). */
  weightDecay: z.number().min(0).default(0.01),
  /** Gradients are clipped to this global norm (default 1). */
  maxGradNorm: z.number().positive().default(1),
  /** Seed of the initialization and of the batch order (default 0). */
  seed: z.number().int().nonnegative().default(0),
  /** Read the losses back every this many steps (default 25): each read waits on the GPU. */
  readEvery: posInt.default(25),
});

/**
 * Optimization options shared by the tiny pretraining runs (every field optional): the schema's
 * fields, and `onStep`, a callback, which is not data and so not in the schema.
 */
export interface PretrainOptions extends z.input<typeof pretrainSchema> {
  /** Called with each step's loss (in order, as the losses are read back). */
  onStep?: (step: number, loss: number) => void;
}

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
 * Errors, one line per problem, read "`fn`: option `field` is `value`; it must be `want[field]`"
 * (zod's message where `want` has none), or for an unknown option "`fn`: unknown option `key`; the
 * options are ...".
 */
export function parseOptions<S extends z.ZodType>(
  schema: S,
  value: Record<string, unknown>,
  fn: string,
  want: Record<string, string>,
): z.output<S> {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const options = Object.keys(want).join(", ");
  const lines = r.error.issues.map((issue) => {
    if (issue.code === "unrecognized_keys") {
      return `${fn}: unknown option ${issue.keys.join(", ")}; the options are ${options}`;
    }
    const field = String(issue.path[0] ?? "");
    const raw = value[field];
    const got = typeof raw === "number" ? String(raw) : describeValue(raw); // Infinity, not JSON's null
    return `${fn}: option ${field} is ${got}; it must be ${want[field] ?? issue.message}`;
  });
  throw new Error(lines.join("\n"));
}
