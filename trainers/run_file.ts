/**
 * Loading a run file: a module whose default export is a run config (`export default defineRun({...})`)
 * or an async builder `({ build }) => config` that may first prepare what the run needs. The config is
 * validated with the `--set key=value` overrides applied, so every command that takes a run file
 * (`deno task train`, `deno task tokenizer fit`) reads it the same way.
 *
 * ```ts ignore
 * const cfg = await loadRunFile("examples/asvr_vicuna7b.ts", ["train.stages[0].lr=2e-4"], { build: false });
 * ```
 * @module
 */

import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { applyRunOverrides, type RunBuilder, type RunConfig, type RunConfigInput } from "./config.ts";

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
    mod = await import(pathToFileURL(resolve(file)).href);
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
