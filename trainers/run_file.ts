/**
 * Loading a run file: a module whose default export is a run config (`export default defineRun({...})`)
 * or an async builder `({ build }) => config` that may first prepare what the run needs. The config is
 * validated with the `--set key=value` overrides applied, so every command that takes a run file
 * (`deno task train`, `deno task tokenizer fit`) reads it the same way.
 *
 * A run file may import modules that register kinds of its own (a custom visual head). A run folder
 * therefore records the modules its config needs, in `imports.json`: the run file itself and every
 * `--import`. `deno task eval`, `export` and `train --resume` import them again before they read the
 * run's config, so a run trained with a user's kind evaluates, exports and resumes with the shipped
 * commands; `--import <module>` on any of them covers a run folder moved away from its modules.
 *
 * ```ts ignore
 * const cfg = await loadRunFile("examples/asvr_vicuna7b.ts", ["train.stages[0].lr=2e-4"], { build: false });
 * ```
 * @module
 */

import { isAbsolute, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { readJsonFile } from "../io/json.ts";
import { pathExists } from "../io/path_exists.ts";
import { writeTextAtomic } from "../io/safetensors.ts";
import { applyRunOverrides, type RunBuilder, type RunConfig, type RunConfigInput } from "./config.ts";

/** The file of a run folder that lists the modules its config needs. */
export const RUN_IMPORTS_FILE = "imports.json";

/** Options of {@linkcode loadRunFile}. */
export interface LoadRunFileOptions {
  /**
   * Passed to a builder's `{ build }`: true lets it build what the run needs (data, small pretrained
   * parts); false asks for the config alone (as `--plan` does). A plain config ignores it.
   */
  build: boolean;
}

/**
 * Imports the run file `file` (a path, relative to the working folder or absolute), calls its builder
 * when the default export is a function, applies the `sets` overrides (`key=value`) and validates the
 * result. Errors name the file and, for a bad field, its path in the config.
 */
export async function loadRunFile(
  file: string,
  sets: readonly string[],
  opts: LoadRunFileOptions,
): Promise<RunConfig> {
  let mod: { default?: unknown };
  try {
    mod = await import(moduleUrl(file));
  } catch (err) {
    throw new Error(`${file}: cannot import it: ${(err as Error).message}`);
  }
  if (!mod.default) {
    throw new Error(`${file}: no default export; write \`export default defineRun({ ... })\``);
  }
  const cfg = typeof mod.default === "function"
    ? await (mod.default as RunBuilder)({ build: opts.build })
    : mod.default as RunConfigInput;
  return applyRunOverrides(cfg, sets, file);
}

/**
 * The URL `import()` takes for a module given on the command line: a path (relative to the working
 * folder, or absolute) becomes a file URL; a URL or a `jsr:` / `npm:` specifier stays as it is.
 */
export function moduleUrl(spec: string): string {
  if (/^[a-z][a-z0-9+.-]*:/i.test(spec) && !/^[a-z]:[\\/]/i.test(spec)) return spec;
  return pathToFileURL(isAbsolute(spec) ? spec : resolve(spec)).href;
}

/** Imports each module (`--import`), naming the one that fails. Returns their URLs. */
export async function importModules(specs: readonly string[]): Promise<string[]> {
  const urls: string[] = [];
  for (const spec of specs) {
    const url = moduleUrl(spec);
    try {
      await import(url);
    } catch (err) {
      throw new Error(`--import ${spec}: cannot import it: ${(err as Error).message}`);
    }
    urls.push(url);
  }
  return urls;
}

/** Records in `runDir` the modules (URLs) its config needs, written atomically. */
export async function writeRunImports(runDir: string, urls: readonly string[]): Promise<void> {
  const modules = [...new Set(urls)];
  await writeTextAtomic(join(runDir, RUN_IMPORTS_FILE), JSON.stringify({ modules }, null, 2) + "\n");
}

/** The modules (URLs) run folder `runDir` records; none when it has no `imports.json`. */
export async function readRunImports(runDir: string): Promise<string[]> {
  const file = join(runDir, RUN_IMPORTS_FILE);
  if (!await pathExists(file)) return [];
  const modules = (await readJsonFile(file, "a run's recorded modules") as { modules?: unknown })?.modules;
  if (!Array.isArray(modules) || !modules.every((m) => typeof m === "string")) {
    throw new Error(`${file}: expected { "modules": [urls...] }; fix or delete the file and pass --import`);
  }
  return modules;
}

/** What {@linkcode importRunModules} did. */
export interface RunImports {
  /** The recorded modules imported. */
  imported: string[];
  /** The recorded modules not found (a file URL whose file is gone); their kinds are not registered. */
  missing: string[];
}

/**
 * Imports the modules `runDir` records (`imports.json`; none for a run without one). A recorded file
 * that no longer exists is skipped and listed in `missing`; one that exists but fails to import is an
 * error naming it.
 */
export async function importRunModules(runDir: string): Promise<RunImports> {
  const file = join(runDir, RUN_IMPORTS_FILE);
  const out: RunImports = { imported: [], missing: [] };
  for (const url of await readRunImports(runDir)) {
    if (url.startsWith("file:") && !await pathExists(fileURLToPath(url))) {
      out.missing.push(url);
      continue;
    }
    try {
      await import(url);
    } catch (err) {
      throw new Error(`${file}: cannot import the recorded module ${url}: ${(err as Error).message}`);
    }
    out.imported.push(url);
  }
  return out;
}

/** An error reading a run's config, with what to do about modules the run recorded but that are gone. */
export function withMissingModules(err: unknown, missing: readonly string[]): Error {
  const e = err instanceof Error ? err : new Error(String(err));
  if (!missing.length) return e;
  return new Error(
    `${e.message}\nthe run records module(s) not found here: ${missing.join(", ")}; pass each module ` +
      `that registers the run's kinds with --import <module>`,
  );
}
