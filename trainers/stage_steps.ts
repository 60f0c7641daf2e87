/**
 * How many optimizer steps a stage takes on its rows, as the trainer counts them, and what is wrong
 * with a stage too small for its batch or its warmup: an epoch shorter than one optimizer step's rows,
 * or a stage whose every step is a warmup step (a one-step stage runs at learning rate 0 and changes
 * nothing).
 *
 * ```ts
 * const stage = { batchSize: 1, gradAccum: 32, epochs: 1, maxSteps: null, lr: 1e-3, warmupRatio: 0.03 };
 * stageSteps(stage, 24); // { rowsPerStep: 32, stepsPerEpoch: 1, total: 1, warmup: 1 }
 * stageStepWarnings(stage, 24).length; // 2
 * ```
 * @module
 */

import type { StageConfig } from "./config.ts";
import { warmupSteps } from "./schedule.ts";

/** The fields of a stage that decide its steps. */
export type StageStepFields = Pick<
  StageConfig,
  "batchSize" | "gradAccum" | "epochs" | "maxSteps" | "lr" | "warmupRatio"
>;

/** A stage's optimizer steps. */
export interface StageSteps {
  /** Rows per optimizer step: batchSize x gradAccum. */
  rowsPerStep: number;
  /** Steps per pass over the rows: floor(rows / rowsPerStep), at least 1. */
  stepsPerEpoch: number;
  /** The stage's steps: `maxSteps`, else stepsPerEpoch x epochs. */
  total: number;
  /** Of those, warmup steps: ceil(warmupRatio x total); the first runs at learning rate 0. */
  warmup: number;
}

/** The optimizer steps of `stage` on `rows` usable rows (as the trainer takes them). */
export function stageSteps(stage: StageStepFields, rows: number): StageSteps {
  const rowsPerStep = stage.batchSize * stage.gradAccum;
  const stepsPerEpoch = Math.max(1, Math.floor(rows / rowsPerStep));
  const total = stage.maxSteps ?? stepsPerEpoch * stage.epochs;
  const warmup = warmupSteps({ lr: stage.lr, totalSteps: total, warmupRatio: stage.warmupRatio });
  return { rowsPerStep, stepsPerEpoch, total, warmup };
}

/**
 * What makes `stage` train badly on `rows` usable rows, each with its fix: an epoch shorter than one
 * optimizer step's rows, and a stage with no step past its warmup. Empty when neither holds.
 */
export function stageStepWarnings(stage: StageStepFields, rows: number): string[] {
  const s = stageSteps(stage, rows);
  const out: string[] = [];
  if (rows < s.rowsPerStep) {
    out.push(
      `an epoch (${rows} rows) is shorter than one optimizer step (batchSize ${stage.batchSize} x ` +
        `gradAccum ${stage.gradAccum} = ${s.rowsPerStep} rows), so each step reaches into the next epoch; ` +
        `lower batchSize or gradAccum, or give the stage more rows`,
    );
  }
  if (s.warmup >= s.total) {
    out.push(
      (s.total === 1
        ? `the stage's one step is a warmup step (warmupRatio ${stage.warmupRatio}), so it runs at lr 0 ` +
          `and changes nothing`
        : `all ${s.total} steps are warmup steps (warmupRatio ${stage.warmupRatio}), so the learning rate ` +
          `never reaches lr ${stage.lr}`) +
        `; set warmupRatio: 0, or give the stage more steps (epochs, maxSteps, a smaller batchSize x gradAccum)`,
    );
  }
  return out;
}
