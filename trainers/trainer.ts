/**
 * The two-stage trainer: builds the model from a run config, then for each stage sets what trains,
 * streams micro-batches of its LLaVA data, accumulates gradients, clips, steps AdamW on a warmup +
 * cosine schedule, skips non-finite steps (with dynamic loss scaling in f16), reports progress on one
 * line, appends `metrics.jsonl`, redraws `loss.svg` / `lr.svg`, and writes atomic checkpoints that
 * `resume` continues from exactly: a run stopped after step n and resumed computes the same losses
 * from step n + 1 on as the run that never stopped. A new run refuses a folder that holds another run
 * (see run_dir.ts), unless told to overwrite it.
 *
 * Data-parallel (`parallel`, under MPI): every rank runs this with the same config; each step's
 * micro-batches are dealt round the ranks in order (rank r takes global micro-batches r, r + N, ...), so N
 * ranks see the rows one process would; gradients are averaged over the ranks before the update, and
 * decisions (skip a step, stop) are taken together. Rank 0 alone writes the run folder, prints and
 * evaluates; with `train.distributed.shardOptimizer` every rank writes its optimizer shard into each
 * checkpoint (so the run folder must be on a file system every rank sees).
 *
 * Run folder: `metrics.jsonl`, `loss.svg`, `lr.svg`, `config.json` (the parsed config), `tokenizer/` (a
 * copy of the text tokenizer's files), `checkpoints/`, and `eval.json` with `train.evalData`.
 * @module
 */

import { dirname, join } from "node:path";
import type { Engine } from "../core/engine.ts";
import type { Tensor } from "../core/tensor.ts";
import { AdamW } from "../core/kernels/adamw/adamw.ts";
import { engineAttentionKernel, isTunedAttention } from "../core/kernels/attention/attention.ts";
import { formatTuning, tuneAttention } from "../core/kernels/attention/attention_tune.ts";
import { recordMatmulShapes } from "../core/kernels/matmul/matmul.ts";
import { formatMatmulTuning, tuneRecordedMatmuls } from "../core/kernels/matmul/matmul_tune.ts";
import { copyTokenizerFiles } from "../models/export.ts";
import { type AsvrBatch, AsvrModel } from "../models/asvr_model.ts";
import { TextTokenizer } from "../tokenizers/text_tokenizer.ts";
import { Checkpoint, writeTextAtomic } from "../io/safetensors.ts";
import { loadParams } from "../io/params.ts";
import { modelConfig, type RunConfig, type StageConfig } from "./config.ts";
import { lrAt } from "./schedule.ts";
import {
  CHECKPOINT_FILES,
  loadCheckpoint,
  type LoadedCheckpoint,
  optimizerShardFile,
  restoreAdamW,
  saveCheckpoint,
  writeOptimizerShard,
} from "./checkpoint.ts";
import type { DataParallel } from "./data_parallel.ts";
import { shardOwners } from "./shard_owners.ts";
import { type MetricsRecord, MetricsWriter, readMetrics } from "./metrics.ts";
import { transferProgressPrinter } from "./progress.ts";
import { writeCurves } from "./svg.ts";
import { stageSteps, stageStepWarnings } from "./stage_steps.ts";
import { LossScaler, type LossScalerState, NonFiniteGuard } from "./loss_scaler.ts";
import { type MicroBatches, type Replicas, type StepSetup, trainStep } from "./step.ts";
import { StepLogger, type StepRecord } from "./step_log.ts";
import { encoderInput, StageData } from "./stage_data.ts";
import { evaluate } from "./evaluate.ts";
import { prepareNewRunDir } from "./run_dir.ts";
import { loadQuestions, type Question } from "../eval/questions.ts";
import { type EvalReport, formatReport } from "../eval/report.ts";
import { checkTrainerState, type TrainerState } from "./trainer_state.ts";
import {
  countKernelChoices,
  kernelChoicesOf,
  restoreKernelChoices,
  shareKernelChoices,
} from "./kernel_choices.ts";
import { configChanges } from "./config_changes.ts";
import { pathExists } from "../io/path_exists.ts";

