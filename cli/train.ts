/**
 * `deno task train [run.ts] [--set key=value ...] [--plan [--world-size N]] [--resume DIR] [--overwrite] [--out DIR]
 * [--import MODULE ...] [--profile] [--attention K] [--tune] [--packed-f16] [--term-timeout S] [--check-images all|N|none]
 * [--no-scan]`
 *
 * - With a run file (`export default defineRun({...})`, e.g. examples/asvr_vicuna7b.ts): trains its
 *   stages into `<out>/<name>` (default `runs/<name>`), with progress, metrics, curves and checkpoints.
 * - `--set key=value` overrides a typed config key (`train.stages[0].lr=2e-5`, `head.kind=none`); an
 *   unknown key or a wrong type is an error naming the path.
 * - `--plan` prints parameters per component, trainable parameters per stage and estimated memory
 *   against the adapter's limits, and which modes (full fine-tuning, LoRA) fit the GPU's memory
 *   (`--gpu-memory-gb N`, else nvidia-smi's figure), without loading weights, then exits. With
 *   `--world-size N` (default: the launcher's), also the memory per GPU of data-parallel training on N
 *   GPUs, with the optimizer state replicated or sharded (`train.distributed.shardOptimizer`).
 * - Before any weight loads, the data pre-flight (trainers/data_scan.ts) reads each stage's data file
 *   once, streaming: rows, malformed rows, text-only and image rows, missing images (`--check-images`:
 *   all, a random sample of N, default 1000, or none), rows estimated over `data.maxLength`, and each
 *   stage's optimizer steps, with warnings for a stage too small for its batch or its warmup. Problems
 *   that would stop the run stop it here; `--no-scan` skips the pass. `--plan` does not scan.
 * - `--resume DIR` continues the latest checkpoint of run folder DIR (or the checkpoint folder DIR);
 *   without a run file, with the run's own config and the modules it records.
 * - A new run refuses a run folder that holds a run already (config.json, metrics.jsonl or checkpoints/),
 *   naming the ways out; `--overwrite` deletes that run's files first.
 * - Ctrl-C (SIGINT) or SIGTERM: the step finishes, a checkpoint is written, and the process exits 130
 *   (SIGINT) or 143 (SIGTERM). Signals within 2 s of the first are the same burst (Ctrl-C under
 *   `deno task` arrives twice); a later one quits without saving, and so does SIGTERM's timeout
 *   (`--term-timeout S`, default 25 s, under the 30 s schedulers wait before SIGKILL; 0: none). See
 *   cli/stop_signals.ts.
 * - `--import MODULE` imports a module first (one that registers a kind, e.g. a custom visual head).
 *   The run folder records the run file and these modules (`imports.json`), so eval, export and
 *   resume import them again.
 * - `--profile` prints the GPU time per kernel label at the end (timestamp queries).
 * - `--attention K` sets the attention implementation of every layer (see {@linkcode setAttentionKernel}).
 * - `--tune` measures the attention implementations and matmul kernels at the run's shapes on this GPU
 *   and uses the fastest where no flag forces one (`TrainOptions.tune`).
 * - `--packed-f16` makes f16 matmuls sum their products in packed f16 per step (see {@linkcode setPackedF16}).
 * - With no run file: `examples/asvr_tiny.ts`, the embedded default (a tiny ASVR study on generated data).
 * - Under an MPI launcher (`mpirun -np N deno task train run.ts`): data-parallel training on N ranks
 *   (trainers/data_parallel.ts); rank 0 checks the data, writes the run folder and prints; every rank
 *   prints its adapter. An error on any rank prints that rank's message and ends every rank (MPI_Abort),
 *   exit code 1.
 *
 * A run file's default export is the config (`defineRun({...})`) or an async function returning it (which may
 * first build what the run needs, as `examples/asvr_tiny.ts` does).
 * @module
 */

