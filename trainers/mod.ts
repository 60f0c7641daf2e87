/**
 * Training: run configs (`defineRun`: the model's slots plus data and stages), the two-stage trainer
 * (`train`), atomic checkpoints, metrics and curves, the learning-rate schedule, loss scaling, the
 * memory plan (`planRun`) and evaluation of a trained model (`evaluate`).
 *
 * ```ts ignore
 * import { applyRunOverrides, train } from "./mod.ts";
 * const cfg = applyRunOverrides(runFile, ["train.stages[0].lr=2e-4"]);
 * const result = await train(engine, cfg, { runDir: "runs/my_run" });
 * ```
 * @module
 */

// run configs and run files
export {
  applyRunOverrides,
  type DataConfig,
  defineRun,
  type DistributedConfig,
  modelConfig,
  parseRunConfig,
  type RunBuilder,
  type RunConfig,
  type RunConfigInput,
  type StageConfig,
  type StageConfigInput,
  type StageTrainable,
  type TrainConfig,
  type TrainConfigInput,
} from "./config.ts";
export { loadRunFile, type LoadRunFileOptions } from "./run_file.ts";
export { formatMissing, type MissingInput, missingInputs } from "./preflight.ts";
export {
  type DataScan,
  DEFAULT_IMAGE_CHECK,
  estimateRowTokens,
  formatScan,
  formatScanErrors,
  type ImageCheck,
  parseImageCheck,
  type RunDataScan,
  scanDataFile,
  type ScanFindings,
  scanFindings,
  type ScanOptions,
  type ScanProgress,
  scanProgressPrinter,
  scanRunData,
  type ScanRunOptions,
} from "./data_scan.ts";
export { streamRows, type StreamRowsOptions } from "./row_stream.ts";
export { JsonArraySplitter, JsonLinesSplitter, type RawRow, type RowSplitter } from "../data/json_rows.ts";
export { type StageStepFields, type StageSteps, stageSteps, stageStepWarnings } from "./stage_steps.ts";
export {
  type ComponentPlan,
  formatPlan,
  formatWorld,
  LLAVA_LORA,
  planFits,
  planRun,
  planWorld,
  type RunPlan,
  type StagePlan,
  type WorldPlan,
  type WorldStagePlan,
} from "./plan.ts";

// training
export { train, type TrainOptions, type TrainResult } from "./trainer.ts";
export type { StepRecord } from "./step_log.ts";
export { encoderInput, StageData, type StageDataOptions } from "./stage_data.ts";
export {
  lrAt,
  type LrSchedule,
  type LrScheduleInput,
  parseLrSchedule,
  SCHEDULE_KINDS,
  type ScheduleKind,
} from "./schedule.ts";
export {
  LossScaler,
  type LossScalerOptions,
  type LossScalerState,
  NonFiniteGuard,
  type NonFiniteGuardOptions,
} from "./loss_scaler.ts";
export {
  CHECKPOINT_CHECKSUMS,
  type CheckpointEntry,
  type CheckpointParam,
  type HostParam,
  latestCheckpoint,
  listCheckpoints,
  loadCheckpoint,
  type LoadCheckpointOptions,
  type LoadedCheckpoint,
  type LoadedOptimizer,
  optimizerShardFile,
  type OptimizerShardIndex,
  type OptimizerSnapshot,
  restoreAdamW,
  saveCheckpoint,
  type SaveCheckpointOptions,
  verifyCheckpoint,
  type VerifyCheckpointOptions,
  writeOptimizerShard,
} from "./checkpoint.ts";
export { type Collectives, DataParallel, type DataParallelOptions } from "./data_parallel.ts";
export {
  countKernelChoices,
  type KernelChoices,
  kernelChoicesOf,
  restoreKernelChoices,
  setKernelChoices,
  shareKernelChoices,
} from "./kernel_choices.ts";
export {
  type Accumulated,
  accumulateGrads,
  finishStep,
  type MicroBatchCallback,
  type MicroBatches,
  type Replicas,
  settleSums,
  type StepResult,
  type StepSetup,
  trainStep,
} from "./step.ts";
export { shardLoads, shardOwners } from "./shard_owners.ts";
export {
  checkTrainerState,
  type StageBounds,
  type TrainerPosition,
  type TrainerState,
} from "./trainer_state.ts";
export { holdsRun, prepareNewRunDir, type PrepareRunDirOptions, RunDirInUseError } from "./run_dir.ts";
export {
  type MetricsRecord,
  MetricsWriter,
  type MetricsWriterOptions,
  parseMetrics,
  readMetrics,
} from "./metrics.ts";
export {
  type ChartMarker,
  type CurveOptions,
  EMA_WEIGHT,
  emaPoints,
  stageMarkers,
  writeCurves,
} from "./svg.ts";

// trained runs
export { findRun, type FindRunOptions, loadRunModel, readRunConfig, type RunInfo } from "./run_model.ts";
export { evaluate, type EvaluateOptions, questionPrompt } from "./evaluate.ts";
export { type ImageReliance, imageReliance } from "./image_reliance.ts";