/** Options of {@linkcode train}. */
export interface TrainOptions {
  /** The run folder (created). */
  runDir: string;
  /** Continue from the latest checkpoint of `runDir` (true), or of the run or checkpoint folder given. */
  resume?: boolean | string;
  /**
   * Without `resume`: delete the run files of a run already in `runDir` first. Default false: a `runDir`
   * that holds a run is an error (`RunDirInUseError` of run_dir.ts), so two runs' files never mix.
   */
  overwrite?: boolean;
  /** Stop after this many optimizer steps in all (as if interrupted; a checkpoint is written). */
  stopAfter?: number;
  /** Stop after the current step, with a checkpoint, once aborted (the CLI aborts it on Ctrl-C). */
  signal?: AbortSignal;
  /** Where progress lines go (default: the terminal). On a data-parallel run's other ranks: nowhere. */
  print?: (line: string) => void;
  /** The ranks of a data-parallel run (absent, or one rank: a single process). */
  parallel?: DataParallel;
  /**
   * Measure kernel choices on this GPU and use the fastest (default false): before each stage's first
   * step, the attention implementations at its shapes (`batchSize` rows of `data.maxLength` and of a
   * quarter of it, each also less one, with the LLM's heads; see `tuneAttention`); after each
   * stage's first step, the matmul kernels of every product that step ran (see `tuneMatmul`). Prints
   * the times; takes seconds. With `parallel`, rank 0 measures and the other ranks take its choices.
   * Checkpoints keep the choices (see kernel_choices.ts): a resumed run runs the kernels it ran before,
   * with or without `tune`, and measures only shapes it has not.
   */
  tune?: boolean;
}

/** What {@linkcode train} returns. */
export interface TrainResult {
  /** The run folder. */
  runDir: string;
  /** Every step record of this call (resumed runs: from the resume point on). */
  history: StepRecord[];
  /** Rows skipped as bad (`data.onError: "skip"`), per stage name. */
  skippedRows: Record<string, number>;
  /** Steps of this call skipped for a non-finite loss or gradients (no update), per stage name. */
  skippedSteps: Record<string, number>;
  /** Whether `stopAfter` or `signal` ended the run early. */
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
 * `data.onError` is "skip"), on missing files, after `train.maxNonFinite` non-finite steps in a row, and,
 * without `resume` or `overwrite`, when `runDir` holds a run (`RunDirInUseError` of run_dir.ts).
 */
