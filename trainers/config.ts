/**
 * The config of a training run: the model's slots (models/config.ts) plus `name`, `data` and `train`
 * (the stages). A run file is a module: `export default defineRun({...})`; {@linkcode parseRunConfig}
 * validates it once, filling every default, and errors name the full path of the bad field
 * (`train.stages[1].lr`). Command-line overrides (`--set train.stages[0].lr=1e-4`) go through
 * {@linkcode applyRunOverrides}.
 * @module
 */

import { headTargets } from "../heads/mod.ts";
import { z } from "zod";
import {
  type AsvrConfig,
  type AsvrConfigInput,
  overrideFields,
  parseConfig,
  TOP_FIELDS,
} from "../models/config.ts";
import { TEMPLATE_NAMES, type TemplateName } from "../data/templates.ts";
import { ON_ROW_ERRORS, type OnRowError } from "../data/llava_json.ts";
import { DEFAULT_MAX_IMAGE_BYTES } from "../data/image.ts";
import { PREPROCESS_MODES, type PreprocessMode } from "../data/preprocess.ts";
import { parseSchema } from "../schema/parse.ts";
import { SCHEDULE_KINDS, type ScheduleKind } from "./schedule.ts";

/** Which parts a stage trains (the encoder and the tokenizers stay frozen). */
export interface StageTrainable {
  /** The projector. */
  projector: boolean;
  /** The LLM. */
  llm: boolean;
  /** The visual head. */
  head: boolean;
}

/** One training stage. */
export interface StageConfig {
  /** Its name in logs and checkpoints. */
  name: string;
  /** A LLaVA dataset file (`.json` array or `.jsonl`). */
  data: string;
  /** Folder that rows' `image` paths are relative to (default: the dataset file's folder). */
  imageRoot: string | null;
  /** The conversation template: `plain` (stage 1 captions), `vicuna_v1` (stage 2 chat). */
  template: TemplateName;
  /**
   * How images are made square: "resize" (straight to the encoder's size; the recipe's stage 1),
   * "pad" (centered on the mean colour first; stage 2), "crop" (shortest side, then center crop).
   */
  imageMode: PreprocessMode;
  /** What trains. */
  trainable: StageTrainable;
  /** Rows per micro-batch. */
  batchSize: number;
  /** Micro-batches per optimizer step (the global batch is batchSize x gradAccum). */
  gradAccum: number;
  /** Peak learning rate. */
  lr: number;
  /** Fraction of the stage's steps spent warming up linearly from 0. */
  warmupRatio: number;
  /** Decay after warmup. */
  schedule: ScheduleKind;
  /** AdamW's decoupled weight decay. */
  weightDecay: number;
  /** Passes over the data. */
  epochs: number;
  /** Caps the optimizer steps (null: the epochs decide). */
  maxSteps: number | null;
  /** Overrides `loss.visualWeight` in this stage (null: keep it; 0: no visual loss in this stage). */
  visualWeight: number | null;
}

/** Data handling shared by the stages. */
export interface DataConfig {
  /** A folder with the text tokenizer's tokenizer.json (null: the LLM's folder). */
  tokenizer: string | null;
  /** Image side the encoder takes (null: the encoder's own `imageSize`). */
  imageSize: number | null;
  /** Tokens per row; longer rows are cut after their image span. */
  maxLength: number;
  /** A bad row (malformed, missing or corrupt image, empty conversation): stop, or skip and count. */
  onError: OnRowError;
  /**
   * With `onError: "skip"`: the share of a stage's rows (0..1) that may be left out before the stage
   * stops with a summary of the bad rows (default 0.01). A stage with no usable row always stops.
   */
  maxSkipShare: number;
  /** The largest image file read, in bytes (default 64 MiB); a larger one is a bad row. */
  maxImageBytes: number;
  /**
   * Follow symbolic links that lead out of a stage's image root (for data sets laid out with them).
   * Default false: a row whose image lies outside the root, through a link, `..` or an absolute path,
   * is a bad row (`..` and absolute paths elsewhere are refused either way).
   */
  followSymlinks: boolean;
  /** Micro-batches prepared ahead of the GPU. */
  prefetch: number;
  /** Shuffle rows each epoch (seeded by `train.seed` and the epoch). */
  shuffle: boolean;
  /**
   * Put rows of similar length in the same micro-batch (data/length_groups.ts): less padding, so faster
   * steps on data of mixed lengths, as LLaVA's `group_by_modality_length`.
   */
  groupByLength: boolean;
}

