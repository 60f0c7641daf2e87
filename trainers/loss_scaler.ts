/**
 * Dynamic loss scaling for f16 training (the host-side logic, as PyTorch's `GradScaler`): the loss
 * is multiplied by `scale` before backward and the gradients divided by it before the update; a step
 * whose gradients hold an inf or NaN is skipped and the scale halved, and after `growthInterval`
 * finite steps in a row the scale doubles. {@linkcode NonFiniteGuard} stops a run whose steps keep
 * being skipped, with what to try.
 *
 * ```ts ignore
 * const scaler = new LossScaler();
 * const guard = new NonFiniteGuard({ maxConsecutive: 20 });
 * // backward(mul(loss, scaler.scale)); finite = all gradients finite after unscaling
 * const { skip } = scaler.update(finite);
 * guard.record(skip, { step, scale: scaler.scale });
 * if (!skip) opt.step(lr);
 * ```
 * @module
 */

import { z } from "zod";
import { parseSchema } from "../schema/parse.ts";

/** Options of {@linkcode LossScaler}. */
export interface LossScalerOptions {
  /** The starting scale (default 2^16). */
  initScale?: number;
  /** Finite steps in a row before the scale grows (default 2000). */
  growthInterval?: number;
  /** Factor of growth, at least 1 (default 2). */
  growthFactor?: number;
  /** Factor applied on overflow, in (0, 1] (default 0.5). */
  backoffFactor?: number;
  /** The scale never goes below this (default 1). */
  minScale?: number;
  /** The scale never goes above this (default 2^24). */
  maxScale?: number;
}

/** The scaler's state, for checkpoints. */
export interface LossScalerState {
  /** The current scale. */
  scale: number;
  /** Finite steps since the last overflow or growth. */
  goodSteps: number;
}

// The option types are written out because a published type must be (JSR's no-slow-types: not
// inferred from a schema); each schema is typed by its options type, so the compiler holds the two
// together. The rules and defaults live in the schemas.

const scalerSchema: z.ZodType<Required<LossScalerOptions>, LossScalerOptions> = z.strictObject({
  initScale: z.number().positive().default(2 ** 16),
  growthInterval: z.number().int().min(1).default(2000),
  growthFactor: z.number().min(1).default(2),
  backoffFactor: z.number().positive().max(1).default(0.5),
  minScale: z.number().positive().default(1),
  maxScale: z.number().positive().default(2 ** 24),
}).superRefine((o, ctx) => {
  if (o.minScale > o.maxScale || o.initScale < o.minScale || o.initScale > o.maxScale) {
    ctx.addIssue({
      code: "custom",
      path: [],
      message: `need minScale <= initScale <= maxScale, got ${o.minScale}, ${o.initScale}, ${o.maxScale}`,
    });
  }
});

/** Dynamic loss scaling: halves on overflow (not below `minScale`), doubles after `growthInterval` finite steps. */
export class LossScaler {
  #scale: number;
  #good = 0;
  readonly #opts: Required<LossScalerOptions>;

  /** A scaler at `initScale`; see {@linkcode LossScalerOptions} for the defaults. */
  constructor(opts: LossScalerOptions = {}) {
    this.#opts = parseSchema(scalerSchema, opts, "LossScaler: options");
    this.#scale = this.#opts.initScale;
  }

  /** The factor the loss is multiplied by (and the gradients divided by). */
  get scale(): number {
    return this.#scale;
  }

  /**
   * Takes the outcome of a step: `gradsFinite` false skips the step and backs the scale off; true
   * counts a good step and grows the scale after `growthInterval` of them in a row.
   */
  update(gradsFinite: boolean): { skip: boolean } {
    const o = this.#opts;
    if (!gradsFinite) {
      this.#scale = Math.max(o.minScale, this.#scale * o.backoffFactor);
      this.#good = 0;
      return { skip: true };
    }
    this.#good++;
    if (this.#good >= o.growthInterval) {
      this.#scale = Math.min(o.maxScale, this.#scale * o.growthFactor);
      this.#good = 0;
    }
    return { skip: false };
  }

  /** The state, for checkpoints. */
  state(): LossScalerState {
    return { scale: this.#scale, goodSteps: this.#good };
  }

  /** Restores a state from {@linkcode state}. */
  loadState(s: LossScalerState): void {
    if (!(Number.isFinite(s?.scale) && s.scale > 0 && Number.isInteger(s.goodSteps) && s.goodSteps >= 0)) {
      throw new Error(
        `LossScaler.loadState: expected {scale > 0, goodSteps integer >= 0}, got ${JSON.stringify(s)}`,
      );
    }
    this.#scale = s.scale;
    this.#good = s.goodSteps;
  }
}

/** Options of {@linkcode NonFiniteGuard}. */
export interface NonFiniteGuardOptions {
  /** Skipped steps in a row that stop the run (default 20). */
  maxConsecutive?: number;
}

const guardSchema: z.ZodType<Required<NonFiniteGuardOptions>, NonFiniteGuardOptions> = z.strictObject({
  maxConsecutive: z.number().int().min(1).default(20),
});

/**
 * Counts steps skipped for non-finite gradients (or loss) and throws once `maxConsecutive` come in
 * a row: a run that cannot take a step should stop with a reason, not spin.
 */
export class NonFiniteGuard {
  /** Skipped steps in a row that stop the run. */
  readonly maxConsecutive: number;
  #consecutive = 0;
  #total = 0;

  /** A guard; see {@linkcode NonFiniteGuardOptions}. */
  constructor(opts: NonFiniteGuardOptions = {}) {
    this.maxConsecutive = parseSchema(guardSchema, opts, "NonFiniteGuard: options").maxConsecutive;
  }

  /** Skipped steps in a row so far. */
  get consecutive(): number {
    return this.#consecutive;
  }

  /** All skipped steps so far. */
  get total(): number {
    return this.#total;
  }

  /**
   * Records one step: `skipped` true when it was skipped for non-finite values. Throws when that
   * makes `maxConsecutive` in a row; `context` (the step, the loss scale) goes into the message.
   */
  record(skipped: boolean, context: { step?: number; scale?: number } = {}): void {
    if (!skipped) {
      this.#consecutive = 0;
      return;
    }
    this.#consecutive++;
    this.#total++;
    if (this.#consecutive < this.maxConsecutive) return;
    const at = context.step !== undefined ? ` (at step ${context.step})` : "";
    const scale = context.scale !== undefined ? `; the loss scale is down to ${context.scale}` : "";
    throw new Error(
      `${this.#consecutive} training steps in a row had non-finite (inf/NaN) gradients or loss${at}${scale}, ` +
        `so none of them updated the model. Try: a lower learning rate (or a longer warmup); training in ` +
        `f32 instead of f16; checking the data for broken samples (empty or all-masked targets, corrupt ` +
        `images); or allow more skips with maxConsecutive (now ${this.maxConsecutive}).`,
    );
  }
}
