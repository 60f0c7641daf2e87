/**
 * Training checkpoints that survive a crash at any moment.
 *
 * A checkpoint is a folder `<runDir>/checkpoints/step-<8 digits>/` holding
 * - `model.safetensors`: the parameters the caller passes (trainable ones, or all), under their
 *   Hugging Face names;
 * - `optimizer.safetensors`: the AdamW state per parameter name, `exp_avg.<name>`,
 *   `exp_avg_sq.<name>` and, for f16 parameters, `master.<name>` (f32), with each parameter's step
 *   count and the optimizer's step in the `__metadata__`;
 * - `trainer_state.json`: whatever JSON the caller passes (step, stage, epoch, data position, RNG
 *   state, config);
 * - `checksums.sha256`: the SHA-256 of each file above, in `sha256sum` format (so
 *   `sha256sum -c checksums.sha256` checks the folder by hand), hashed as the files are written.
 *
 * A data-parallel run with a sharded optimizer writes its optimizer state in shards instead:
 * `optimizer.safetensors` is then an index without tensors (its `__metadata__.shards` is the count N) and
 * each rank r writes `optimizer-<r>-of-<N>.safetensors` ({@linkcode optimizerShardFile}), the state of the
 * parameters it owns, in the format above, into the save's temporary folder (through `addFiles`) before
 * the folder is sealed; `checksums.sha256` lists the shards. A load merges the shards, so the state
 * restores on any number of ranks.
 *
 * A save writes a hidden sibling folder `.tmp-step-<8 digits>-<random>`, each file fsynced,
 * `trainer_state.json` then `checksums.sha256` last, then renames it to its final name in one step,
 * then points the file `checkpoints/latest` at it (temp file + rename), and only then deletes
 * checkpoints beyond the last `keepLast`. So a crash leaves the previous checkpoint intact; leftover
 * `.tmp-*` folders are ignored by {@linkcode loadCheckpoint} and removed by the next save.
 *
 * A load hashes every file and compares it with `checksums.sha256`, so a checkpoint damaged on disk
 * or in a copy is refused, naming the file and the older checkpoint to use instead; checkpoints saved
 * before checksums existed load with a note that they are unverified. Float values are checked for
 * NaN and infinities as they are read.
 *
 * ```ts ignore
 * await saveCheckpoint("runs/stage1", {
 *   step: 500,
 *   params: trainable, // Map<string, Tensor>
 *   optimizer: { names: [...trainable.keys()], state: await opt.state() },
 *   trainerState: { step: 500, stage: 1, epoch: 0, sample: 128000 },
 * });
 * const ck = await loadCheckpoint("runs/stage1", { expectParams: trainable });
 * for (const [name, t] of trainable) e.write(t, await ck.params.get(name)!.read());
 * await restoreAdamW(opt, [...trainable.keys()], ck);
 * ```
 * @module
 */

import { z } from "zod";
import { AdamW, type AdamWParamState, type AdamWState } from "../core/kernels/adamw/adamw.ts";
import { Tensor } from "../core/tensor.ts";
import { readJsonFile } from "../io/json.ts";
import {
  closeNames,
  isSafeFloat,
  type SafeDType,
  type SafeTensorInput,
  SafetensorsFile,
  writeSafetensors,
  writeTextAtomic,
} from "../io/safetensors.ts";
import { pathExists } from "../io/path_exists.ts";
import { sha256File } from "../io/sha256.ts";
import { assertFinite } from "../io/finite.ts";

/** The file names inside a checkpoint folder. */
export const CHECKPOINT_FILES: {
  readonly model: "model.safetensors";
  readonly optimizer: "optimizer.safetensors";
  readonly trainerState: "trainer_state.json";
} = {
  model: "model.safetensors",
  optimizer: "optimizer.safetensors",
  trainerState: "trainer_state.json",
};

/** The checksums file of a checkpoint folder: `<sha256 hex>  <file name>` per line, as `sha256sum` writes. */
export const CHECKPOINT_CHECKSUMS = "checksums.sha256";

const LATEST = "latest";
const STEP_DIR = /^step-(\d{8})$/;
const TMP_PREFIX = ".tmp-";

/** A parameter as host data (row-major values and shape). */
export interface HostParam {
  /** The values [prod(shape)]. */
  data: Float32Array;
  /** The shape, outermost first. */
  shape: readonly number[];
}

/** The optimizer state to save: entry i belongs to the parameter named `names[i]`. */
export interface OptimizerSnapshot {
  /** The parameter name of each state entry, in the optimizer's order. */
  names: readonly string[];
  /**
   * The state: host arrays from `AdamW.state()`, or the optimizer itself, whose GPU state is then read
   * one tensor at a time while the file is written (host memory holds one tensor, not the whole state).
   */
  state: AdamWState | AdamW;
}

