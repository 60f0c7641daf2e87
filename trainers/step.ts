/**
 * One optimizer step, as the trainer takes it: the forward and backward of each of the step's
 * micro-batches (the gradients accumulate; each micro-batch's loss is divided by their count, and in
 * f16 multiplied by the loss scale), then the gradients unscaled, clipped to a global norm, checked for
 * inf/NaN together with the loss, and, unless the step is skipped, AdamW's update. The gradients are
 * zeroed after, updated or not.
 *
 * {@linkcode trainStep} is the two halves in a row: {@linkcode accumulateGrads} (the micro-batches) and
 * {@linkcode finishStep} (the update). With `replicas` (a data-parallel run), the gradients and loss sums
 * are averaged over the ranks between the two, the skip decision is taken by all ranks together, and the
 * update is shared after it (a sharded optimizer updates each parameter on one rank).
 *
 * ```ts ignore
 * const setup = { engine: e, model, params, opt, lossWeights, maxGradNorm: 1, scaler: null, guard };
 * const r = await trainStep(setup, { count: 4, next: () => data.batch(...) }, lr, step);
 * // r.losses.text, r.losses.total (means over the 4 micro-batches), r.gradNorm, r.skipped
 * ```
 * @module
 */

import type { Engine } from "../core/engine.ts";
import type { Tensor } from "../core/tensor.ts";
import { backward, leaves, zeroGrad } from "../core/autograd.ts";
import type { AdamW } from "../core/kernels/adamw/adamw.ts";
import { clipGradNorm, globalNorm } from "../core/kernels/clip/clip.ts";
import { scale } from "../core/kernels/elementwise/elementwise.ts";
import type { AsvrBatch, AsvrModel } from "../models/asvr_model.ts";
import type { LossConfig } from "../losses/config.ts";
import type { LossScaler, NonFiniteGuard } from "./loss_scaler.ts";

/** What every step of a stage shares: the model, what trains, the optimizer and the rules of a step. */
export interface StepSetup {
  /** The engine the model lives on. */
  engine: Engine;
  /** The model: `forward` gives a micro-batch's loss and its terms (`text`, `visual_<name>`, `total`). */
  model: Pick<AsvrModel, "forward">;
  /** The parameters that train: those `opt` updates. */
  params: Tensor[];
  /** The optimizer over `params`. */
  opt: AdamW;
  /** The weights of the loss terms in the total. */
  lossWeights: Pick<LossConfig, "textWeight" | "visualWeight">;
  /** Clips the global gradient norm to this; 0: no clipping (the norm is still measured). */
  maxGradNorm: number;
  /** Dynamic loss scaling (f16); null: none (f32, or a fixed scale of 1). */
  scaler: LossScaler | null;
  /** Counts skipped steps; throws once too many come in a row. */
  guard: NonFiniteGuard;
  /** The other ranks of a data-parallel run (absent: one process). */
  replicas?: Replicas;
}

/** What a step needs of a data-parallel run's other ranks (trainers/data_parallel.ts provides it). */
export interface Replicas {
  /** Makes the gradients of `params` their mean over the ranks; returns `acc` summed over the ranks. */
  reduce(params: readonly Tensor[], acc: Accumulated): Promise<Accumulated>;
  /** True on every rank when `flag` is true on any. */
  any(flag: boolean): Promise<boolean>;
  /** After an update: each rank receives the parameters another rank updated (sharded optimizer). */
  afterUpdate(): Promise<void>;
}

/** The micro-batches of one step, loaded one at a time (the next loads while the GPU works). */
export interface MicroBatches {
  /** Micro-batches in the step: each loss is divided by it, a micro-batch that loads as null included. */
  count: number;
  /** Loads the next micro-batch; null when every row of it was bad and skipped (it adds nothing). */
  next(): Promise<AsvrBatch | null>;
}

/**
 * Told after each micro-batch of a step: `done` of `count` micro-batches (one that loaded as null
 * included), for progress during a long step.
 */
export type MicroBatchCallback = (done: number, count: number) => void;

/** What {@linkcode accumulateGrads} leaves besides the gradients (which are on the parameters). */
export interface Accumulated {
  /** Micro-batches in the step (the divisor of the means). */
  count: number;
  /**
   * Each loss term summed over the micro-batches that loaded, by the model's term name: complete once
   * `pending` is read ({@linkcode settleSums}).
   */
  sums: Record<string, number>;
  /** Positions (B x T, padding included) over the micro-batches that loaded. */
  tokens: number;
  /**
   * Loss terms on the GPU not yet added to `sums`, one record per micro-batch: read with the gradient
   * norm, so a step waits for the GPU once.
   */
  pending?: Record<string, Tensor>[];
}

/** One step's outcome. */
export interface StepResult {
  /**
   * Each loss term's mean over the step's micro-batches, by the model's term name (`text`,
   * `visual_<name>`, `total`): the unweighted, unscaled loss, whatever the loss scale.
   */
  losses: Record<string, number>;
  /** The global norm of the (unscaled) gradients before clipping (0 when no parameter has one). */
  gradNorm: number;
  /** Whether the update was skipped: a non-finite loss or gradient norm (or, in f16, an overflow). */
  skipped: boolean;
  /** Positions (B x T, padding included) over the micro-batches that loaded. */
  tokens: number;
  /** Wall-clock seconds of the step, loading included. */
  seconds: number;
}