/** The optimizer, precision, checkpointing and evaluation of a run. */
export interface TrainConfig {
  /** Seed of initialization, shuffling and every random draw. */
  seed: number;
  /** Storage dtype of weights and activations (f16 keeps f32 master weights and optimizer state). */
  dtype: "f32" | "f16";
  /** Loss scaling for f16 ("dynamic") or none. */
  lossScale: "dynamic" | "none";
  /** Global gradient-norm clipping (0: off; the norm is measured, logged and checked for inf/NaN either way). */
  maxGradNorm: number;
  /** Re-run each decoder layer's forward in backward instead of keeping its activations. */
  checkpointLayers: boolean;
  /** Stop after this many non-finite steps in a row (each is skipped and counted). */
  maxNonFinite: number;
  /** Save a checkpoint every this many optimizer steps (0: only at the end of each stage). */
  saveEvery: number;
  /** Checkpoints kept. */
  keepLast: number;
  /** Evaluate every this many optimizer steps (0: only at the end). */
  evalEvery: number;
  /** A questions file (eval/questions.ts) to evaluate on, or null. */
  evalData: string | null;
  /** Folder that `evalData`'s `image` paths are relative to (null: the questions file's folder). */
  evalImageRoot: string | null;
  /** Tokens generated per evaluation answer at most. */
  evalMaxNewTokens: number;
  /** Where runs go: `<out>/<name>`. */
  out: string;
  /** The stages, in order; each starts from the previous one's full state. */
  stages: StageConfig[];
  /** Training on several processes (launched by `mpirun`); ignored by a single process. */
  distributed: DistributedConfig;
}

/**
 * Data-parallel training under MPI (`mpirun -np N deno task train run.ts`): every rank trains on its own
 * share of each step's rows, and the gradients are averaged over the ranks before the update.
 */
export interface DistributedConfig {
  /**
   * Keep each stage's global batch (`batchSize` x `gradAccum` rows per step) whatever the world size:
   * each rank runs `gradAccum / N` micro-batches (`gradAccum` must divide by N). Default true, so a run
   * gives the same steps on 1 or 8 GPUs. False: each rank runs `gradAccum` micro-batches, and a step
   * takes `batchSize` x `gradAccum` x N rows.
   */
  keepGlobalBatch: boolean;
  /**
   * Shard the optimizer state (ZeRO-1): each rank keeps the f32 master weights and AdamW moments of
   * about 1/N of the trainable parameters (whole tensors, balanced by size), updates those, and sends
   * the updated weights to the others. Default false: every rank keeps the whole state.
   */
  shardOptimizer: boolean;
  /** Gradients are averaged in buckets of this many MiB (read back, all-reduced, written back). */
  bucketMiB: number;
}

/** A parsed run config: the model's slots plus the run's own fields, every default filled. */
export interface RunConfig extends AsvrConfig {
  /** The run's name (its folder under `train.out`). */
  name: string;
  /** Data handling. */
  data: DataConfig;
  /** Training. */
  train: TrainConfig;
}

/** A stage as written in a run file (defaults filled by {@linkcode parseRunConfig}). */
export interface StageConfigInput extends Partial<Omit<StageConfig, "trainable">> {
  /** A LLaVA dataset file. */
  data: string;
  /** What trains (default: projector and head). */
  trainable?: Partial<StageTrainable>;
}