/** What {@linkcode saveCheckpoint} writes. */
export interface SaveCheckpointOptions {
  /** The optimizer updates done so far (names the folder `step-<8 digits>`). */
  step: number;
  /** The parameters to store, by Hugging Face name: GPU tensors (read one at a time) or host data. */
  params: Map<string, Tensor | HostParam>;
  /**
   * The AdamW state (every name must be a key of `params`), or, for a sharded state, the index: the
   * shard count and the optimizer's step (the shards come through `addFiles`).
   */
  optimizer: OptimizerSnapshot | OptimizerShardIndex;
  /**
   * Adds files to the checkpoint before it is sealed: called with the temporary folder once this call's
   * files are written, it writes its files there and returns each one's SHA-256 by file name (they join
   * `checksums.sha256`). Optimizer shards written by other processes come this way.
   */
  addFiles?: (tmpDir: string) => Promise<Map<string, string>>;
  /** Anything JSON-serializable, as an object: step, stage, epoch, data position, RNG state, config. */
  trainerState: Record<string, unknown>;
  /** How many complete checkpoints to keep, the new one included (default 2). */
  keepLast?: number;
}

/** A sharded optimizer state's index: `shards` files, written by {@linkcode writeOptimizerShard}. */
export interface OptimizerShardIndex {
  /** How many shard files hold the state. */
  shards: number;
  /** How many times the optimizer stepped. */
  step: number;
}

/** The file name of shard `index` of `count`: `optimizer-0-of-2.safetensors`. */
export function optimizerShardFile(index: number, count: number): string {
  return `optimizer-${index}-of-${count}.safetensors`;
}

/**
 * Writes one shard of a sharded optimizer state (the state of the parameters `opt.names`, each of
 * them a key of `params`) to `path`, in `optimizer.safetensors`' format; returns its SHA-256.
 */
export async function writeOptimizerShard(
  path: string,
  opt: OptimizerSnapshot,
  params: Map<string, Tensor | HostParam>,
): Promise<string> {
  const inputs = optimizerInputs(opt, params);
  return await writeSafetensors(path, inputs.tensors, inputs.metadata);
}

const keepLastSchema = z.number().int().min(1).default(2);

/** The optimizer state of a loaded checkpoint, by parameter name. */
export interface LoadedOptimizer {
  /** How many times the optimizer stepped. */
  step: number;
  /**
   * Each updated parameter's state (parameters never updated are absent): its step count, and its
   * moments (and f32 master weights) read from disk on demand, one parameter at a time.
   */
  params: Map<string, { step: number; read(): Promise<AdamWParamState> }>;
}

/** A parameter of a loaded checkpoint: its shape, and its values read from disk on demand. */
export interface CheckpointParam {
  /** The shape, outermost first. */
  shape: number[];
  /** Reads the values (widened to f32) from the checkpoint's model.safetensors. */
  read(): Promise<Float32Array>;
}

/** A checkpoint read back by {@linkcode loadCheckpoint}. */
export interface LoadedCheckpoint {
  /** The checkpoint folder. */
  dir: string;
  /** The step of its folder name (or `step` of trainer_state.json for a folder named otherwise). */
  step: number;
  /**
   * The parameters by name. Values are read when asked for, so restoring a model holds one tensor in
   * host memory at a time (a 7B model's checkpoint is larger than many hosts' memory).
   */
  params: Map<string, CheckpointParam>;
  /** The optimizer state. */
  optimizer: LoadedOptimizer;
  /** The caller's JSON, as saved. */
  trainerState: Record<string, unknown>;
}

/** Options of {@linkcode loadCheckpoint}. */
export interface LoadCheckpointOptions {
  /**
   * The parameters the caller will restore (a model's param map works): the checkpoint must hold
   * exactly these names with these shapes, else one error lists every difference.
   */
  expectParams?: Map<string, { readonly shape: readonly number[] }>;
  /**
   * Checks the parsed `trainer_state.json` (its path is `file`; `step` is the step of the folder's
   * name, null for a folder named otherwise) and throws, naming the file and the field, to refuse
   * the checkpoint; the error then gets the way back to an older checkpoint.
   */
  checkState?: (state: Record<string, unknown>, file: string, step: number | null) => void;
  /** Read parameters and optimizer state holding NaN or infinities (default false: such a read throws). */
  allowNonFinite?: boolean;
  /**
   * Where one-line notes go: a newer checkpoint skipped as incomplete, a checkpoint without
   * checksums (default: `console.warn`).
   */
  onNote?: (line: string) => void;
}

/** The folder name of a step's checkpoint: `step-00000120`. */
export function checkpointName(step: number): string {
  if (!Number.isSafeInteger(step) || step < 0 || step > 99_999_999) {
    throw new Error(`checkpoint step must be an integer in [0, 99999999], got ${step}`);
  }
  return `step-${String(step).padStart(8, "0")}`;
}

/**
 * Saves a checkpoint under `<runDir>/checkpoints/` (see the module doc for the layout and the crash
 * safety) and returns its folder. Throws before writing anything when the optimizer names a
 * parameter that `params` lacks or whose size differs.
 */