import { parseArgs } from "node:util";
import { basename, dirname, join, resolve } from "node:path";
import { Engine } from "../core/engine.ts";
import { NoAdapterError } from "../core/device.ts";
import {
  ATTENTION_KERNELS,
  type AttentionKernel,
  setAttentionKernel,
} from "../core/kernels/attention/attention.ts";
import { setPackedF16 } from "../core/kernels/matmul/matmul.ts";
import { formatKernelTimes } from "../core/profiler.ts";
import { formatPlan, formatWorld, planFits, planRun, planWorld } from "../trainers/plan.ts";
import { formatMissing, missingInputs } from "../trainers/preflight.ts";
import {
  DEFAULT_IMAGE_CHECK,
  formatScanErrors,
  parseImageCheck,
  scanRunData,
} from "../trainers/data_scan.ts";
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
import { holdsRun, prepareNewRunDir, RunDirInUseError, runFiles } from "../trainers/run_dir.ts";
import { BURST_SECONDS, DEFAULT_TERM_TIMEOUT_SECONDS, StopSignals } from "./stop_signals.ts";
import { isLaunchedByMpi, launcherWorldSize } from "../dist/launcher.ts";
import { Mpi } from "../dist/mpi.ts";
import { DataParallel } from "../trainers/data_parallel.ts";

const USAGE =
  `usage: deno task train [run.ts] [--set key=value ...] [--plan [--world-size N]] [--resume DIR] [--overwrite] [--out DIR]
                       [--import M ...] [--profile] [--attention K] [--tune] [--packed-f16] [--term-timeout S]
                       [--check-images all|N|none] [--no-scan]
  run.ts         a run file (export default defineRun({...})), e.g. examples/asvr_vicuna7b.ts;
                 default examples/asvr_tiny.ts, the embedded tiny study
  --set k=v      override a config key (repeatable): train.stages[0].lr=2e-5, head.kind=none
  --plan         print parameters and estimated memory per stage, then exit (no weights needed);
                 with --gpu-memory-gb N (or nvidia-smi's figure) it says which modes fit;
                 --world-size N adds the memory per GPU of data-parallel training on N GPUs
  --resume DIR   continue a run folder's latest checkpoint (or the checkpoint folder given); without
                 run.ts, with the run's own config.json and recorded modules
  --overwrite    start afresh in a run folder that holds a run: its run files are deleted first
                 (without it, such a folder is refused: --resume it, or train into another folder)
  --out DIR      the run folder (default: <train.out>/<name>)
  --import M     import module M first (repeatable): one that registers a kind, e.g. a custom head
  --profile      print the GPU time per kernel at the end (needs the adapter's timestamp-query)
  --attention K  the attention implementation of every layer: auto (default: score blocks through the
                 matmul kernels on GPUs), flash (FlashAttention-2 style kernels), matmul or fused
  --tune         measure kernel choices on this GPU and use the fastest: the attention implementations
                 at each stage's shapes before its first step, the matmul kernels of each product of
                 that step after it (seconds; prints the times; runs may then choose differently and
                 differ in their last bits)
  --packed-f16   f16 matmuls sum each 8-16 products in packed f16 before adding them up in f32 (faster
                 on GPUs with packed f16 math, about 10x the rounding error; see MatmulOptions.packedF16)
  --term-timeout S
                 after SIGTERM, seconds to finish the step and save before quitting without saving
                 (default ${DEFAULT_TERM_TIMEOUT_SECONDS}: under the 30 s Kubernetes and Slurm wait before SIGKILL; 0: no limit)
  --check-images all|N|none
                 which images the data pre-flight checks exist: every one, a random sample of N
                 (default ${DEFAULT_IMAGE_CHECK}), or none
  --no-scan      skip the data pre-flight: before any weight loads, each stage's data file is read
                 once (rows, malformed rows, missing images, rows over data.maxLength, optimizer steps,
                 warnings for small data); problems that would stop the run stop it there

Ctrl-C (SIGINT) or SIGTERM: finish the step, save a checkpoint, exit 130 (SIGINT) or 143 (SIGTERM).
Another signal ${BURST_SECONDS} s or more after the first quits at once without saving; signals within ${BURST_SECONDS} s of
the first are one burst (under deno task, one Ctrl-C reaches the process twice).`;

