/**
 * The two-stage trainer: builds the model from a run config, then for each stage sets what trains,
 * streams micro-batches of its LLaVA data, accumulates gradients, clips, steps AdamW on a warmup +
 * cosine schedule, skips non-finite steps (with dynamic loss scaling in f16), reports progress on one
 * line, appends `metrics.jsonl`, redraws `loss.svg` / `lr.svg`, and writes atomic checkpoints that
 * `resume` continues from exactly: a run stopped after step n and resumed computes the same losses
 * from step n + 1 on as the run that never stopped.
 *
 * Run folder: `metrics.jsonl`, `loss.svg`, `lr.svg`, `config.json` (the parsed config), `tokenizer/` (a
 * copy of the text tokenizer's files), `checkpoints/`, and `eval.json` with `train.evalData`.
 * @module
 */

import { dirname, join } from "node:path";
import type { Engine } from "../core/engine.ts";
import type { Tensor } from "../core/tensor.ts";
import { backward, leaves, zeroGrad } from "../core/autograd.ts";
import { AdamW } from "../core/kernels/adamw/adamw.ts";
import { clipGradNorm } from "../core/kernels/clip/clip.ts";
import { scale } from "../core/kernels/elementwise/elementwise.ts";
import { copyTokenizerFiles } from "../models/export.ts";
import { AsvrModel } from "../models/asvr_model.ts";
import { TextTokenizer } from "../tokenizers/text_tokenizer.ts";
import { Checkpoint, writeTextAtomic } from "../io/safetensors.ts";
import { loadParams } from "../io/params.ts";
import { modelConfig, type RunConfig, type StageConfig } from "./config.ts";
import { lrAt } from "./schedule.ts";
import {
  CHECKPOINT_FILES,
  loadCheckpoint,
  type LoadedCheckpoint,
  restoreAdamW,
  saveCheckpoint,
} from "./checkpoint.ts";
import { type MetricsRecord, MetricsWriter, readMetrics } from "./metrics.ts";
import { ProgressLine, transferProgressPrinter } from "./progress.ts";
import { writeCurves } from "./svg.ts";
import { LossScaler, type LossScalerState, NonFiniteGuard } from "./loss_scaler.ts";
import { encoderInput, StageData } from "./stage_data.ts";
import { evaluate } from "./evaluate.ts";
import { loadQuestions, type Question } from "../eval/questions.ts";
import { type EvalReport, formatReport } from "../eval/report.ts";

/** Options of {@linkcode train}. */
export interface TrainOptions {
  /** The run folder (created). */
  runDir: string;
  /** Continue from the latest checkpoint of `runDir` (true), or of the run or checkpoint folder given. */
  resume?: boolean | string;
  /** Stop after this many optimizer steps in all (as if interrupted; a checkpoint is written). */
  stopAfter?: number;
  /** Stop after the current step, with a checkpoint, once aborted (the CLI aborts it on Ctrl-C). */
  signal?: AbortSignal;
  /** Where progress lines go (default: the terminal). */
  print?: (line: string) => void;
}

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

/** What {@linkcode train} returns. */
export interface TrainResult {
  /** The run folder. */
  runDir: string;
  /** Every step record of this call (resumed runs: from the resume point on). */
  history: StepRecord[];
  /** Rows skipped as bad (`data.onError: "skip"`), per stage name. */
  skippedRows: Record<string, number>;
  /** Whether `stopAfter` ended the run early. */
  stopped: boolean;
  /** The last checkpoint written. */
  checkpoint: string | null;
  /** The final evaluation (with `train.evalData`), also written to `eval.json`. */
  eval: EvalReport | null;
}

/** Where a run stands: saved in each checkpoint's trainer_state.json. */
interface Position {
  /** Index of the current stage. */
  stage: number;
  /** Optimizer steps done in the current stage. */
  stageStep: number;
  /** Optimizer steps done over the run. */
  step: number;
  /** Epoch within the stage. */
  epoch: number;
  /** Next row of the epoch's order. */
  row: number;
  /** The f16 loss scaler's state (it carries over from stage to stage). */
  scaler: LossScalerState;
}