export async function saveCheckpoint(runDir: string, opts: SaveCheckpointOptions): Promise<string> {
  const name = checkpointName(opts.step);
  const keep = keepLastSchema.safeParse(opts.keepLast);
  if (!keep.success) {
    throw new Error(`saveCheckpoint: keepLast is ${opts.keepLast}; it must be an integer >= 1 (default 2)`);
  }
  const isObject = opts.trainerState !== null && typeof opts.trainerState === "object" &&
    !Array.isArray(opts.trainerState);
  let stateJson: string | undefined;
  try {
    stateJson = JSON.stringify(opts.trainerState, null, 2);
  } catch (err) {
    throw new Error(`saveCheckpoint: trainerState is not JSON-serializable: ${(err as Error).message}`);
  }
  if (!isObject || stateJson === undefined) {
    throw new Error("saveCheckpoint: trainerState must be a plain object (it becomes trainer_state.json)");
  }
  const modelInputs = paramInputs(opts.params);
  const optInputs = "shards" in opts.optimizer
    ? shardIndexInputs(opts.optimizer)
    : optimizerInputs(opts.optimizer, opts.params);

  const ckDir = `${runDir}/checkpoints`;
  await Deno.mkdir(ckDir, { recursive: true });
  await removeStale(ckDir);
  const tmp = `${ckDir}/${TMP_PREFIX}${name}-${randomHex()}`;
  await Deno.mkdir(tmp);
  try {
    const { model, optimizer, trainerState } = CHECKPOINT_FILES;
    const sums = new Map<string, string>(); // each file's SHA-256, hashed as it is written
    sums.set(model, await writeSafetensors(`${tmp}/${model}`, modelInputs, { format: "pt" }));
    sums.set(optimizer, await writeSafetensors(`${tmp}/${optimizer}`, optInputs.tensors, optInputs.metadata));
    sums.set(trainerState, await writeTextAtomic(`${tmp}/${trainerState}`, stateJson + "\n"));
    if (opts.addFiles) { for (const [file, sum] of await opts.addFiles(tmp)) sums.set(file, sum); }
    if ("shards" in opts.optimizer) { // sealed only whole: every shard written
      const { shards } = opts.optimizer;
      const missing = Array.from({ length: shards }, (_, i) => optimizerShardFile(i, shards))
        .filter((f) => !sums.has(f));
      if (missing.length) {
        throw new Error(
          `saveCheckpoint: the optimizer state is in ${shards} shards, but addFiles did not write ` +
            `${missing.join(", ")}; nothing was saved`,
        );
      }
    }
    const manifest = [...sums].map(([file, sum]) => `${sum}  ${file}\n`).join("");
    await writeTextAtomic(`${tmp}/${CHECKPOINT_CHECKSUMS}`, manifest);
    await syncDir(tmp);
    const final = `${ckDir}/${name}`;
    let replaced: string | null = null;
    if (await pathExists(final)) { // a second save of the same step: move the old one aside first
      replaced = `${ckDir}/${TMP_PREFIX}old-${name}-${randomHex()}`;
      await Deno.rename(final, replaced);
    }
    await Deno.rename(tmp, final);
    await syncDir(ckDir);
    if (replaced) await Deno.remove(replaced, { recursive: true });
  } catch (err) {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
    throw err;
  }
  await writeTextAtomic(`${ckDir}/${LATEST}`, name + "\n");
  await syncDir(ckDir);
  // Keep the new checkpoint and the newest others, keepLast in all.
  const all = await listCheckpoints(runDir);
  const newestFirst = [name, ...all.map((c) => c.name).reverse().filter((n) => n !== name)];
  const keepNames = new Set(newestFirst.slice(0, keep.data));
  for (const c of all) {
    if (!keepNames.has(c.name)) await Deno.remove(c.dir, { recursive: true });
  }
  return `${ckDir}/${name}`;
}

/** One checkpoint folder found by {@linkcode listCheckpoints}. */
export interface CheckpointEntry {
  /** Its step. */
  step: number;
  /** Its folder name (`step-00000120`). */
  name: string;
  /** Its path. */
  dir: string;
  /** True when all three files are present (a folder missing one is not used). */
  complete: boolean;
}

/** The `step-*` folders under `<runDir>/checkpoints`, by increasing step (none: an empty list). */
export async function listCheckpoints(runDir: string): Promise<CheckpointEntry[]> {
  const ckDir = `${runDir}/checkpoints`;
  const out: CheckpointEntry[] = [];
  try {
    for await (const e of Deno.readDir(ckDir)) {
      const m = STEP_DIR.exec(e.name);
      if (!m || !e.isDirectory) continue;
      const dir = `${ckDir}/${e.name}`;
      out.push({ step: Number(m[1]), name: e.name, dir, complete: await isComplete(dir) });
    }
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return [];
    throw err;
  }
  return out.sort((a, b) => a.step - b.step);
}

/**
 * The folder of the checkpoint to resume from: the one `checkpoints/latest` names when it is
 * complete, else the complete one of the highest step; null when there is none. `onNote` hears one
 * line per newer checkpoint passed over as incomplete (which files it lacks, which one is used).
 */