/**
 * Takes one optimizer step at learning rate `lr`: {@linkcode accumulateGrads} over `batches`, then
 * {@linkcode finishStep}. The parameters' gradients must be zero (or absent) on entry; they are zero again
 * on return. `step` (the run's step number, this one included) only goes into the guard's error.
 *
 * Accumulating 2 micro-batches of B rows gives the gradient of one micro-batch of the 2B rows (up to
 * f32 rounding) when both have as many supervised tokens, since each loss is a mean.
 * Throws (from the guard) when this makes too many skipped steps in a row. `onMicroBatch` is told after
 * each micro-batch.
 */
export async function trainStep(
  s: StepSetup,
  batches: MicroBatches,
  lr: number,
  step: number,
  onMicroBatch?: MicroBatchCallback,
): Promise<StepResult> {
  const t0 = performance.now();
  const own = await accumulateGrads(s, batches, onMicroBatch);
  const acc = s.replicas ? await s.replicas.reduce(s.params, own) : own;
  const { losses, gradNorm, skipped } = await finishStep(s, acc, lr, step);
  const seconds = (performance.now() - t0) / 1000;
  return { losses, gradNorm, skipped, tokens: acc.tokens, seconds };
}

/**
 * Runs the forward and backward of each micro-batch of `batches` in turn, adding to the parameters'
 * gradients loss * scale / count (scale: the loss scale, or 1). The loss terms stay on the GPU, in
 * `pending`, so nothing waits for the GPU here: {@linkcode finishStep} reads them with the gradient norm
 * ({@linkcode settleSums} reads them alone). `onMicroBatch` is told after each micro-batch (`done` of
 * `count`), once its work is recorded.
 */
export async function accumulateGrads(
  s: StepSetup,
  batches: MicroBatches,
  onMicroBatch?: MicroBatchCallback,
): Promise<Accumulated> {
  const pending: Record<string, Tensor>[] = [];
  let tokens = 0;
  for (let micro = 0; micro < batches.count; micro++) {
    const batch = await batches.next();
    if (!batch) {
      onMicroBatch?.(micro + 1, batches.count);
      continue;
    }
    tokens += batch.inputIds.length;
    const terms = s.engine.tidy(() => {
      const { total: loss, terms } = s.model.forward(batch, s.lossWeights);
      const k = (s.scaler ? s.scaler.scale : 1) / batches.count;
      backward(k === 1 ? loss : scale(loss, k));
      return terms;
    });
    pending.push(terms);
    onMicroBatch?.(micro + 1, batches.count);
  }
  return { count: batches.count, sums: {}, tokens, pending };
}

/**
 * Reads `acc.pending` (the loss terms left on the GPU) into `acc.sums`, together with `extra` tensors
 * (one wait for all), and frees them; returns the values of `extra` (first element of each).
 */
export async function settleSums(e: Engine, acc: Accumulated, extra: Tensor[] = []): Promise<number[]> {
  const pending = acc.pending ?? [];
  const flat = pending.flatMap((terms) => Object.entries(terms));
  const values = await e.readMany([...extra, ...flat.map(([, t]) => t)]);
  flat.forEach(([k], i) => acc.sums[k] = (acc.sums[k] ?? 0) + values[extra.length + i][0]);
  for (const terms of pending) for (const t of new Set(Object.values(terms))) t.dispose(); // total may be a term
  acc.pending = [];
  return values.slice(0, extra.length).map((v) => v[0]);
}

/**
 * Finishes a step on the accumulated gradients: unscales them (with a scaler), clips them to
 * `maxGradNorm`, skips the update when the loss or the norm is not finite (with a scaler: as the
 * scaler decides, which also backs its scale off; with `replicas`, when any rank's are not finite),
 * else steps the optimizer at `lr`; then zeroes the gradients and records the outcome with the guard (which throws after too many skips in a row).
 */
export async function finishStep(
  s: StepSetup,
  acc: Accumulated,
  lr: number,
  step: number,
): Promise<{ losses: Record<string, number>; gradNorm: number; skipped: boolean }> {
  if (s.scaler) unscaleGrads(s.engine, s.params, 1 / s.scaler.scale);
  // Measured even without clipping: an overflowed gradient skips the step whatever the loss says.
  const grads = leaves(s.params).flatMap((p) => p.grad ? [p.grad] : []);
  const normT = s.maxGradNorm > 0
    ? clipGradNorm(s.params, s.maxGradNorm)
    : grads.length
    ? globalNorm(grads)
    : null;
  const [gradNorm = 0] = await settleSums(s.engine, acc, normT ? [normT] : []); // the step's one wait
  normT?.dispose();
  const finiteHere = Number.isFinite(gradNorm) && Object.values(acc.sums).every(Number.isFinite);
  const finite = s.replicas ? !(await s.replicas.any(!finiteHere)) : finiteHere;
  const skipped = s.scaler ? s.scaler.update(finite).skip : !finite;
  if (!skipped) s.opt.step(lr);
  zeroGrad(s.params);
  if (!skipped) await s.replicas?.afterUpdate();
  s.guard.record(skipped, { step, scale: s.scaler?.scale });
  const losses = Object.fromEntries(Object.entries(acc.sums).map(([k, v]) => [k, v / acc.count]));
  return { losses, gradNorm, skipped };
}

/** Multiplies every gradient by `s` (undoes the f16 loss scale before clipping and the update). */
function unscaleGrads(e: Engine, params: Tensor[], s: number): void {
  e.noGrad(() => {
    for (const p of leaves(params)) {
      if (!p.grad) continue;
      const g = e.tidy(() => scale(p.grad!, s));
      e.untrack(g);
      p.grad.dispose();
      p.grad = g;
    }
  });
}