/** `train` as written in a run file. */
export interface TrainConfigInput extends Partial<Omit<TrainConfig, "stages" | "distributed">> {
  /** The stages. */
  stages: StageConfigInput[];
  /** Training on several processes (every field has a default). */
  distributed?: Partial<DistributedConfig>;
}

/** A run file's default export. */
export interface RunConfigInput extends AsvrConfigInput {
  /** The run's name (default "run"). */
  name?: string;
  /** Data handling (every field has a default). */
  data?: Partial<DataConfig>;
  /** Training. */
  train: TrainConfigInput;
}

// The schemas hold the rules and defaults. The types above are written out because a published type
// must be (JSR's no-slow-types: not inferred from a schema); `dataSchema` and `trainSchema` are typed
// by them, so the compiler holds each schema to its types (`stageSchema` through `trainSchema`).

const posInt = z.number().int().positive();
const nonNeg = z.number().nonnegative();

const stageSchema = z.strictObject({
  name: z.string().min(1).optional(),
  data: z.string().min(1),
  imageRoot: z.string().min(1).nullable().default(null),
  template: z.enum(TEMPLATE_NAMES).default("plain"),
  imageMode: z.enum(PREPROCESS_MODES).default("resize"),
  trainable: z.strictObject({
    projector: z.boolean().default(true),
    llm: z.boolean().default(false),
    head: z.boolean().default(true),
  }).prefault({}),
  batchSize: posInt.default(1),
  gradAccum: posInt.default(1),
  lr: z.number().positive().default(1e-3),
  warmupRatio: z.number().min(0).max(1).default(0.03),
  schedule: z.enum(SCHEDULE_KINDS).default("cosine"),
  weightDecay: nonNeg.default(0),
  epochs: posInt.default(1),
  maxSteps: posInt.nullable().default(null),
  visualWeight: nonNeg.nullable().default(null),
}).superRefine((s, ctx) => {
  if (!s.trainable.projector && !s.trainable.llm && !s.trainable.head) {
    ctx.addIssue({
      code: "custom",
      path: ["trainable"],
      message: "nothing trains; set projector, llm or head to true",
    });
  }
});

/** The stages with their names filled in (`stage<n>` by default), which must differ. */
function namedStages(stages: z.output<typeof stageSchema>[], ctx: z.RefinementCtx): StageConfig[] {
  const named = stages.map((s, i) => ({ ...s, name: s.name ?? `stage${i + 1}` }));
  named.forEach((s, i) => {
    if (named.findIndex((t) => t.name === s.name) < i) {
      ctx.addIssue({ code: "custom", path: [i, "name"], message: `${JSON.stringify(s.name)} is used twice` });
    }
  });
  return named;
}

const dataSchema: z.ZodType<DataConfig, Partial<DataConfig>> = z.strictObject({
  tokenizer: z.string().min(1).nullable().default(null),
  imageSize: posInt.nullable().default(null),
  maxLength: posInt.default(2048),
  onError: z.enum(ON_ROW_ERRORS).default("error"),
  maxSkipShare: z.number().min(0).max(1).default(0.01),
  maxImageBytes: posInt.default(DEFAULT_MAX_IMAGE_BYTES),
  followSymlinks: z.boolean().default(false),
  prefetch: posInt.default(2),
  shuffle: z.boolean().default(true),
  groupByLength: z.boolean().default(false),
});