export async function latestCheckpoint(
  runDir: string,
  onNote?: (line: string) => void,
): Promise<string | null> {
  const ckDir = `${runDir}/checkpoints`;
  let named: string | null = null;
  try {
    named = (await Deno.readTextFile(`${ckDir}/${LATEST}`)).trim();
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  const all = await listCheckpoints(runDir);
  const done = all.filter((c) => c.complete);
  const chosen = named !== null && STEP_DIR.test(named) && await isComplete(`${ckDir}/${named}`)
    ? all.find((c) => c.name === named)!
    : done.at(-1);
  if (!chosen) return null;
  for (const c of all) {
    if (c.complete || c.step < chosen.step || !onNote) continue;
    const missing = await missingFiles(c.dir);
    onNote(
      `${c.dir}: skipped: ${missing.join(", ")} ${missing.length > 1 ? "are" : "is"} missing (an ` +
        `interrupted save?); using ${chosen.dir}`,
    );
  }
  return chosen.dir;
}

/** Options of {@linkcode verifyCheckpoint}. */
export interface VerifyCheckpointOptions {
  /** The files to check (default: every file `checksums.sha256` lists). */
  files?: readonly string[];
  /** Where the note about a folder without checksums goes (default: `console.warn`). */
  onNote?: (line: string) => void;
}

/**
 * Checks a checkpoint folder's files against the SHA-256 sums of its `checksums.sha256`, hashing
 * each file as it streams from disk (one extra read of each file). A file that differs or is
 * missing, or a damaged checksums file, throws an error naming the folder, the file, and the fix:
 * the older checkpoint to use, when there is one. A folder without `checksums.sha256` (saved before
 * checksums existed) passes after a one-line note that it is unverified. Returns whether the files
 * were verified.
 */
export async function verifyCheckpoint(dir: string, opts: VerifyCheckpointOptions = {}): Promise<boolean> {
  const note = opts.onNote ?? ((line: string) => console.warn(line));
  const path = `${dir}/${CHECKPOINT_CHECKSUMS}`;
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
    note(`${dir}: no ${CHECKPOINT_CHECKSUMS} (saved by an older version): files unverified`);
    return false;
  }
  const fix = await recoveryHint(dir);
  const sums = new Map<string, string>();
  for (const [i, line] of text.split("\n").entries()) {
    if (line.trim() === "") continue;
    const m = /^([0-9a-f]{64}) [ *]([^/\\]+)$/.exec(line);
    if (!m) {
      throw new Error(
        `${path}: line ${i + 1} is not "<64 hex digits>  <file>": ${JSON.stringify(line)} (${fix})`,
      );
    }
    sums.set(m[2], m[1]);
  }
  for (const file of opts.files ?? [...sums.keys()]) {
    const want = sums.get(file);
    if (!want) throw new Error(`${path}: no checksum for ${file} (${fix})`);
    let got: string;
    try {
      got = await sha256File(`${dir}/${file}`);
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
      throw new Error(`${dir}/${file}: missing, though ${CHECKPOINT_CHECKSUMS} lists it (${fix})`);
    }
    if (got !== want) {
      const [g, w] = [got.slice(0, 12), want.slice(0, 12)];
      throw new Error(
        `${dir}/${file}: its SHA-256 ${g}... differs from the one in ${CHECKPOINT_CHECKSUMS} (${w}...): ` +
          `the file changed after it was saved, on disk or in a copy (${fix}; if it was edited on ` +
          `purpose, delete ${path} to load the folder unverified)`,
      );
    }
  }
  return true;
}

/**
 * Reads a checkpoint back: `path` is a run folder (its latest complete checkpoint is used) or a
 * checkpoint folder. Checks that every file is there, matches its checksum (see
 * {@linkcode verifyCheckpoint}) and is well-formed, that the optimizer state matches the parameters
 * (names and sizes), with `expectParams` that the parameters match the caller's, and with
 * `checkState` the trainer state; errors name the file and the fix (an older checkpoint to use, when
 * there is one). Values read later are checked for NaN and infinities unless `allowNonFinite`.
 */