/**
 * Trains `cfg` on engine `e`; see the module doc. Throws with a clear message on bad data (unless
 * `data.onError` is "skip"), on missing files, and after `train.maxNonFinite` non-finite steps in a row.
 */
export async function train(e: Engine, cfg: RunConfig, opts: TrainOptions): Promise<TrainResult> {
  const print = opts.print ?? ((l: string) => console.log(l));
  await Deno.mkdir(opts.runDir, { recursive: true });
  await writeTextAtomic(join(opts.runDir, "config.json"), JSON.stringify(cfg, null, 2) + "\n");
  const tokDir = cfg.data.tokenizer ?? requirePath(cfg);
  const tokenizer = await TextTokenizer.load(tokDir);
  // The run keeps its tokenizer's files, so it evaluates and exports without its sources.
  await Deno.mkdir(join(opts.runDir, "tokenizer"), { recursive: true });
  await copyTokenizerFiles(tokDir, join(opts.runDir, "tokenizer"));
  const loading = transferProgressPrinter(print);
  const model = await AsvrModel.build(e, modelConfig(cfg), {
    dtype: cfg.train.dtype,
    seed: cfg.train.seed,
    checkpointLayers: cfg.train.checkpointLayers,
    onLoadProgress: (part, p) => loading(`loading ${part}`, p),
  });
  const history: StepRecord[] = [];
  const skippedRows: Record<string, number> = {};
  let pos: Position = { stage: 0, stageStep: 0, step: 0, epoch: 0, row: 0, scaler: new LossScaler().state() };
  let resumed: LoadedCheckpoint | null = null;
  let checkpoint: string | null = null;
  if (opts.resume) {
    const from = typeof opts.resume === "string" ? opts.resume : opts.runDir;
    const ck = await loadCheckpoint(from, { expectParams: model.params() });
    const dir = ck.dir;
    // The names and shapes match (checked above); the values go up one tensor at a time.
    const file = await Checkpoint.open(join(dir, CHECKPOINT_FILES.model));
    try {
      await loadParams(model.params(), file, { onProgress: (p) => loading(`loading checkpoint ${dir}`, p) });
    } finally {
      file.close();
    }
    pos = ck.trainerState.position as Position;
    resumed = ck;
    checkpoint = dir;
    print(`resumed from ${dir}: stage ${pos.stage + 1}, step ${pos.step}`);
  }
  const metrics = await MetricsWriter.open(opts.runDir, opts.resume ? { resumeStep: pos.step } : {});
  const records = await readMetrics(opts.runDir);
  const questions = cfg.train.evalData ? await loadQuestions(cfg.train.evalData) : null;
  const runEval = questions
    ? async (step: number, stage: StageConfig): Promise<EvalReport> => {
      const { image, imageTokens } = encoderInput(cfg, model.encoder, stage.imageMode, "train.evalData");
      const report = await evaluate(model, tokenizer, questions as Question[], {
        template: stage.template,
        imageRoot: dirname(cfg.train.evalData!),
        image,
        imageTokens,
        maxNewTokens: cfg.train.evalMaxNewTokens,
      });
      report.meta.step = step;
      report.meta.stage = stage.name;
      await writeTextAtomic(
        join(opts.runDir, `eval-step-${step}.json`),
        JSON.stringify(report, null, 1) + "\n",
      );
      print(`eval at step ${step} (${stage.name}):\n${formatReport(report.summary)}`);
      return report;
    }
    : null;
  let finalEval: EvalReport | null = null;
  let stopped = false;
  try {
    for (; pos.stage < cfg.train.stages.length; pos = nextStage(pos)) {
      const stage = cfg.train.stages[pos.stage];
      const data = await StageData.open(cfg, stage, tokenizer, model, {
        seed: cfg.train.seed + 1000 * pos.stage,
      });
      try {
        const r = await runStage(e, cfg, stage, model, data, pos, resumed, {
          runDir: opts.runDir,
          signal: opts.signal,
          write: opts.print ? (t) => opts.print!(t.replace(/^\r|\n$/g, "")) : null,
          stopAfter: opts.stopAfter,
          print,
          metrics,
          records,
          history,
          evaluate: runEval,
        });
        resumed = null;
        checkpoint = r.checkpoint ?? checkpoint;
        skippedRows[stage.name] = data.skipped;
        if (data.skipped > 0) {
          print(`stage ${stage.name}: ${data.skipped} bad rows skipped (data.onError "skip")`);
        }
        if (r.stopped) {
          stopped = true;
          break;
        }
        if (runEval && pos.stage === cfg.train.stages.length - 1) {
          finalEval = await runEval(pos.step, stage);
          await writeTextAtomic(join(opts.runDir, "eval.json"), JSON.stringify(finalEval, null, 1) + "\n");
        }
      } finally {
        data.close();
      }
    }
  } finally {
    metrics.close();
    await writeCurves(opts.runDir, records);
    await model.dispose();
  }
  return { runDir: opts.runDir, history, skippedRows, stopped, checkpoint, eval: finalEval };
}