const GB = 1e9;

const { values, positionals } = parseArgs({
  args: Deno.args.filter((a) => a !== "--"),
  allowPositionals: true,
  options: {
    set: { type: "string", multiple: true, default: [] },
    plan: { type: "boolean", default: false },
    resume: { type: "string" },
    overwrite: { type: "boolean", default: false },
    "term-timeout": { type: "string" },
    out: { type: "string" },
    import: { type: "string", multiple: true, default: [] },
    profile: { type: "boolean", default: false },
    attention: { type: "string", default: "auto" },
    tune: { type: "boolean", default: false },
    "packed-f16": { type: "boolean", default: false },
    "check-images": { type: "string" },
    "no-scan": { type: "boolean", default: false },
    "gpu-memory-gb": { type: "string" },
    "world-size": { type: "string" },
    help: { type: "boolean", short: "h", default: false },
  },
});

if (values.help) {
  console.log(USAGE);
  Deno.exit(0);
}

// Under mpirun (not for --plan): MPI starts before anything else, so every rank can end the job.
const mpi = isLaunchedByMpi() && !values.plan ? Mpi.init() : null;
const who = mpi && mpi.size > 1 ? `rank ${mpi.rank} of ${mpi.size}: ` : "";
let code: number;
try {
  code = await runFile(positionals[0] ?? null);
} catch (err) {
  if (err instanceof NoAdapterError) console.error(who + err.message);
  else console.error(`train: ${who}${err instanceof Error ? err.message : String(err)}`);
  if (mpi && mpi.size > 1) mpi.abort(1); // the other ranks would wait for this one forever
  Deno.exit(1);
}
await mpi?.finalize();
if (code !== 0) Deno.exit(code);

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

