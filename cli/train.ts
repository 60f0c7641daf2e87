/**
 * `deno task train [run.ts] [--set key=value ...] [--plan] [--resume DIR] [--out DIR] [--import MODULE ...]
 * [--profile]`
 *
 * - With a run file (`export default defineRun({...})`, e.g. examples/asvr_vicuna7b.ts): trains its
 *   stages into `<out>/<name>` (default `runs/<name>`), with progress, metrics, curves and checkpoints.
 * - `--set key=value` overrides a typed config key (`train.stages[0].lr=2e-5`, `head.kind=none`); an
 *   unknown key or a wrong type is an error naming the path.
 * - `--plan` prints parameters per component, trainable parameters per stage and estimated memory
 *   against the adapter's limits, and which modes (full fine-tuning, LoRA) fit the GPU's memory
 *   (`--gpu-memory-gb N`, else nvidia-smi's figure), without loading weights, then exits.
 * - `--resume DIR` continues the latest checkpoint of run folder DIR (or the checkpoint folder DIR);
 *   without a run file, with the run's own config and the modules it records.
 * - `--import MODULE` imports a module first (one that registers a kind, e.g. a custom visual head).
 *   The run folder records the run file and these modules (`imports.json`), so eval, export and
 *   resume import them again.
 * - `--profile` prints the GPU time per kernel label at the end (timestamp queries).
 * - With no run file: `examples/asvr_tiny.ts`, the embedded default (a tiny ASVR study on generated data).
 *
 * A run file's default export is the config (`defineRun({...})`) or an async function returning it (which may
 * first build what the run needs, as `examples/asvr_tiny.ts` does).
 * @module
 */

import { parseArgs } from "node:util";
import { basename, dirname, join, resolve } from "node:path";
import { Engine } from "../core/engine.ts";
import { NoAdapterError } from "../core/device.ts";
import { formatKernelTimes } from "../core/profiler.ts";
import { formatPlan, planFits, planRun } from "../trainers/plan.ts";
import { formatMissing, missingInputs } from "../trainers/preflight.ts";
import {
  importModules,
  loadRunFile,
  moduleUrl,
  readRunImports,
  writeRunImports,
} from "../trainers/run_file.ts";
import { readRunConfig } from "../trainers/run_model.ts";
import { applyRunOverrides, type RunConfig } from "../trainers/config.ts";
import { train } from "../trainers/trainer.ts";

const USAGE =
  `usage: deno task train [run.ts] [--set key=value ...] [--plan] [--resume DIR] [--out DIR] [--profile]
  run.ts         a run file (export default defineRun({...})), e.g. examples/asvr_vicuna7b.ts;
                 default examples/asvr_tiny.ts, the embedded tiny study
  --set k=v      override a config key (repeatable): train.stages[0].lr=2e-5, head.kind=none
  --plan         print parameters and estimated memory per stage, then exit (no weights needed);
                 with --gpu-memory-gb N (or nvidia-smi's figure) it says which modes fit
  --resume DIR   continue a run folder's latest checkpoint (or the checkpoint folder given); without
                 run.ts, with the run's own config.json and recorded modules
  --out DIR      the run folder (default: <train.out>/<name>)
  --import M     import module M first (repeatable): one that registers a kind, e.g. a custom head
  --profile      print the GPU time per kernel at the end (needs the adapter's timestamp-query)`;

const GB = 1e9;

const { values, positionals } = parseArgs({
  args: Deno.args.filter((a) => a !== "--"),
  allowPositionals: true,
  options: {
    set: { type: "string", multiple: true, default: [] },
    plan: { type: "boolean", default: false },
    resume: { type: "string" },
    out: { type: "string" },
    import: { type: "string", multiple: true, default: [] },
    profile: { type: "boolean", default: false },
    "gpu-memory-gb": { type: "string" },
    help: { type: "boolean", short: "h", default: false },
  },
});

if (values.help) {
  console.log(USAGE);
  Deno.exit(0);
}

try {
  await runFile(positionals[0] ?? null);
} catch (err) {
  if (err instanceof NoAdapterError) console.error(err.message);
  else console.error(`train: ${err instanceof Error ? err.message : String(err)}`);
  Deno.exit(1);
}

/** The run's config, and the modules (URLs) its run folder records: the run file and every --import. */
async function loadConfig(file: string | null): Promise<{ cfg: RunConfig; modules: string[] }> {
  const imports = values.import ?? [];
  const sets = values.set ?? [];
  if (file === null && values.resume) {
    // `--resume DIR` alone: the run's own config, after the modules it records.
    const runDir = runFolderOf(values.resume);
    const configPath = join(runDir, "config.json");
    console.log(`config: ${configPath}`);
    const cfg = applyRunOverrides(await readRunConfig(runDir, imports), sets, configPath);
    return { cfg, modules: imports.map(moduleUrl) };
  }
  const runFile = file ?? new URL("../examples/asvr_tiny.ts", import.meta.url).href;
  const urls = await importModules(imports);
  // A builder gets { build: false } for --plan: the config without building anything.
  const cfg = await loadRunFile(runFile, sets, { build: !values.plan });
  return { cfg, modules: [moduleUrl(runFile), ...urls] };
}

