/**
 * A new run's folder: one that holds no other run. Training into a folder that holds a run would mix two
 * runs' files (metrics.jsonl with steps 1-8 then 1, 2; the old run's checkpoints pruned by `keepLast`;
 * its config.json replaced), so {@linkcode prepareNewRunDir} refuses, naming the ways out, unless asked to
 * overwrite: then it deletes the old run's files first (and only those: other files stay).
 *
 * A folder holds a run when it has `config.json`, `metrics.jsonl` or `checkpoints/`. An absent or empty
 * folder, or one with only other files, is fine.
 *
 * ```ts ignore
 * await prepareNewRunDir("runs/tiny", { overwrite: false }); // throws RunDirInUseError if runs/tiny holds a run
 * ```
 * @module
 */

import { join } from "node:path";

/** The files and folders whose presence means a folder holds a run. */
export const RUN_MARKERS: readonly string[] = ["config.json", "metrics.jsonl", "checkpoints"];

/** The names a run writes into its folder (what `overwrite` deletes). */
const RUN_ENTRY =
  /^(config\.json|imports\.json|metrics\.jsonl|loss\.svg|lr\.svg|eval(-step-\d+)?\.json|tokenizer|checkpoints)$/;

/** Thrown by {@linkcode prepareNewRunDir} when the folder holds a run. */
export class RunDirInUseError extends Error {
  /** The folder. */
  readonly dir: string;

  /** The error for `dir`, which holds the run files `found`. */
  constructor(dir: string, found: readonly string[]) {
    super(
      `${dir} holds a run already (${found.join(", ")}); continue it with --resume ${dir}, start afresh ` +
        `with --overwrite (its run files are deleted first), or train into another folder (--out DIR, ` +
        `or another run name: --set name=NAME)`,
    );
    this.name = "RunDirInUseError";
    this.dir = dir;
  }
}

/**
 * The run files in `dir` (`config.json`, `metrics.jsonl`, `checkpoints/`, curves, `tokenizer/`, ...),
 * sorted, folders with a trailing "/"; none when `dir` does not exist.
 */
export async function runFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  try {
    for await (const e of Deno.readDir(dir)) {
      if (RUN_ENTRY.test(e.name)) out.push(e.isDirectory ? `${e.name}/` : e.name);
    }
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return [];
    throw err;
  }
  return out.sort();
}

/** Whether `dir` holds a run: it has `config.json`, `metrics.jsonl` or `checkpoints/`. */
export async function holdsRun(dir: string): Promise<boolean> {
  return (await runFiles(dir)).some((f) => RUN_MARKERS.includes(f.replace(/\/$/, "")));
}

/** Options of {@linkcode prepareNewRunDir}. */
export interface PrepareRunDirOptions {
  /** Delete the run files of a run already there (default false: refuse). */
  overwrite?: boolean;
}

/**
 * Makes `dir` ready for a new run: creates it when absent; throws {@linkcode RunDirInUseError} when it
 * holds a run, or with `overwrite` deletes that run's files (other files stay). Returns the files deleted.
 */
export async function prepareNewRunDir(dir: string, opts: PrepareRunDirOptions = {}): Promise<string[]> {
  const found = await runFiles(dir);
  if (!found.some((f) => RUN_MARKERS.includes(f.replace(/\/$/, "")))) {
    await Deno.mkdir(dir, { recursive: true });
    return [];
  }
  if (!opts.overwrite) throw new RunDirInUseError(dir, found);
  // Checkpoints first: a deletion cut short leaves metrics.jsonl, so the folder still reads as a run.
  const order = [...found].sort((a, b) => Number(b === "checkpoints/") - Number(a === "checkpoints/"));
  for (const f of order) await Deno.remove(join(dir, f), { recursive: true });
  return found;
}
