/**
 * `deno task train [config.ts] [--set key=value ...] [--plan] [--resume DIR] [--out DIR]`
 *
 * - With a run file (`export default defineRun({...})`, e.g. examples/asvr_vicuna7b.ts): trains its
 *   stages into `<out>/<name>` (default `runs/<name>`), with progress, metrics, curves and checkpoints.
 * - `--set key=value` overrides a typed config key (`train.stages[0].lr=2e-5`, `head.kind=none`); an
 *   unknown key or a wrong type is an error naming the path.
 * - `--plan` prints parameters per component, trainable parameters per stage and estimated memory
 *   against the adapter's limits, without loading weights, then exits.
 * - `--resume DIR` continues the latest checkpoint of run folder DIR (or the checkpoint folder DIR).
 * - With no run file: trains the tiny causal transformer of `examples/tiny_lm.ts` (a smoke test of the
 *   engine on any adapter).
 * @module
 */

import { parseArgs } from "node:util";
import { basename, dirname, join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { Engine } from "../core/engine.ts";
import { NoAdapterError } from "../core/device.ts";
import { TINY_LM, trainTinyLM } from "../examples/tiny_lm.ts";
import { applyRunOverrides, type RunConfig, type RunConfigInput } from "../trainers/config.ts";
import { formatPlan, planRun } from "../trainers/plan.ts";
import { formatMissing, missingInputs } from "../trainers/preflight.ts";
import { train } from "../trainers/trainer.ts";

const USAGE = `usage: deno task train [config.ts] [--set key=value ...] [--plan] [--resume DIR] [--out DIR]
  config.ts      a run file (export default defineRun({...})), e.g. examples/asvr_vicuna7b.ts
  --set k=v      override a config key (repeatable): train.stages[0].lr=2e-5, head.kind=none
  --plan         print parameters and estimated memory per stage, then exit (no weights needed)
  --resume DIR   continue a run folder's latest checkpoint (or the checkpoint folder given)
  --out DIR      the run folder (default: <train.out>/<name>)
  --steps N      (no config) steps of the tiny engine smoke test (default 300)`;

const { values, positionals } = parseArgs({
  args: Deno.args.filter((a) => a !== "--"),
  allowPositionals: true,
  options: {
    set: { type: "string", multiple: true, default: [] },
    plan: { type: "boolean", default: false },
    resume: { type: "string" },
    out: { type: "string" },
    steps: { type: "string", default: "300" },
    help: { type: "boolean", short: "h", default: false },
  },
});

if (values.help) {
  console.log(USAGE);
  Deno.exit(0);
}

try {
  if (positionals.length === 0) await smokeTest(Number(values.steps));
  else await runFile(positionals[0]);
} catch (err) {
  if (err instanceof NoAdapterError) console.error(err.message);
  else console.error(`train: ${err instanceof Error ? err.message : String(err)}`);
  Deno.exit(1);
}

async function runFile(file: string): Promise<void> {
  const cfg = await loadRunFile(file, values.set ?? []);
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
  const resumeRun = resume && basename(dirname(resolve(resume))) === "checkpoints"
    ? dirname(dirname(resume))
    : resume;
  const runDir = values.out ?? resumeRun ?? join(cfg.train.out, cfg.name);
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
  const r = await train(e, cfg, { runDir, resume, signal: abort.signal });
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

/** Imports a run file and applies the overrides; errors name the file and the field. */
async function loadRunFile(file: string, sets: string[]): Promise<RunConfig> {
  let mod: { default?: unknown };
  try {
    mod = await import(pathToFileURL(resolve(file)).href);
  } catch (err) {
    throw new Error(`${file}: cannot import it: ${(err as Error).message}`);
  }
  if (!mod.default) {
    throw new Error(`${file}: no default export; write \`export default defineRun({ ... })\``);
  }
  return applyRunOverrides(mod.default as RunConfigInput, sets, file);
}

/** The tiny engine smoke test (no config given). */
async function smokeTest(steps: number): Promise<void> {
  if (!Number.isInteger(steps) || steps < 1) {
    throw new Error(`--steps must be a positive integer, got ${values.steps}`);
  }
  const e = await Engine.create();
  console.log(`adapter: ${e.info.description}${e.info.isFallbackAdapter ? " (software)" : ""}`);
  console.log(
    `model: tiny causal transformer, V=${TINY_LM.vocab} C=${TINY_LM.width} heads=${TINY_LM.heads}/${TINY_LM.kvHeads} ` +
      `layers=${TINY_LM.layers}; task: each token is the sum of the two before it, mod V`,
  );
  const t0 = performance.now();
  const { losses } = await trainTinyLM(e, TINY_LM, {
    steps,
    batch: 16,
    seqLen: 12,
    lr: 1e-2,
    seed: 1,
    onStep: (s, loss) => {
      if (s % 10 === 0 || s === steps - 1) {
        const elapsed = (performance.now() - t0) / 1000, rate = (s + 1) / elapsed;
        const eta = (steps - s - 1) / rate;
        console.log(
          `step ${String(s + 1).padStart(5)}/${steps}  loss ${loss.toFixed(4)}  ${
            rate.toFixed(1)
          } steps/s  ` +
            `gpu mem ${(e.pool.bytesInUse / 2 ** 20).toFixed(1)} MiB  eta ${eta.toFixed(0)}s`,
        );
      }
    },
  });
  console.log(
    `done in ${((performance.now() - t0) / 1000).toFixed(1)}s: loss ${losses[0].toFixed(3)} -> ` +
      `${losses.at(-1)!.toFixed(3)} (a uniform guess scores ln V = ${Math.log(TINY_LM.vocab).toFixed(3)})`,
  );
  e.destroy();
}
