/**
 * The step loop the tiny pretraining runs share: each step records its work and returns its loss
 * (an f32 scalar still on the GPU); every `readEvery` steps the pending losses are gathered into one
 * tensor and read back together, so a run waits on the GPU once per `readEvery` steps, not once per
 * step. Also: seeded epoch-wise shuffling of example indices into batches.
 * @module
 */

import { reshape } from "../../core/autograd.ts";
import type { Engine } from "../../core/engine.ts";
import { concat } from "../../core/kernels/rows/rows.ts";
import { rng, shuffleInPlace } from "../../core/random.ts";
import type { Tensor } from "../../core/tensor.ts";

/** Options of {@linkcode trainSteps}. */
export interface TrainStepsOptions {
  /** How many steps to run (>= 1). */
  steps: number;
  /** Read the pending losses back after this many steps (>= 1), and after the last step. */
  readEvery: number;
  /** Called with each step's loss, in step order, when the losses are read back. */
  onStep?: (step: number, loss: number) => void;
  /** Names the run in errors (e.g. "pretrainLlm"). */
  label: string;
}

/**
 * Runs `step(i)` for i = 0..steps-1. Each call records one training step (inside its own
 * `e.tidy`) and returns the step's loss, a scalar f32 tensor the loop then owns. Returns the loss of
 * every step. A non-finite loss stops the run with an error naming the step.
 */
export async function trainSteps(
  e: Engine,
  opts: TrainStepsOptions,
  step: (i: number) => Tensor,
): Promise<number[]> {
  const { steps, readEvery, onStep, label } = opts;
  if (!Number.isInteger(steps) || steps < 1) throw new Error(`${label}: steps must be an integer >= 1`);
  if (!Number.isInteger(readEvery) || readEvery < 1) {
    throw new Error(`${label}: readEvery must be an integer >= 1`);
  }
  const losses: number[] = [];
  let pending: Tensor[] = [];
  const drain = async () => {
    const all = e.noGrad(() => e.tidy(() => concat(pending.map((l) => reshape(l, [1])), 0))); // [k]
    let values: ArrayLike<number>;
    try {
      values = await all.read();
    } finally {
      all.dispose();
      for (const l of pending) l.dispose();
      pending = [];
    }
    for (let j = 0; j < values.length; j++) {
      const s = losses.length, v = values[j];
      if (!Number.isFinite(v)) {
        throw new Error(`${label}: the loss of step ${s} is ${v}; lower the learning rate (lr)`);
      }
      losses.push(v);
      onStep?.(s, v);
    }
  };
  for (let i = 0; i < steps; i++) {
    const loss = step(i);
    if (loss.size !== 1) throw new Error(`${label}: step ${i} returned ${loss}, not a scalar loss`);
    pending.push(loss);
    if (pending.length >= readEvery || i === steps - 1) await drain();
  }
  return losses;
}

/**
 * Batches of example indices: each epoch visits every index of [0, n) once in a seeded random
 * order; a batch that crosses an epoch's end continues into the next epoch's order.
 */
export class BatchSampler {
  readonly #n: number;
  readonly #random: () => number;
  #order: number[] = [];
  #at = 0;

  /** A sampler over `n` (>= 1) examples, shuffled by `seed`. */
  constructor(n: number, seed: number) {
    if (!Number.isInteger(n) || n < 1) throw new Error(`BatchSampler: need at least one example, got ${n}`);
    this.#n = n;
    this.#random = rng(seed);
  }

  /** The next `size` indices. */
  next(size: number): number[] {
    const out: number[] = [];
    while (out.length < size) {
      if (this.#at === this.#order.length) this.#shuffle();
      out.push(this.#order[this.#at++]);
    }
    return out;
  }

  #shuffle(): void {
    this.#order = shuffleInPlace(Array.from({ length: this.#n }, (_, i) => i), this.#random);
    this.#at = 0;
  }
}