export async function loadCheckpoint(
  path: string,
  opts: LoadCheckpointOptions = {},
): Promise<LoadedCheckpoint> {
  const note = opts.onNote ?? ((line: string) => console.warn(line));
  const dir = await resolveCheckpointDir(path, note);
  const stepMatch = STEP_DIR.exec(dir.split("/").filter(Boolean).at(-1) ?? "");
  const fix = await recoveryHint(dir);
  for (const f of Object.values(CHECKPOINT_FILES)) {
    if (!(await pathExists(`${dir}/${f}`))) {
      throw new Error(`${dir}/${f}: missing; the checkpoint is incomplete (${fix})`);
    }
  }
  await verifyCheckpoint(dir, { files: Object.values(CHECKPOINT_FILES), onNote: note });
  const statePath = `${dir}/${CHECKPOINT_FILES.trainerState}`;
  let trainerState: unknown;
  try {
    trainerState = await readJsonFile(statePath, "the trainer state of a checkpoint");
  } catch (err) {
    throw new Error(`${(err as Error).message} (${fix})`);
  }
  if (trainerState === null || typeof trainerState !== "object" || Array.isArray(trainerState)) {
    throw new Error(`${statePath}: must hold a JSON object, got ${JSON.stringify(trainerState)} (${fix})`);
  }
  if (opts.checkState) {
    try {
      opts.checkState(
        trainerState as Record<string, unknown>,
        statePath,
        stepMatch ? Number(stepMatch[1]) : null,
      );
    } catch (err) {
      throw new Error(`${(err as Error).message} (${fix})`);
    }
  }
  const reading: ReadOptions = { fix, allowNonFinite: opts.allowNonFinite === true, note };
  const params = await readModel(`${dir}/${CHECKPOINT_FILES.model}`, reading);
  if (opts.expectParams) checkExpected(`${dir}/${CHECKPOINT_FILES.model}`, params, opts.expectParams);
  const optimizer = await readOptimizer(`${dir}/${CHECKPOINT_FILES.optimizer}`, params, reading);
  const savedStep = (trainerState as Record<string, unknown>).step;
  const step = stepMatch ? Number(stepMatch[1]) : savedStep;
  if (!Number.isSafeInteger(step) || (step as number) < 0) {
    throw new Error(
      `${dir}: the folder is not named step-<8 digits> and ${CHECKPOINT_FILES.trainerState} has no integer ` +
        `"step"; rename the folder to step-<8 digits> of its step`,
    );
  }
  return {
    dir,
    step: step as number,
    params,
    optimizer,
    trainerState: trainerState as Record<string, unknown>,
  };
}

/**
 * Restores an optimizer over the parameters `names` (in its order) from a loaded checkpoint's state,
 * one parameter at a time (host memory holds one parameter's state); parameters the checkpoint has no
 * state for start fresh. Throws when the checkpoint holds state for a name not in `names` (the
 * trainable set changed); with `trains`, for a name not in `trains` (a rank of a sharded optimizer
 * restores its own `names` of all the parameters `trains`).
 */
export async function restoreAdamW(
  opt: AdamW,
  names: readonly string[],
  ck: Pick<LoadedCheckpoint, "dir" | "optimizer">,
  opts: { trains?: ReadonlySet<string> } = {},
): Promise<void> {
  const known = opts.trains ?? new Set(names);
  const extra = [...ck.optimizer.params.keys()].filter((n) => !known.has(n));
  if (extra.length) {
    throw new Error(
      `${ck.dir}/${CHECKPOINT_FILES.optimizer}: holds optimizer state for ${extra.length} parameter(s) the ` +
        `optimizer does not train: ${listSome(extra)}; resume with the same trainable parameters ` +
        `(stage and freezing config) that wrote the checkpoint`,
    );
  }
  if (names.length !== opt.params.length) {
    throw new Error(
      `restoreAdamW: ${names.length} names for an optimizer over ${opt.params.length} parameters`,
    );
  }
  for (let i = 0; i < names.length; i++) {
    const entry = ck.optimizer.params.get(names[i]);
    opt.loadParamState(i, entry ? await entry.read() : null);
    opt.params[i].engine.flush(); // the upload's staging copies go now, not at the end
  }
  opt.stepCount = ck.optimizer.step;
}

// ------------------------------------------------------------------ saving helpers

function paramInputs(params: Map<string, Tensor | HostParam>): SafeTensorInput[] {
  const out: SafeTensorInput[] = [];
  for (const [name, p] of params) {
    if (p instanceof Tensor) {
      let dtype: SafeDType;
      switch (p.dtype) {
        case "f32":
          dtype = "F32";
          break;
        case "f16":
          dtype = "F16";
          break;
        case "i32":
        case "u32":
          throw new Error(`saveCheckpoint: param "${name}" is ${p.dtype}; checkpoints hold float parameters`);
      }
      out.push({ name, dtype, shape: [...p.shape], data: async () => (await p.read()) as Float32Array });
    } else {
      const n = p.shape.reduce((a, b) => a * b, 1);
      if (!(p.data instanceof Float32Array) || p.data.length !== n) {
        throw new Error(
          `saveCheckpoint: param "${name}" has ${p.data?.length} values for shape [${p.shape}] (${n} expected)`,
        );
      }
      out.push({ name, dtype: "F32", shape: [...p.shape], data: p.data });
    }
  }
  return out;
}