/** The run ends with this exit code (0 unless a stop signal came). */
async function runFile(file: string | null): Promise<number> {
  const termTimeout = Number(values["term-timeout"] ?? DEFAULT_TERM_TIMEOUT_SECONDS);
  if (!(termTimeout >= 0)) {
    throw new Error(`--term-timeout: a number of seconds >= 0 (0: no limit), got ${values["term-timeout"]}`);
  }
  const attention = values.attention as AttentionKernel;
  if (!(ATTENTION_KERNELS as readonly string[]).includes(attention)) {
    throw new Error(`--attention: one of ${ATTENTION_KERNELS.join(", ")}, got ${values.attention}`);
  }
  if (values.overwrite && values.resume) {
    throw new Error(`--overwrite starts a run afresh and --resume ${values.resume} continues one: give one`);
  }
  const { cfg, modules } = await loadConfig(file);
  if (values.plan) {
    const plan = await planRun(cfg);
    let limits: { maxStorageBufferBindingSize: number; maxBufferSize: number } | undefined;
    try {
      const e = await Engine.create();
      const l = e.info.limits;
      limits = { maxStorageBufferBindingSize: l.maxStorageBufferBindingSize, maxBufferSize: l.maxBufferSize };
      console.log(`adapter: ${e.info.description}${e.info.isFallbackAdapter ? " (software)" : ""}`);
      await e.close();
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
    const world = values["world-size"] !== undefined
      ? Number(values["world-size"])
      : launcherWorldSize() ?? 1;
    if (!Number.isInteger(world) || world < 1) {
      throw new Error(`--world-size: a whole number of GPUs >= 1, got ${values["world-size"]}`);
    }
    if (world > 1) { for (const line of formatWorld(planWorld(cfg, plan, world), memory)) console.log(line); }
    return 0;
  }
  const checkImages = values["check-images"] === undefined
    ? DEFAULT_IMAGE_CHECK
    : parseImageCheck(values["check-images"]);
  const missing = await missingInputs(cfg);
  if (missing.length) throw new Error(formatMissing(missing));
  const lead = !mpi || mpi.rank === 0; // checks the data, writes the run folder, prints
  const log = (line: string) => lead && console.log(line);
  if (mpi && mpi.size > 1) log(`data parallel: ${mpi.size} ranks (${mpi.version.split(",")[0]})`);
  // `--resume DIR`: a run folder, or one of its checkpoints (runs/x/checkpoints/step-00000120).
  const resume = values.resume;
  const runDir = values.out ?? (resume && runFolderOf(resume)) ?? join(cfg.train.out, cfg.name);
  // A new run (or a resume into another folder) never mixes its files with a run already there. Checked
  // before anything is written, imports.json included, and before the data scan (which can take minutes);
  // with --overwrite the old run's files go only once the scan has passed.
  const newRun = !resume || resolve(runDir) !== resolve(runFolderOf(resume));
  if (lead && newRun && !values.overwrite && await holdsRun(runDir)) {
    throw new RunDirInUseError(runDir, await runFiles(runDir));
  }
  if (!values["no-scan"] && lead) await scanData(cfg, checkImages);
  if (lead && newRun) {
    const removed = await prepareNewRunDir(runDir, { overwrite: values.overwrite });
    if (removed.length) console.log(`overwrite: deleted the old run's ${removed.join(", ")} in ${runDir}`);
  }
  const e = await Engine.create();
  console.log(
    `${who}adapter: ${e.info.description}${e.info.isFallbackAdapter ? " (software: correct, slow)" : ""}`,
  );
  // The modules eval, export and a later resume import before reading the run's config.
  if (lead) {
    await Deno.mkdir(runDir, { recursive: true });
    if (file !== null || !resume) await writeRunImports(runDir, modules);
    else if (modules.length) await writeRunImports(runDir, [...await readRunImports(runDir), ...modules]);
  }
  const stops = new StopSignals({ termTimeout, note: `resume with --resume ${runDir}` }).listen();
  const t0 = performance.now();
  setAttentionKernel(e, attention);
  if (attention !== "auto") log(`attention: ${attention}`);
  if (values["packed-f16"]) {
    setPackedF16(e, true);
    log("matmul: f16 products summed in packed f16 per step (--packed-f16)");
  }
  if (values.profile) e.startProfiling();
  const parallel = mpi && mpi.size > 1
    ? new DataParallel(mpi, { bucketBytes: cfg.train.distributed.bucketMiB * 2 ** 20 })
    : undefined;
  const r = await train(e, cfg, {
    runDir,
    resume,
    signal: stops.signal,
    parallel,
    tune: values.tune,
  });
  if (values.profile) log(`GPU time per kernel:\n${formatKernelTimes(await e.stopProfiling())}`);
  if (r.stopped) log(`stopped; continue with --resume ${runDir}`);
  const last = r.history.at(-1);
  log(
    `done in ${((performance.now() - t0) / 1000).toFixed(1)} s: ${r.history.length} steps` +
      (last
        ? `, last losses ${Object.entries(last.losses).map(([k, v]) => `${k} ${v.toFixed(4)}`).join(" ")}`
        : "") +
      `; run folder ${runDir}, checkpoint ${r.checkpoint ?? "none"}`,
  );
  await e.close();
  stops.close();
  return stops.exitCode ?? 0;
}

/**
 * The data pre-flight: scans each stage's data file and prints its summary; throws when it finds what
 * would stop the run. The length estimate counts the encoder's image positions from the plan (read from
 * the model folders' config.json, no weights).
 */
async function scanData(cfg: RunConfig, checkImages: ReturnType<typeof parseImageCheck>): Promise<void> {
  let imageTokens = 0;
  try {
    imageTokens = (await planRun(cfg)).imageTokens;
  } catch (err) {
    console.log(
      `data pre-flight: image positions per row unknown (${(err as Error).message}); counting text only`,
    );
  }
  const r = await scanRunData(cfg, { imageTokens, checkImages, print: (l) => console.log(l) });
  if (r.errors.length) throw new Error(formatScanErrors(r.errors));
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
