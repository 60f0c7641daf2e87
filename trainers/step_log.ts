/**
 * What the trainer records of each optimizer step, built once from the step's result: the
 * {@linkcode StepRecord} (what `train` returns), its line of `metrics.jsonl` and the progress line.
 * The loss terms keep the model's names (`text`, `visual_semantic`, `total`) up to here, where
 * {@linkcode metricName} gives them their one logged name (`loss_text`, `loss_visual_semantic`,
 * `loss_total`).
 *
 * ```ts ignore
 * const stage = { name: "pretrain", index: 1, count: 2 };
 * const log = new StepLogger({ metrics, records, history, stage, totalSteps, write: null });
 * // during a long step: `step 121/5000: micro-batch 17/64 (1m25s into the step)` every 30 s
 * const onMicroBatch = (done: number, count: number) => log.microBatch(stageStep, done, count);
 * const result = await trainStep(setup, batches, lr, step, onMicroBatch);
 * const rec = log.step({ step, stageStep, lr, result, gpuBytes: e.pool.bytesInUse });
 * // rec.losses.loss_text, and the same values in metrics.jsonl and on the progress line
 * ```
 * @module
 */

import type { MetricsRecord, MetricsWriter } from "./metrics.ts";
import { formatMicroBatch, ProgressLine } from "./progress.ts";
import type { StepResult } from "./step.ts";

/** One optimizer step's record (also a line of `metrics.jsonl`). */
export interface StepRecord {
  /** Optimizer steps over the whole run, this one included. */
  step: number;
  /** The stage's name. */
  stage: string;
  /** Optimizer steps within the stage, this one included. */
  stageStep: number;
  /** Learning rate used. */
  lr: number;
  /** Mean loss terms over the step's micro-batches (`loss_text`, `loss_visual_<name>`, `loss_total`). */
  losses: Record<string, number>;
  /** Pre-clip gradient norm. */
  gradNorm: number;
  /** Whether the step was skipped (non-finite gradients). */
  skipped: boolean;
  /** Tokens (all positions of the rows) per second over the step. */
  tokensPerSecond: number;
}

/**
 * The logged name of a model's loss term, the one place a term is renamed: `text` -> `loss_text`,
 * `visual_pixel` -> `loss_visual_pixel`, `total` -> `loss_total`.
 */
export function metricName(term: string): string {
  return `loss_${term}`;
}

/** The `metrics.jsonl` line of a step record (snake_case keys, then its losses). */
export function metricsLine(rec: StepRecord): MetricsRecord {
  return {
    step: rec.step,
    stage: rec.stage,
    stage_step: rec.stageStep,
    lr: rec.lr,
    grad_norm: rec.gradNorm,
    skipped: rec.skipped,
    tokens_per_s: rec.tokensPerSecond,
    ...rec.losses,
  };
}

/** Options of {@linkcode StepLogger}. */
export interface StepLoggerOptions {
  /** The run's metrics log. */
  metrics: MetricsWriter;
  /** The run's metrics records (each step's line is appended, for the curves). */
  records: MetricsRecord[];
  /** The run's step records (each step's record is appended). */
  history: StepRecord[];
  /** The stage: its name and its place, 1-based, of `count` stages. */
  stage: { name: string; index: number; count: number };
  /** Optimizer steps of the whole stage. */
  totalSteps: number;
  /** Where progress text goes, as plain lines (null: the terminal, redrawn in place). */
  write: ((text: string) => void) | null;
  /**
   * During a step, a micro-batch line ({@linkcode StepLogger.microBatch}) once this many seconds have
   * passed since the step started or since the last such line (default 30).
   */
  microBatchSec?: number;
  /** Also a micro-batch line every this many micro-batches (default 0: by time only). */
  microBatchEvery?: number;
  /** The clock in milliseconds (default `performance.now`). */
  now?: () => number;
}

/** Where a logged step stands, and its outcome. */
export interface LoggedStep {
  /** Optimizer steps over the whole run, this one included. */
  step: number;
  /** Optimizer steps within the stage, this one included. */
  stageStep: number;
  /** Learning rate used. */
  lr: number;
  /** What `trainStep` returned. */
  result: StepResult;
  /** GPU memory in use, in bytes (for the progress line). */
  gpuBytes: number;
}

/** Records one stage's steps: the step record, its metrics line and the progress line, from one result. */
export class StepLogger {
  #opts: StepLoggerOptions;
  #progress: ProgressLine;
  #now: () => number;
  /** When the step under way started (the previous step's end), in ms. */
  #stepStart: number;
  /** When the last micro-batch line was drawn (or the step started), in ms. */
  #drawnAt: number;

  /** A logger of one stage's steps. */
  constructor(opts: StepLoggerOptions) {
    for (const k of ["microBatchSec", "microBatchEvery"] as const) {
      const v = opts[k];
      if (v !== undefined && !(v >= 0)) throw new Error(`StepLogger: ${k} must be a number >= 0, got ${v}`);
    }
    this.#opts = opts;
    this.#now = opts.now ?? (() => performance.now());
    this.#progress = new ProgressLine(
      opts.write ? { write: opts.write, isTty: false, intervalSec: 0, now: this.#now } : { now: this.#now },
    );
    this.#stepStart = this.#drawnAt = this.#now();
  }

  /**
   * Tells where step `stageStep` (the one under way) stands: `done` of `count` micro-batches. Draws
   * `step 121/5000: micro-batch 17/64 (1m25s into the step)` once `microBatchSec` seconds have passed
   * since the step started or the last such line, or every `microBatchEvery` micro-batches; never for
   * the step's last micro-batch (the step's own line follows). Pass it to `trainStep` as `onMicroBatch`.
   */
  microBatch(stageStep: number, done: number, count: number): void {
    if (done >= count) return;
    const o = this.#opts, now = this.#now();
    const every = o.microBatchEvery ?? 0;
    const due = now - this.#drawnAt >= (o.microBatchSec ?? 30) * 1000 || (every > 0 && done % every === 0);
    if (!due) return;
    this.#drawnAt = now;
    this.#progress.status(formatMicroBatch({
      stage: { index: o.stage.index, count: o.stage.count },
      step: stageStep,
      totalSteps: o.totalSteps,
      done,
      count,
      seconds: (now - this.#stepStart) / 1000,
    }));
  }

  /** Records step `s`: appends its record to `history`, its line to the log and `records`; draws progress. */
  step(s: LoggedStep): StepRecord {
    const o = this.#opts;
    const r = s.result;
    const rec: StepRecord = {
      step: s.step,
      stage: o.stage.name,
      stageStep: s.stageStep,
      lr: s.lr,
      losses: Object.fromEntries(Object.entries(r.losses).map(([k, v]) => [metricName(k), v])),
      gradNorm: r.gradNorm,
      skipped: r.skipped,
      tokensPerSecond: r.tokens / r.seconds,
    };
    o.history.push(rec);
    const line = metricsLine(rec);
    o.metrics.write(line);
    o.records.push(line);
    this.#progress.update({
      stage: { index: o.stage.index, count: o.stage.count },
      step: rec.stageStep,
      totalSteps: o.totalSteps,
      losses: rec.losses,
      lr: rec.lr,
      tokensPerSec: rec.tokensPerSecond,
      gpuBytes: s.gpuBytes,
    });
    this.#stepStart = this.#drawnAt = this.#now();
    return rec;
  }

  /** Logs an evaluation's overall accuracy at `step` (a line of its own; not a curve record). */
  eval(step: number, accuracy: number): void {
    this.#opts.metrics.write({ step, stage: this.#opts.stage.name, eval_accuracy: accuracy });
  }
}