function optimizerInputs(
  opt: OptimizerSnapshot,
  params: Map<string, Tensor | HostParam>,
): { tensors: SafeTensorInput[]; metadata: Record<string, string> } {
  const st = opt.state;
  const live = st instanceof AdamW ? st : null;
  const count = live ? live.params.length : (st as AdamWState).params.length;
  if (opt.names.length !== count) {
    throw new Error(
      `saveCheckpoint: optimizer.names has ${opt.names.length} names for ${count} ` +
        `state entries; pass one name per optimizer parameter, in its order`,
    );
  }
  const tensors: SafeTensorInput[] = [];
  const steps: Record<string, number> = {};
  opt.names.forEach((name, i) => {
    const host = live ? null : (st as AdamWState).params[i];
    const info = live
      ? live.paramInfo(i)
      : host
      ? { step: host.step, master: host.master !== undefined }
      : null;
    if (!info) return;
    const p = params.get(name);
    if (!p) {
      throw new Error(
        `saveCheckpoint: the optimizer trains "${name}", which is not in params; pass every trained ` +
          `parameter in params`,
      );
    }
    const shape = [...p.shape];
    const n = shape.reduce((a, b) => a * b, 1);
    const add = (kind: string, data: Float32Array | (() => Promise<Float32Array>)) => {
      if (data instanceof Float32Array && data.length !== n) {
        throw new Error(
          `saveCheckpoint: optimizer ${kind} of "${name}" has ${data.length} values, the param has ${n}`,
        );
      }
      tensors.push({ name: `${kind}.${name}`, dtype: "F32", shape, data });
    };
    if (live) {
      add("exp_avg", async () => (await live.readState(i, "m"))!);
      add("exp_avg_sq", async () => (await live.readState(i, "v"))!);
      if (info.master) add("master", async () => (await live.readState(i, "master"))!);
    } else {
      add("exp_avg", host!.m);
      add("exp_avg_sq", host!.v);
      if (host!.master) add("master", host!.master);
    }
    steps[name] = info.step;
  });
  return {
    tensors,
    metadata: {
      format: "asvr-adamw",
      step: String(live ? live.stepCount : (st as AdamWState).step),
      param_steps: JSON.stringify(steps),
    },
  };
}

function shardIndexInputs(index: OptimizerShardIndex): {
  tensors: SafeTensorInput[];
  metadata: Record<string, string>;
} {
  if (!Number.isSafeInteger(index.shards) || index.shards < 1) {
    throw new Error(`saveCheckpoint: optimizer.shards is ${index.shards}; it must be an integer >= 1`);
  }
  return {
    tensors: [],
    metadata: {
      format: "asvr-adamw",
      step: String(index.step),
      param_steps: "{}",
      shards: String(index.shards),
    },
  };
}

/** Removes leftovers of interrupted saves (`.tmp-*` folders and files) in the checkpoints folder. */
async function removeStale(ckDir: string): Promise<void> {
  for await (const e of Deno.readDir(ckDir)) {
    if (e.name.startsWith(TMP_PREFIX) || /\.tmp-[0-9a-f]+$/.test(e.name)) {
      await Deno.remove(`${ckDir}/${e.name}`, { recursive: true });
    }
  }
}

/** fsyncs a folder so a rename inside it is durable (best effort: not every OS opens folders). */
async function syncDir(dir: string): Promise<void> {
  let f: Deno.FsFile | null = null;
  try {
    f = await Deno.open(dir, { read: true });
    await f.sync();
  } catch {
    // Windows cannot open a folder as a file; its renames are durable without it.
  } finally {
    f?.close();
  }
}

function randomHex(): string {
  return [...crypto.getRandomValues(new Uint8Array(4))].map((b) => b.toString(16).padStart(2, "0")).join("");
}

// ------------------------------------------------------------------ loading helpers

async function resolveCheckpointDir(path: string, note: (line: string) => void): Promise<string> {
  const p = path.length > 1 ? path.replace(/\/+$/, "") : path;
  let stat: Deno.FileInfo;
  try {
    stat = await Deno.stat(p);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      throw new Error(`${p}: not found; give a run folder (with checkpoints/) or a checkpoint folder`);
    }
    throw err;
  }
  if (!stat.isDirectory) {
    throw new Error(`${p}: is a file; give a run folder (with checkpoints/) or a checkpoint folder`);
  }
  let runDir: string;
  if (await isDir(`${p}/checkpoints`)) runDir = p;
  else if (p === "checkpoints" || p.endsWith("/checkpoints")) {
    runDir = p.slice(0, -"checkpoints".length).replace(/\/$/, "") || ".";
  } else if (await looksLikeCheckpoint(p)) return p;
  else {
    throw new Error(
      `${p}: neither a run folder (no checkpoints/ in it) nor a checkpoint folder (no ` +
        `${Object.values(CHECKPOINT_FILES).join(", ")}); give the run folder the trainer wrote`,
    );
  }
  const found = await latestCheckpoint(runDir, note);
  if (found) return found;
  const partial = await listCheckpoints(runDir);
  throw new Error(
    `${p}: no complete checkpoint in ${runDir}/checkpoints` +
      (partial.length
        ? ` (${partial.map((c) => c.name).join(", ")} lack some of ${
          Object.values(CHECKPOINT_FILES).join(", ")
        })`
        : "") +
      `; start the run from scratch, or give the right run folder`,
  );
}

async function looksLikeCheckpoint(dir: string): Promise<boolean> {
  for (const f of Object.values(CHECKPOINT_FILES)) if (await pathExists(`${dir}/${f}`)) return true;
  return false;
}

async function isComplete(dir: string): Promise<boolean> {
  return (await missingFiles(dir)).length === 0;
}

async function missingFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const f of Object.values(CHECKPOINT_FILES)) if (!(await pathExists(`${dir}/${f}`))) out.push(f);
  return out;
}