/** The run folder of `--resume DIR`: DIR, or the run of a checkpoint folder (runs/x/checkpoints/step-N). */
function runFolderOf(resume: string): string {
  return basename(dirname(resolve(resume))) === "checkpoints" ? dirname(dirname(resume)) : resume;
}

async function runFile(file: string | null): Promise<void> {
  const { cfg, modules } = await loadConfig(file);
  if (values.plan) {
    const plan = await planRun(cfg);
    let limits: { maxStorageBufferBindingSize: number; maxBufferSize: number } | undefined;
    try {
      const e = await Engine.create();
      const l = e.info.limits;
      limits = { maxStorageBufferBindingSize: l.maxStorageBufferBindingSize, maxBufferSize: l.maxBufferSize };
      console.log(`adapter: ${e.info.description}${e.info.isFallbackAdapter ? " (software)" : ""}`);
      e.destroy();
    } catch (err) {
      if (!(err instanceof NoAdapterError)) throw err;
      console.log("adapter: none found (limits unknown)");
    }
    console.log(formatPlan(plan, limits));
    const memory = values["gpu-memory-gb"] !== undefined
      ? Number(values["gpu-memory-gb"]) * GB
      : await nvidiaMemory();
    if (memory !== null && !(memory > 0)) {
      throw new Error(`--gpu-memory-gb: a number > 0, got ${values["gpu-memory-gb"]}`);
    }
    for (const line of await planFits(cfg, plan, memory)) console.log(line);
    return;
  }
  const missing = await missingInputs(cfg);
  if (missing.length) throw new Error(formatMissing(missing));
  const e = await Engine.create();
  console.log(
    `adapter: ${e.info.description}${e.info.isFallbackAdapter ? " (software: correct, slow)" : ""}`,
  );
  // `--resume DIR`: a run folder, or one of its checkpoints (runs/x/checkpoints/step-00000120).
  const resume = values.resume;
  const runDir = values.out ?? (resume && runFolderOf(resume)) ?? join(cfg.train.out, cfg.name);
  // The modules eval, export and a later resume import before reading the run's config.
  await Deno.mkdir(runDir, { recursive: true });
  if (file !== null || !resume) await writeRunImports(runDir, modules);
  else if (modules.length) await writeRunImports(runDir, [...await readRunImports(runDir), ...modules]);
  // Ctrl-C once: finish the step, write a checkpoint, stop. Twice: exit now (checkpoints are written
  // atomically, so the last complete one stays good either way).
  const abort = new AbortController();
  const onInt = () => {
    if (abort.signal.aborted) Deno.exit(130);
    console.log(
      `\nstopping after this step with a checkpoint (Ctrl-C again to quit now); resume with --resume ${runDir}`,
    );
    abort.abort();
  };
  Deno.addSignalListener("SIGINT", onInt);
  const t0 = performance.now();
  if (values.profile) e.startProfiling();
  const r = await train(e, cfg, { runDir, resume, signal: abort.signal });
  if (values.profile) console.log(`GPU time per kernel:\n${formatKernelTimes(await e.stopProfiling())}`);
  Deno.removeSignalListener("SIGINT", onInt);
  if (r.stopped) console.log(`stopped; continue with --resume ${runDir}`);
  const last = r.history.at(-1);
  console.log(
    `done in ${((performance.now() - t0) / 1000).toFixed(1)} s: ${r.history.length} steps` +
      (last
        ? `, last losses ${Object.entries(last.losses).map(([k, v]) => `${k} ${v.toFixed(4)}`).join(" ")}`
        : "") +
      `; run folder ${runDir}, checkpoint ${r.checkpoint ?? "none"}`,
  );
  e.destroy();
}

/** The first GPU's memory in bytes as nvidia-smi reports it, or null without nvidia-smi. */
async function nvidiaMemory(): Promise<number | null> {
  try {
    const r = await new Deno.Command("nvidia-smi", {
      args: ["--query-gpu=memory.total", "--format=csv,noheader,nounits"],
      stdout: "piped",
      stderr: "null",
    }).output();
    const mib = Number(new TextDecoder().decode(r.stdout).split("\n")[0]);
    return r.success && mib > 0 ? mib * 2 ** 20 : null;
  } catch {
    return null; // not installed
  }
}
