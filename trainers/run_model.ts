/**
 * A trained run's model, rebuilt: the run's `config.json`, the model it describes (the base weights
 * from the config's folders), then a checkpoint's parameters, checked against the checkpoint's
 * checksums and streamed one tensor at a time. What `deno task eval` and `deno task export` start
 * from.
 * @module
 */

import { basename, dirname, join } from "node:path";
import type { Engine } from "../core/engine.ts";
import { Checkpoint } from "../io/safetensors.ts";
import { loadParams } from "../io/params.ts";
import { readJsonFile } from "../io/json.ts";
import { pathExists } from "../io/path_exists.ts";
import { AsvrModel } from "../models/asvr_model.ts";
import { CHECKPOINT_FILES, latestCheckpoint, verifyCheckpoint } from "./checkpoint.ts";
import { modelConfig, parseRunConfig, type RunConfig } from "./config.ts";
import { importModules, importRunModules, withMissingModules } from "./run_file.ts";
import { transferProgressPrinter } from "./progress.ts";

/** A trained run: where it is, which checkpoint, its config. */
export interface RunInfo {
  /** The run folder (holding config.json and checkpoints/). */
  runDir: string;
  /** The checkpoint folder the parameters come from. */
  checkpoint: string;
  /** The run's config. */
  cfg: RunConfig;
  /** The folder of the run's tokenizer.json: its own copy, else where the config found it. */
  tokenizerDir: string;
}

/** Options of {@linkcode findRun}. */
export interface FindRunOptions {
  /** Modules to import before reading the config (`--import`), besides those the run records. */
  imports?: readonly string[];
  /** Where a one-line note goes when a newer checkpoint is skipped as incomplete (default: `console.warn`). */
  onNote?: (line: string) => void;
}

/**
 * Finds the run of `target`, a run folder (its latest complete checkpoint) or a checkpoint folder
 * (`runs/x/checkpoints/step-00000120`), imports the modules it records (`imports.json`, the kinds of
 * its run file) and `opts.imports`, and reads its config (nothing is loaded yet).
 */
export async function findRun(target: string, opts: FindRunOptions = {}): Promise<RunInfo> {
  const isCheckpoint = basename(dirname(target)) === "checkpoints";
  const runDir = isCheckpoint ? dirname(dirname(target)) : target;
  const note = opts.onNote ?? ((line: string) => console.warn(line));
  const checkpoint = isCheckpoint ? target : await latestCheckpoint(runDir, note);
  if (!checkpoint) throw new Error(`${runDir}: no complete checkpoint under ${runDir}/checkpoints`);
  const cfg = await readRunConfig(runDir, opts.imports ?? []);
  const ownTokenizer = join(runDir, "tokenizer");
  const tokenizerDir = await pathExists(join(ownTokenizer, "tokenizer.json"))
    ? ownTokenizer
    : cfg.data.tokenizer ?? cfg.llm.path!;
  return { runDir, checkpoint, cfg, tokenizerDir };
}

/**
 * The config of run folder `runDir` (`config.json`), read after importing `imports` and the modules
 * the run records; an unknown kind names the recorded modules that are gone and the fix.
 */
export async function readRunConfig(runDir: string, imports: readonly string[]): Promise<RunConfig> {
  await importModules(imports);
  const { missing } = await importRunModules(runDir);
  const configPath = join(runDir, "config.json");
  const json = await readJsonFile(configPath, "a run's config");
  try {
    return parseRunConfig(json, configPath);
  } catch (err) {
    throw withMissingModules(err, missing);
  }
}

/**
 * Builds the model of a run found by {@linkcode findRun} (the base weights from its config's folders)
 * and loads its checkpoint's parameters, printing load progress through `print`. The checkpoint's
 * model.safetensors is first checked against its checksum (a damaged file is refused before anything
 * is built; a checkpoint saved without checksums gets a note through `print`), and parameters holding
 * NaN or infinities are refused.
 */
export async function loadRunModel(
  e: Engine,
  run: RunInfo,
  print: (line: string) => void = () => {},
): Promise<AsvrModel> {
  await verifyCheckpoint(run.checkpoint, { files: [CHECKPOINT_FILES.model], onNote: print });
  const loading = transferProgressPrinter(print);
  const model = await AsvrModel.build(e, modelConfig(run.cfg), {
    dtype: run.cfg.train.dtype,
    seed: run.cfg.train.seed,
    onLoadProgress: (part, p) => loading(`loading ${part}`, p),
  });
  try {
    const ckpt = await Checkpoint.open(join(run.checkpoint, CHECKPOINT_FILES.model));
    try {
      await loadParams(model.params(), ckpt, {
        onProgress: (p) => loading(`loading checkpoint ${run.checkpoint}`, p),
      });
    } finally {
      ckpt.close();
    }
  } catch (err) {
    await model.dispose();
    throw err;
  }
  return model;
}