async function isDir(p: string): Promise<boolean> {
  try {
    return (await Deno.stat(p)).isDirectory;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return false;
    throw err;
  }
}

/** What to do about a broken checkpoint: resume from the previous complete one, if any. */
async function recoveryHint(dir: string): Promise<string> {
  const parts = dir.split("/");
  const name = parts.at(-1) ?? "";
  const m = STEP_DIR.exec(name);
  if (!m || parts.at(-2) !== "checkpoints") return "save it again, or give another checkpoint";
  const runDir = parts.slice(0, -2).join("/") || ".";
  const older = (await listCheckpoints(runDir)).filter((c) => c.complete && c.step < Number(m[1]));
  return older.length
    ? `delete ${dir} to resume from ${older[older.length - 1].dir}, or give that folder`
    : `delete ${dir} and start the run from scratch`;
}

/** How a checkpoint's tensors are read: the fix its errors name, and whether NaN/Inf may load. */
interface ReadOptions {
  fix: string;
  allowNonFinite: boolean;
  /** Where the note about a folder without checksums goes. */
  note: (line: string) => void;
}

/** The parameters' shapes, checked to be floats, with readers that open the file when called. */
async function readModel(path: string, reading: ReadOptions): Promise<Map<string, CheckpointParam>> {
  const { fix } = reading;
  const f = await openFile(path, fix);
  try {
    const out = new Map<string, CheckpointParam>();
    for (const name of f.names()) {
      const info = f.info(name);
      if (!isSafeFloat(info.dtype)) {
        throw new Error(
          `${path}: tensor "${name}" is ${info.dtype}; checkpoint parameters are floats (${fix})`,
        );
      }
      out.set(name, { shape: info.shape, read: () => readFloats(path, name, reading) });
    }
    return out;
  } finally {
    f.close();
  }
}

/**
 * One float tensor of a safetensors file, widened to f32 (the file is opened for this read), checked
 * for NaN and infinities unless they are allowed.
 */
async function readFloats(path: string, name: string, reading: ReadOptions): Promise<Float32Array> {
  const { fix } = reading;
  const f = await openFile(path, fix);
  try {
    const data = await f.read(name);
    if (!(data instanceof Float32Array)) {
      throw new Error(`${path}: tensor "${name}" must hold floats (${fix})`);
    }
    if (!reading.allowNonFinite) {
      assertFinite(
        data,
        f.info(name),
        `${fix}; or pass allowNonFinite: true to loadCheckpoint to load it anyway`,
      );
    }
    return data;
  } finally {
    f.close();
  }
}

async function readOptimizer(
  path: string,
  params: Map<string, CheckpointParam>,
  reading: ReadOptions,
  shard = false,
): Promise<LoadedOptimizer> {
  const { fix } = reading;
  const f = await openFile(path, fix);
  try {
    const bad = (what: string): Error => new Error(`${path}: ${what} (${fix})`);
    const md = f.metadata;
    if (md.format !== "asvr-adamw") {
      throw bad(`__metadata__.format is ${JSON.stringify(md.format)}, expected "asvr-adamw"`);
    }
    const step = Number(md.step);
    if (!Number.isSafeInteger(step) || step < 0) {
      throw bad(`__metadata__.step is ${JSON.stringify(md.step)}, expected an integer >= 0`);
    }
    if (md.shards !== undefined) {
      if (shard) throw bad("a shard of a sharded optimizer state names shards itself");
      return await readShards(path, Number(md.shards), step, params, reading);
    }
    let steps: unknown;
    try {
      steps = JSON.parse(md.param_steps ?? "");
    } catch {
      throw bad(
        `__metadata__.param_steps must be a JSON object {name: step}, got ${JSON.stringify(md.param_steps)}`,
      );
    }
    if (steps === null || typeof steps !== "object" || Array.isArray(steps)) {
      throw bad(`__metadata__.param_steps must be a JSON object {name: step}, got ${JSON.stringify(steps)}`);
    }
    // Per parameter: the names of its state tensors (read on demand).
    const parts = new Map<string, Partial<Record<"exp_avg" | "exp_avg_sq" | "master", string>>>();
    for (const tname of f.names()) {
      const dot = tname.indexOf(".");
      const kind = tname.slice(0, dot);
      const name = tname.slice(dot + 1);
      if (dot < 0 || !(kind === "exp_avg" || kind === "exp_avg_sq" || kind === "master")) {
        throw bad(
          `unexpected tensor "${tname}" (names are exp_avg.<param>, exp_avg_sq.<param>, master.<param>)`,
        );
      }
      const p = params.get(name);
      if (!p) {
        const near = closeNames(name, params.keys(), 1)[0];
        throw bad(
          `tensor "${tname}" is the state of "${name}", which ${CHECKPOINT_FILES.model} does not hold` +
            (near ? ` (closest: "${near}")` : "") + `; the two files come from different saves`,
        );
      }
      const shape = f.info(tname).shape;
      if (shape.length !== p.shape.length || shape.some((d, i) => d !== p.shape[i])) {
        throw bad(`tensor "${tname}" has shape [${shape}], the parameter "${name}" has [${p.shape}]`);
      }
      if (!isSafeFloat(f.info(tname).dtype)) throw bad(`tensor "${tname}" must hold floats`);
      const entry = parts.get(name) ?? {};
      entry[kind] = tname;
      parts.set(name, entry);
    }
    const out: LoadedOptimizer["params"] = new Map();
    for (const [name, e] of parts) {
      if (!e.exp_avg || !e.exp_avg_sq) {
        throw bad(
          `"${name}" has ${e.exp_avg ? "exp_avg" : "exp_avg_sq"} but not ${
            e.exp_avg ? "exp_avg_sq" : "exp_avg"
          }`,
        );
      }
      const s = (steps as Record<string, unknown>)[name];
      if (!Number.isSafeInteger(s) || (s as number) < 1) {
        throw bad(`__metadata__.param_steps["${name}"] is ${JSON.stringify(s)}, expected an integer >= 1`);
      }
      const [m, v, master] = [e.exp_avg, e.exp_avg_sq, e.master];
      const read = async (): Promise<AdamWParamState> => {
        const st: AdamWParamState = {
          step: s as number,
          m: await readFloats(path, m, reading),
          v: await readFloats(path, v, reading),
        };
        if (master) st.master = await readFloats(path, master, reading);
        return st;
      };
      out.set(name, { step: s as number, read });
    }
    const orphans = Object.keys(steps).filter((n) => !parts.has(n));
    if (orphans.length) {
      throw bad(`__metadata__.param_steps names ${listSome(orphans)} without their tensors`);
    }
    return { step, params: out };
  } finally {
    f.close();
  }
}