const trainSchema: z.ZodType<TrainConfig, TrainConfigInput> = z.strictObject({
  seed: z.number().int().nonnegative().default(0),
  dtype: z.enum(["f32", "f16"]).default("f32"),
  lossScale: z.enum(["dynamic", "none"]).default("dynamic"),
  maxGradNorm: nonNeg.default(1),
  checkpointLayers: z.boolean().default(true),
  maxNonFinite: posInt.default(10),
  saveEvery: z.number().int().nonnegative().default(0),
  keepLast: posInt.default(2),
  evalEvery: z.number().int().nonnegative().default(0),
  evalData: z.string().min(1).nullable().default(null),
  evalImageRoot: z.string().min(1).nullable().default(null),
  evalMaxNewTokens: posInt.default(32),
  out: z.string().min(1).default("runs"),
  stages: z.array(stageSchema).min(1, "give at least one stage").transform(namedStages),
  distributed: z.strictObject({
    keepGlobalBatch: z.boolean().default(true),
    shardOptimizer: z.boolean().default(false),
    bucketMiB: z.number().positive().max(4096).default(128),
  }).prefault({}),
});

const nameSchema = z.string().regex(/^[\w.-]+$/, 'must be a folder name of letters, digits, "_", "-" or "."')
  .default("run");

/** What the run's own top-level fields take. */
const RUN_FIELDS: Record<"name" | "data" | "train", string> = {
  name: `the run's name, e.g. "asvr_vicuna7b" (default "run")`,
  data: "a data object (default: every field's default)",
  train: `a train object with stages, e.g. { stages: [{ data: "/data/llava_pretrain.json" }] }`,
};

/**
 * A run file's default export may also be a builder: an async function that prepares what the run needs
 * (data, small pretrained parts) when `build` is true and returns the config. `--plan` calls it with
 * `build: false`, when it must return the config without building anything.
 */
export type RunBuilder = (opts: { build: boolean }) => Promise<RunConfigInput>;

/**
 * The identity, typed: a run file writes `export default defineRun({ ... })` to get completion and
 * type checks; validation and defaults come from {@linkcode parseRunConfig}.
 */
export function defineRun(cfg: RunConfigInput): RunConfigInput {
  return cfg;
}

/**
 * Validates a run config given as data and fills every default. `source` (the file) starts each
 * error, followed by the full path of the bad field and what it takes.
 */
export function parseRunConfig(value: unknown, source: string): RunConfig {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new Error(`${source}: a run config must be an object (export default defineRun({ ... }))`);
  }
  const { name, data, train, ...model } = value as Record<string, unknown>;
  const fields = [...Object.keys(TOP_FIELDS), ...Object.keys(RUN_FIELDS)];
  for (const k of Object.keys(model)) {
    if (!(k in TOP_FIELDS)) {
      throw new Error(`${source}: ${k}: unknown field; the fields are ${fields.join(", ")}`);
    }
  }
  const cfg = parseConfig(model, source);
  const runName = parseSchema(nameSchema, name, `${source}: name`);
  if (train === undefined) throw new Error(`${source}: train: missing; give ${RUN_FIELDS.train}`);
  const run = {
    name: runName,
    data: parseSchema(dataSchema, data ?? {}, `${source}: data`),
    train: parseSchema(trainSchema, train, `${source}: train`),
  };
  // A head that learns no tokenizer's codes has no loss to train on.
  if (headTargets(cfg.head, cfg.visualTokenizers).length === 0) {
    for (const s of run.train.stages) s.trainable.head = false;
  }
  return { ...cfg, ...run };
}

/**
 * Applies `key=value` overrides (`train.stages[0].lr=2e-5`, `head.kind=none`, `data.maxLength=1024`)
 * to a run file's config and validates the result; an unknown key or a wrong type is an error
 * naming the path.
 */
export function applyRunOverrides(cfg: RunConfigInput, sets: readonly string[], source = "--set"): RunConfig {
  const raw = overrideFields(cfg as unknown as Record<string, unknown>, sets, source);
  return parseRunConfig(raw, sets.length ? `${source} (${sets.join(" ")})` : source);
}

/** The model's part of a run config (what `AsvrModel.build` takes). */
export function modelConfig(run: RunConfig): AsvrConfig {
  const { name: _n, data: _d, train: _t, ...model } = run;
  return model;
}