export async function train(e: Engine, cfg: RunConfig, opts: TrainOptions): Promise<TrainResult> {
  const dp = opts.parallel && opts.parallel.size > 1 ? opts.parallel : null;
  const lead = !dp || dp.rank === 0; // writes the run folder, prints, evaluates
  const print = lead ? opts.print ?? ((l: string) => console.log(l)) : () => {};
  const tokDir = cfg.data.tokenizer ?? requirePath(cfg);
  if (lead) {
    if (opts.resume) await Deno.mkdir(opts.runDir, { recursive: true });
    else {
      const removed = await prepareNewRunDir(opts.runDir, { overwrite: opts.overwrite });
      if (removed.length) print(`overwrite: deleted the old run's ${removed.join(", ")} in ${opts.runDir}`);
    }
    if (opts.resume) await keepChangedConfig(opts.runDir, cfg, print);
    await writeTextAtomic(join(opts.runDir, "config.json"), JSON.stringify(cfg, null, 2) + "\n");
    // The run keeps its tokenizer's files, so it evaluates and exports without its sources.
    await Deno.mkdir(join(opts.runDir, "tokenizer"), { recursive: true });
    await copyTokenizerFiles(tokDir, join(opts.runDir, "tokenizer"));
  }
  await dp?.comm.barrier();
  const tokenizer = await TextTokenizer.load(tokDir);
  const loading = transferProgressPrinter(print);
  const model = await AsvrModel.build(e, modelConfig(cfg), {
    dtype: cfg.train.dtype,
    seed: cfg.train.seed,
    checkpointLayers: cfg.train.checkpointLayers,
    onLoadProgress: (part, p) => loading(`loading ${part}`, p),
  });
  const history: StepRecord[] = [];
  const skippedRows: Record<string, number> = {};
  const skippedSteps: Record<string, number> = {};
  let pos: Position = { stage: 0, stageStep: 0, step: 0, epoch: 0, row: 0, scaler: new LossScaler().state() };
  let resumed: LoadedCheckpoint | null = null;
  let checkpoint: string | null = null;
  if (opts.resume) {
    const from = typeof opts.resume === "string" ? opts.resume : opts.runDir;
    const ck = await loadCheckpoint(from, {
      expectParams: model.params(),
      checkState: (state, file, step) => checkTrainerState(state, file, cfg.train.stages, step),
      onNote: print,
    });
    const dir = ck.dir;
    // The names and shapes match (checked above); the values go up one tensor at a time.
    const file = await Checkpoint.open(join(dir, CHECKPOINT_FILES.model));
    try {
      await loadParams(model.params(), file, { onProgress: (p) => loading(`loading checkpoint ${dir}`, p) });
    } finally {
      file.close();
    }
    pos = ck.trainerState.position as Position;
    // The kernels it ran with (checked above): the same numbers as a run not stopped, on the same adapter.
    const kept = (ck.trainerState as unknown as TrainerState).kernelChoices;
    const line = kept && restoreKernelChoices(e, kept);
    if (line) print(line);
    resumed = ck;
    checkpoint = dir;
    print(`resumed from ${dir}: stage ${pos.stage + 1}, step ${pos.step}`);
  }
  const metrics = lead
    ? await MetricsWriter.open(opts.runDir, opts.resume ? { resumeStep: pos.step } : {})
    : MetricsWriter.discarding(opts.runDir);
  const records = await readMetrics(opts.runDir);
  const questions = cfg.train.evalData ? await loadQuestions(cfg.train.evalData) : null;
  const runEval = questions && lead
    ? async (step: number, stage: StageConfig): Promise<EvalReport> => {
      const { image, imageTokens } = encoderInput(cfg, model.encoder, stage.imageMode, "train.evalData");
      const report = await evaluate(model, tokenizer, questions as Question[], {
        template: stage.template,
        imageRoot: cfg.train.evalImageRoot ?? dirname(cfg.train.evalData!),
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
          write: !lead ? () => {} : opts.print ? (t) => opts.print!(t.replace(/^\r|\n$/g, "")) : null,
          stopAfter: opts.stopAfter,
          print,
          metrics,
          records,
          history,
          evaluate: runEval,
          parallel: dp,
          tune: opts.tune ?? false,
        });
        resumed = null;
        checkpoint = r.checkpoint ?? checkpoint;
        skippedRows[stage.name] = data.skipped;
        skippedSteps[stage.name] = r.skippedSteps;
        print(
          `stage ${pos.stage + 1}/${cfg.train.stages.length} ${stage.name}: ${r.steps} steps, ` +
            `${r.skippedSteps} skipped (non-finite loss or gradients: no update)` +
            (r.stopped ? `; stopped at step ${pos.stageStep}/${r.total}` : ""),
        );
        const rows = data.ledger.summary();
        const counts = dp ? await dp.sum(data.ledger.counts()) : data.ledger.counts();
        if (Object.values(counts).some((n) => n > 0)) {
          if (rows) print(`stage ${stage.name}: ${dp ? "rank 0's rows: " : ""}${rows}`);
          metrics.write({ step: pos.step, stage: stage.name, ...counts });
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
    if (lead) await writeCurves(opts.runDir, records, { runName: cfg.name });
    await model.dispose();
  }
  return { runDir: opts.runDir, history, skippedRows, skippedSteps, stopped, checkpoint, eval: finalEval };
}

/**
 * Times the attention implementations at a stage's shapes (its batch of `B` rows of `data.maxLength`,
 * and of a quarter of that length, and of each length less one) on `e` and makes the fastest its
 * choice; prints one line per shape. Skips shapes measured earlier in the run (kept by a resume), and
 * measures nothing where an implementation is set on `e` (`setAttentionKernel`, `--attention`).
 */
async function tuneStageAttention(
  e: Engine,
  cfg: RunConfig,
  model: AsvrModel,
  B: number,
  print: (line: string) => void,
): Promise<void> {
  const forced = engineAttentionKernel(e);
  if (forced !== "auto") return print(`attention: ${forced} is set, so its choice is not measured`);
  const { numHeads: NH, numKvHeads: NKV, headDim: HS, slidingWindow } = model.llm.cfg;
  const opts = { causal: true, ...(slidingWindow !== null ? { window: slidingWindow } : {}) };
  // Each length, and one less: the choice differs where T is not a multiple of 4 (see setTunedKernel).
  const T = cfg.data.maxLength, short = Math.round(T / 4);
  for (const t of (short >= 16 ? [T, short] : [T]).flatMap((t) => [t, t - 1])) {
    const d = { B, NH, NKV, T: t, HS };
    if (isTunedAttention(e, d, cfg.train.dtype, opts)) continue; // measured earlier in the run
    print(`attention measured at ${formatTuning(await tuneAttention(e, d, cfg.train.dtype, opts))}`);
  }
}

/**
 * Times the matmul kernels of each product the step just taken ran (recorded since
 * {@linkcode recordMatmulShapes} was switched on) and not measured yet, makes the fastest the choice of
 * products like it, and stops recording; prints a line per product and the time it all took.
 */
async function tuneStepMatmuls(e: Engine, print: (line: string) => void): Promise<void> {
  const t0 = performance.now();
  const done = await tuneRecordedMatmuls(e, (t) => print(formatMatmulTuning(t)));
  const s = ((performance.now() - t0) / 1000).toFixed(1);
  print(`matmul kernels measured for ${done.length} products in ${s} s`);
}

/**
 * Before a resume writes its config over the run's `config.json`: when they differ, says what changed
 * and keeps the run's config beside it as `config.<n>.json` (the first free n), so nothing is lost.
 */
async function keepChangedConfig(
  runDir: string,
  cfg: RunConfig,
  print: (line: string) => void,
): Promise<void> {
  const path = join(runDir, "config.json");
  let saved: unknown;
  try {
    saved = JSON.parse(await Deno.readTextFile(path));
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return;
    throw new Error(`${path}: cannot read the run's config (${(err as Error).message})`);
  }
  const changes = configChanges(saved, JSON.parse(JSON.stringify(cfg)));
  if (changes.length === 0) return;
  let n = 1;
  while (await pathExists(join(runDir, `config.${n}.json`))) n++;
  await writeTextAtomic(join(runDir, `config.${n}.json`), JSON.stringify(saved, null, 2) + "\n");
  const shown = changes.slice(0, 8).join("; ") +
    (changes.length > 8 ? `; and ${changes.length - 8} more` : "");
  print(`resume: the config differs from the run's (kept as config.${n}.json): ${shown}`);
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
  /** Runs the evaluation and logs it (null: no `train.evalData`, or not rank 0). */
  evaluate: ((step: number, stage: StageConfig) => Promise<EvalReport>) | null;
  /** The ranks of a data-parallel run (null: one process). */
  parallel: DataParallel | null;
  /**
   * Measure the attention implementations before the stage's first step and the matmul kernels of the
   * products of that step after it (see `tuneAttention`, `tuneMatmul`).
   */
  tune: boolean;
}

/** What {@linkcode runStage} did. */
interface StageOutcome {
  /** The last checkpoint written (null: none). */
  checkpoint: string | null;
  /** Whether `stopAfter` or the signal stopped it before its last step. */
  stopped: boolean;
  /** Steps taken by this call. */
  steps: number;
  /** Of those, steps skipped for a non-finite loss or gradients. */
  skippedSteps: number;
  /** The stage's steps in all. */
  total: number;
}

/** Runs one stage from `pos` (mutated as it goes). */
async function runStage(
  e: Engine,
  cfg: RunConfig,
  stage: StageConfig,
  model: AsvrModel,
  data: StageData,
  pos: Position,
  resumed: LoadedCheckpoint | null,
  ctx: StageContext,
): Promise<StageOutcome> {
  model.setTrainable(stage.trainable);
  const dp = ctx.parallel;
  const world = dp?.size ?? 1, rank = dp?.rank ?? 0;
  const localAccum = microBatchesPerRank(stage, world, cfg.train.distributed.keepGlobalBatch);
  const named = [...model.params()].filter(([, t]) => t.requiresGrad);
  const params = named.map(([, t]) => t);
  // A sharded optimizer: each rank updates the parameters it owns.
  const owners = dp && cfg.train.distributed.shardOptimizer
    ? shardOwners(params.map((p) => p.size), world)
    : null;
  const ownNamed = owners ? named.filter((_, i) => owners[i] === rank) : named;
  const opt = new AdamW(ownNamed.map(([, t]) => t), { lr: stage.lr, weightDecay: stage.weightDecay });
  if (resumed) {
    await restoreAdamW(opt, ownNamed.map(([n]) => n), resumed, { trains: new Set(named.map(([n]) => n)) });
  }
  const { total } = stageSteps({ ...stage, gradAccum: localAccum * world }, data.rows);
  const sched = { lr: stage.lr, totalSteps: total, warmupRatio: stage.warmupRatio, schedule: stage.schedule };
  const f16 = cfg.train.dtype === "f16" && cfg.train.lossScale === "dynamic";
  const scaler = new LossScaler();
  scaler.loadState(pos.scaler);
  const setup: StepSetup = {
    engine: e,
    model,
    params,
    opt,
    lossWeights: { ...cfg.loss, visualWeight: stage.visualWeight ?? cfg.loss.visualWeight },
    maxGradNorm: cfg.train.maxGradNorm,
    scaler: f16 ? scaler : null,
    guard: new RunGuard({ maxConsecutive: cfg.train.maxNonFinite }),
    replicas: dp ? replicasOf(dp, params, owners) : undefined,
  };
  const batches: MicroBatches = {
    count: localAccum,
    next: () => nextBatch(data, pos, stage.batchSize, world, rank),
  };
  const log = new StepLogger({
    metrics: ctx.metrics,
    records: ctx.records,
    history: ctx.history,
    stage: { name: stage.name, index: pos.stage + 1, count: cfg.train.stages.length },
    totalSteps: total,
    write: ctx.write,
  });
  ctx.print(
    `stage ${pos.stage + 1}/${cfg.train.stages.length} ${stage.name}: ${data.rows} rows, ${total} steps of ` +
      `${stage.batchSize} x ${localAccum * world} rows${
        dp ? ` (${localAccum} micro-batch(es) on each of ${world} ranks)` : ""
      }, lr ${stage.lr}, trains ${
        Object.entries(stage.trainable).filter(([, v]) => v).map(([k]) => k).join(" + ")
      } (${(params.reduce((s, p) => s + p.size, 0) / 1e6).toFixed(2)} M parameters)`,
  );
  for (const w of stageStepWarnings(stage, data.rows)) ctx.print(`stage ${stage.name}: warning: ${w}`);
  let checkpoint: string | null = null;
  let steps = 0, skippedSteps = 0;
  const save = async () => {
    const own = { names: ownNamed.map(([n]) => n), state: opt }; // read one tensor at a time
    // Sharded: each rank writes its shard into the checkpoint rank 0 seals.
    const writeShard = async (dir: string) => {
      const file = optimizerShardFile(rank, world);
      return { file, sha256: await writeOptimizerShard(`${dir}/${file}`, own, model.params()) };
    };
    if (rank === 0) {
      const kernelChoices = kernelChoicesOf(e); // kept by a resume (see kernel_choices.ts)
      checkpoint = await saveCheckpoint(ctx.runDir, {
        step: pos.step,
        params: model.params(),
        optimizer: owners ? { shards: world, step: opt.stepCount } : own,
        addFiles: owners ? (tmp) => dp!.writeEach(tmp, writeShard) : undefined,
        trainerState: {
          position: { ...pos, scaler: scaler.state() },
          stage: stage.name,
          config: cfg.name,
          ...(countKernelChoices(kernelChoices) ? { kernelChoices } : {}),
        },
        keepLast: cfg.train.keepLast,
      });
    } else if (owners) await dp!.writeEach(null, writeShard);
    await dp?.comm.barrier(); // the checkpoint is whole before any rank goes on (or stops)
  };
  // Rank 0 measures; the other ranks take its choices, so every rank runs the same kernels.
  if (ctx.tune && pos.stageStep < total) {
    if (rank === 0) await tuneStageAttention(e, cfg, model, stage.batchSize, ctx.print);
    await shareKernelChoices(e, dp);
  }
  recordMatmulShapes(e, ctx.tune && rank === 0);
  while (pos.stageStep < total) {
    const lr = lrAt(pos.stageStep, sched);
    const onMicroBatch = (done: number, count: number) => log.microBatch(pos.stageStep + 1, done, count);
    const result = await trainStep(setup, batches, lr, pos.step + 1, onMicroBatch);
    pos.scaler = scaler.state();
    pos.stageStep++;
    pos.step++;
    steps++;
    if (result.skipped) skippedSteps++;
    log.step({ step: pos.step, stageStep: pos.stageStep, lr, result, gpuBytes: e.pool.bytesInUse });
    if (ctx.tune && steps === 1) {
      if (rank === 0) await tuneStepMatmuls(e, ctx.print);
      await shareKernelChoices(e, dp);
    }
    const last = pos.stageStep === total;
    if (ctx.evaluate && cfg.train.evalEvery > 0 && pos.step % cfg.train.evalEvery === 0 && !last) {
      const report = await ctx.evaluate(pos.step, stage);
      log.eval(pos.step, report.summary.overall.accuracy);
    }
    const stopHere = (ctx.stopAfter !== undefined && pos.step >= ctx.stopAfter) ||
      ctx.signal?.aborted === true;
    const stop = dp ? await dp.any(stopHere) : stopHere; // a signal may reach the ranks at different steps
    if (last || stop || (cfg.train.saveEvery > 0 && pos.step % cfg.train.saveEvery === 0)) {
      if (last) pos.stageStep = total;
      await save();
      if (rank === 0) await writeCurves(ctx.runDir, ctx.records, { runName: cfg.name });
    }
    if (stop && !last) {
      recordMatmulShapes(e, false);
      opt.dispose();
      return { checkpoint, stopped: true, steps, skippedSteps, total };
    }
  }
  recordMatmulShapes(e, false);
  opt.dispose();
  const stopped = (ctx.stopAfter !== undefined && pos.step >= ctx.stopAfter) || ctx.signal?.aborted === true;
  return { checkpoint, stopped, steps, skippedSteps, total };
}

/**
 * Micro-batches each of `world` ranks runs per step: `gradAccum / world` when the global batch is kept
 * (`train.distributed.keepGlobalBatch`), else `gradAccum`.
 */
export function microBatchesPerRank(stage: StageConfig, world: number, keepGlobalBatch: boolean): number {
  if (!keepGlobalBatch || world === 1) return stage.gradAccum;
  if (stage.gradAccum % world !== 0) {
    throw new Error(
      `train.stages: stage ${stage.name}: gradAccum ${stage.gradAccum} does not divide among ${world} ranks, ` +
        `and train.distributed.keepGlobalBatch keeps the global batch (${stage.batchSize} x ` +
        `${stage.gradAccum} rows); set gradAccum to a multiple of ${world} (and batchSize to keep the rows), ` +
        `or train.distributed.keepGlobalBatch=false (a step then takes ${world} x the rows)`,
    );
  }
  return stage.gradAccum / world;
}

/** A step's view of the other ranks: averaged gradients, joint decisions, shared updates. */
function replicasOf(dp: DataParallel, params: Tensor[], owners: number[] | null): Replicas {
  return {
    reduce: (ps, acc) => dp.reduce(ps, acc),
    any: (flag) => dp.any(flag),
    afterUpdate: async () => {
      if (owners) await dp.shareOwned(params, owners);
    },
  };
}

/** The guard of `train.maxNonFinite`: its error names that config key as the one to raise. */
class RunGuard extends NonFiniteGuard {
  override record(skipped: boolean, context?: { step?: number; scale?: number }): void {
    try {
      super.record(skipped, context);
    } catch (err) {
      throw new Error((err as Error).message.replace(/\bmaxConsecutive\b/g, "train.maxNonFinite"));
    }
  }
}

/**
 * Rank `rank`'s micro-batch of the next `world` micro-batches of `size` rows at `pos` (each the next
 * epoch's first when its epoch has too few rows left); moves `pos` past all `world`, so the ranks
 * together take the rows one process would. Null when every row of it was bad and skipped.
 */
async function nextBatch(
  data: StageData,
  pos: Position,
  size: number,
  world = 1,
  rank = 0,
): Promise<AsvrBatch | null> {
  let mine = { epoch: pos.epoch, row: pos.row };
  for (let r = 0; r < world; r++) {
    if (pos.row + size > data.rowsPerEpoch(pos.epoch)) {
      pos.epoch++;
      pos.row = 0;
    }
    if (r === rank) mine = { epoch: pos.epoch, row: pos.row };
    pos.row += size;
  }
  return await data.batch(mine.epoch, mine.row, size, size * world);
}