/** A sharded state: every shard beside the index `path`, checked against the checksums and merged. */
async function readShards(
  path: string,
  count: number,
  step: number,
  params: Map<string, CheckpointParam>,
  reading: ReadOptions,
): Promise<LoadedOptimizer> {
  if (!Number.isSafeInteger(count) || count < 1) {
    throw new Error(`${path}: __metadata__.shards is not an integer >= 1 (${reading.fix})`);
  }
  const dir = path.slice(0, path.lastIndexOf("/"));
  const files = Array.from({ length: count }, (_, i) => optimizerShardFile(i, count));
  for (const f of files) {
    if (!(await pathExists(`${dir}/${f}`))) {
      throw new Error(`${dir}/${f}: missing; the sharded optimizer state is incomplete (${reading.fix})`);
    }
  }
  // Without checksums the folder's note was given once already, by loadCheckpoint.
  if (await pathExists(`${dir}/${CHECKPOINT_CHECKSUMS}`)) {
    await verifyCheckpoint(dir, { files, onNote: reading.note });
  }
  const merged: LoadedOptimizer["params"] = new Map();
  for (const f of files) {
    const shard = await readOptimizer(`${dir}/${f}`, params, reading, true);
    if (shard.step !== step) {
      throw new Error(
        `${dir}/${f}: its step ${shard.step} differs from the index's ${step} (${reading.fix})`,
      );
    }
    for (const [name, entry] of shard.params) {
      if (merged.has(name)) {
        throw new Error(`${dir}/${f}: holds "${name}", which an earlier shard holds too (${reading.fix})`);
      }
      merged.set(name, entry);
    }
  }
  return { step, params: merged };
}

async function openFile(path: string, fix: string): Promise<SafetensorsFile> {
  try {
    return await SafetensorsFile.open(path);
  } catch (err) {
    throw new Error(`${(err as Error).message} (${fix})`);
  }
}

function checkExpected(
  path: string,
  got: Map<string, { shape: number[] }>,
  want: Map<string, { readonly shape: readonly number[] }>,
): void {
  const missing = [...want.keys()].filter((n) => !got.has(n));
  const unexpected = [...got.keys()].filter((n) => !want.has(n));
  const shapes: string[] = [];
  for (const [n, w] of want) {
    const g = got.get(n);
    if (g && (g.shape.length !== w.shape.length || g.shape.some((d, i) => d !== w.shape[i]))) {
      shapes.push(`"${n}" is [${g.shape}] in the checkpoint, [${w.shape}] in the model`);
    }
  }
  const errs: string[] = [];
  if (missing.length) errs.push(`${missing.length} parameter(s) missing: ${listSome(missing)}`);
  if (unexpected.length) {
    errs.push(`${unexpected.length} parameter(s) the model lacks: ${listSome(unexpected)}`);
  }
  if (shapes.length) errs.push(`${shapes.length} shape mismatch(es): ${shapes.slice(0, 10).join("; ")}`);
  if (errs.length) {
    throw new Error(
      `${path}: does not match the model:\n  ${errs.join("\n  ")}\n  resume with the config (model sizes, ` +
        `stage, trainable parts) that wrote this checkpoint`,
    );
  }
}

function listSome(names: string[]): string {
  const shown = names.slice(0, 10).map((n) => `"${n}"`).join(", ");
  return names.length > 10 ? `${shown} ... and ${names.length - 10} more` : shown;
}