function nextStage(p: Position): Position {
  return { ...p, stage: p.stage + 1, stageStep: 0, epoch: 0, row: 0 };
}

function requirePath(cfg: RunConfig): string {
  if (cfg.llm.path) return cfg.llm.path;
  throw new Error(
    `data.tokenizer: the LLM is randomly initialized (llm.config), so give data.tokenizer: a folder with ` +
      `tokenizer.json`,
  );
}

interface StageContext {
  runDir: string;
  signal?: AbortSignal;
  /** Progress text (null: the terminal). */
  write: ((text: string) => void) | null;
  stopAfter?: number;
  print: (line: string) => void;
  metrics: MetricsWriter;
  records: MetricsRecord[];
  history: StepRecord[];
  /** Runs the evaluation and logs it (null: no `train.evalData`). */
  evaluate: ((step: number, stage: StageConfig) => Promise<EvalReport>) | null;
}

/** Runs one stage from `pos` (mutated as it goes); returns the last checkpoint and whether it stopped. */
async function runStage(
  e: Engine,
  cfg: RunConfig,
  stage: StageConfig,
  model: AsvrModel,
  data: StageData,
  pos: Position,
  resumed: LoadedCheckpoint | null,
  ctx: StageContext,
): Promise<{ checkpoint: string | null; stopped: boolean }> {
  model.setTrainable(stage.trainable);
  const named = [...model.params()].filter(([, t]) => t.requiresGrad);
  const params = named.map(([, t]) => t);
  const opt = new AdamW(params, { lr: stage.lr, weightDecay: stage.weightDecay });
  if (resumed) await restoreAdamW(opt, named.map(([n]) => n), resumed);
  const perStep = stage.batchSize * stage.gradAccum;
  const stepsPerEpoch = Math.max(1, Math.floor(data.rows / perStep));
  const total = stage.maxSteps ?? stepsPerEpoch * stage.epochs;
  const sched = { lr: stage.lr, totalSteps: total, warmupRatio: stage.warmupRatio, schedule: stage.schedule };
  const f16 = cfg.train.dtype === "f16" && cfg.train.lossScale === "dynamic";
  const scaler = new LossScaler();
  scaler.loadState(pos.scaler);
  const guard = new NonFiniteGuard({ maxConsecutive: cfg.train.maxNonFinite });
  const lossWeights = { ...cfg.loss, visualWeight: stage.visualWeight ?? cfg.loss.visualWeight };
  const progress = new ProgressLine(ctx.write ? { write: ctx.write, isTty: false, intervalSec: 0 } : {});
  ctx.print(
    `stage ${pos.stage + 1}/${cfg.train.stages.length} ${stage.name}: ${data.rows} rows, ${total} steps of ` +
      `${stage.batchSize} x ${stage.gradAccum} rows, lr ${stage.lr}, trains ${
        Object.entries(stage.trainable).filter(([, v]) => v).map(([k]) => k).join(" + ")
      } (${(params.reduce((s, p) => s + p.size, 0) / 1e6).toFixed(2)} M parameters)`,
  );
  let checkpoint: string | null = null;
  const save = async () => {
    checkpoint = await saveCheckpoint(ctx.runDir, {
      step: pos.step,
      params: model.params(),
      optimizer: { names: named.map(([n]) => n), state: opt }, // read one tensor at a time
      trainerState: { position: { ...pos, scaler: scaler.state() }, stage: stage.name, config: cfg.name },
      keepLast: cfg.train.keepLast,
    });
  };
  while (pos.stageStep < total) {
    const t0 = performance.now();
    const lr = lrAt(pos.stageStep, sched);
    const sums: Record<string, number> = {};
    let tokens = 0;
    for (let micro = 0; micro < stage.gradAccum; micro++) {
      if (pos.row + stage.batchSize > data.rowsPerEpoch(pos.epoch)) {
        pos.epoch++;
        pos.row = 0;
      }
      const batch = await data.batch(pos.epoch, pos.row, stage.batchSize);
      pos.row += stage.batchSize;
      if (!batch) continue; // every row of it was bad and skipped
      tokens += batch.inputIds.length;
      const terms = e.tidy(() => {
        const { total: loss, terms } = model.forward(batch, lossWeights);
        const k = (f16 ? scaler.scale : 1) / stage.gradAccum;
        backward(k === 1 ? loss : scale(loss, k));
        return terms;
      });
      const values = await readScalars(terms);
      for (const [k, v] of Object.entries(values)) sums[k] = (sums[k] ?? 0) + v;
      for (const t of Object.values(terms)) t.dispose();
    }
    if (f16) unscaleGrads(e, params, 1 / scaler.scale);
    const normT = cfg.train.maxGradNorm > 0 ? clipGradNorm(params, cfg.train.maxGradNorm) : null;
    const gradNorm = normT ? (await normT.read())[0] : 0;
    normT?.dispose();
    const finite = Number.isFinite(gradNorm) && Object.values(sums).every(Number.isFinite);
    const skip = f16 ? scaler.update(finite).skip : !finite;
    pos.scaler = scaler.state();
    if (!skip) opt.step(lr);
    zeroGrad(params);
    guard.record(skip, { step: pos.step + 1, scale: f16 ? scaler.scale : undefined });
    pos.stageStep++;
    pos.step++;
    const losses = Object.fromEntries(
      Object.entries(sums).map(([k, v]) => [`loss_${k}`, v / stage.gradAccum]),
    );
    const ms = performance.now() - t0;
    const rec: StepRecord = {
      step: pos.step,
      stage: stage.name,
      stageStep: pos.stageStep,
      lr,
      losses,
      gradNorm,
      skipped: skip,
      tokensPerSecond: tokens / (ms / 1000),
    };
    ctx.history.push(rec);
    const line: MetricsRecord = {
      step: pos.step,
      stage: stage.name,
      stage_step: pos.stageStep,
      lr,
      grad_norm: gradNorm,
      skipped: skip,
      tokens_per_s: rec.tokensPerSecond,
      ...losses,
    };
    ctx.metrics.write(line);
    ctx.records.push(line);
    progress.update({
      stage: { index: pos.stage + 1, count: cfg.train.stages.length },
      step: pos.stageStep,
      totalSteps: total,
      losses,
      lr,
      tokensPerSec: rec.tokensPerSecond,
      gpuBytes: e.pool.bytesInUse,
    });
    const last = pos.stageStep === total;
    if (ctx.evaluate && cfg.train.evalEvery > 0 && pos.step % cfg.train.evalEvery === 0 && !last) {
      const report = await ctx.evaluate(pos.step, stage);
      const acc: MetricsRecord = {
        step: pos.step,
        stage: stage.name,
        eval_accuracy: report.summary.overall.accuracy,
      };
      ctx.metrics.write(acc);
    }
    const stop = (ctx.stopAfter !== undefined && pos.step >= ctx.stopAfter) || ctx.signal?.aborted === true;
    if (last || stop || (cfg.train.saveEvery > 0 && pos.step % cfg.train.saveEvery === 0)) {
      if (last) pos.stageStep = total;
      await save();
      await writeCurves(ctx.runDir, ctx.records);
    }
    if (stop && !last) {
      opt.dispose();
      return { checkpoint, stopped: true };
    }
  }
  opt.dispose();
  return {
    checkpoint,
    stopped: (ctx.stopAfter !== undefined && pos.step >= ctx.stopAfter) || ctx.signal?.aborted === true,
  };
}

/** Reads scalar loss terms (one wait for all). */
async function readScalars(terms: Record<string, Tensor>): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const [k, t] of Object.entries(terms)) out[k] = (await t.read())[0];
  return out;
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
