/**
 * `deno task ablate [--seeds N] [--variants a,b,...] [--out DIR] [--set key=value ...]`
 *
 * The paper's ablation on the embedded tiny study (examples/asvr_tiny.ts): the same recipe, data and
 * pretrained parts, with the visual head `none` (the LLaVA baseline), `pixel` (reconstructing appearance
 * codes), `semantic` (ASVR), `dual` (both), and `semantic_next` (ASVR with the paper's `next` alignment),
 * each over several seeds. Prints and writes `<out>/ablation.md` (mean and spread of accuracy per question
 * category and overall, final losses, and how much each model's text depends on its image: the stage-2 text
 * loss with each row's own image against another row's) and `<out>/ablation.svg`. A run already finished (its `eval.json`
 * exists) is read back instead of retrained, so an interrupted ablation continues where it stopped; one
 * trained with another config (the recipe or its parts changed since) stops it with an error.
 * @module
 */

import { parseArgs } from "node:util";
import { join } from "node:path";
import { Engine } from "../core/engine.ts";
import { NoAdapterError } from "../core/device.ts";
import { applyRunOverrides, modelConfig, parseRunConfig } from "../trainers/config.ts";
import { type ImageReliance, imageReliance } from "../trainers/image_reliance.ts";
import { StageData } from "../trainers/stage_data.ts";
import { latestCheckpoint, verifyCheckpoint } from "../trainers/checkpoint.ts";
import { AsvrModel } from "../models/asvr_model.ts";
import { TextTokenizer } from "../tokenizers/text_tokenizer.ts";
import { Checkpoint, writeTextAtomic } from "../io/safetensors.ts";
import { loadParams } from "../io/params.ts";
import { readJsonFile } from "../io/json.ts";
import { train } from "../trainers/trainer.ts";
import { readMetrics } from "../trainers/metrics.ts";
import {
  ablationMarkdown,
  type AblationRun,
  ablationSvg,
  aggregateAblation,
  finalLosses,
  finishedRunReport,
} from "../trainers/ablation.ts";
import { buildTinyParts, TINY_HEADS, tinyRun } from "../examples/asvr_tiny.ts";

/** The variants: a head, and the overrides that make it. */
const VARIANTS: Record<string, string[]> = {
  none: [`head=${JSON.stringify(TINY_HEADS.none)}`],
  pixel: [`head=${JSON.stringify(TINY_HEADS.pixel)}`],
  semantic: [`head=${JSON.stringify(TINY_HEADS.semantic)}`],
  dual: [`head=${JSON.stringify(TINY_HEADS.dual)}`],
  semantic_next: [`head=${JSON.stringify(TINY_HEADS.semantic)}`, "loss.alignment=next"],
};

const USAGE = `usage: deno task ablate [--seeds N] [--variants ${
  Object.keys(VARIANTS).join(",")
}] [--out DIR] [--set k=v ...]
  --seeds N      seeds per variant (default 3)
  --variants     which variants, comma-separated (default all)
  --out DIR      where runs and the table go (default runs/ablate)
  --set k=v      an override applied to every run (e.g. train.stages[1].epochs=1)`;

const { values } = parseArgs({
  args: Deno.args.filter((a) => a !== "--"),
  options: {
    seeds: { type: "string", default: "3" },
    variants: { type: "string", default: Object.keys(VARIANTS).join(",") },
    out: { type: "string", default: "runs/ablate" },
    set: { type: "string", multiple: true, default: [] },
    help: { type: "boolean", short: "h", default: false },
  },
});

if (values.help) {
  console.log(USAGE);
  Deno.exit(0);
}

try {
  await main();
} catch (err) {
  console.error(err instanceof NoAdapterError ? err.message : `ablate: ${(err as Error).message}`);
  Deno.exit(1);
}

async function main(): Promise<void> {
  const seeds = Number(values.seeds);
  if (!Number.isInteger(seeds) || seeds < 1) {
    throw new Error(`--seeds: a positive integer, got ${values.seeds}`);
  }
  const variants = values.variants.split(",").map((v) => v.trim()).filter((v) => v);
  for (const v of variants) {
    if (!VARIANTS[v]) {
      throw new Error(`--variants: unknown variant "${v}"; use ${Object.keys(VARIANTS).join(", ")}`);
    }
  }
  const parts = await buildTinyParts();
  const e = await Engine.create();
  console.log(`adapter: ${e.info.description}; ${variants.length} variants x ${seeds} seeds`);
  const runs: AblationRun[] = [];
  const t0 = performance.now();
  for (const variant of variants) {
    for (let seed = 1; seed <= seeds; seed++) {
      const runDir = join(values.out, `${variant}-s${seed}`);
      const cfg = applyRunOverrides(
        tinyRun(parts),
        [...VARIANTS[variant], `train.seed=${seed}`, `name=${variant}-s${seed}`, ...(values.set ?? [])],
        `ablate ${variant} seed ${seed}`,
      );
      let report = await finishedRunReport(runDir, cfg);
      if (!report) {
        console.log(
          `\n== ${variant}, seed ${seed} (${((performance.now() - t0) / 60000).toFixed(1)} min so far)`,
        );
        // An interrupted variant goes on from its last checkpoint; one that saved none starts afresh.
        const resume = (await latestCheckpoint(runDir)) !== null;
        const r = await train(e, cfg, { runDir, ...(resume ? { resume: true } : { overwrite: true }) });
        report = r.eval;
        if (!report) throw new Error(`${runDir}: the run ended without an evaluation`);
      }
      const losses = finalLosses(await readMetrics(runDir));
      const reliance = await relianceOf(e, runDir);
      runs.push({ variant, seed, summary: report.summary, losses, reliance: reliance.gap });
      console.log(
        `${variant} seed ${seed}: overall accuracy ${(100 * report.summary.overall.accuracy).toFixed(1)}%, ` +
          `image reliance ${(100 * reliance.gap).toFixed(1)}% (stage-2 text loss ${
            reliance.own.toFixed(3)
          } with ` +
          `own images, ${reliance.shuffled.toFixed(3)} with another row's)`,
      );
    }
  }
  const rows = aggregateAblation(runs);
  const md = `# Ablation on the tiny study (${seeds} seeds)\n\n${ablationMarkdown(rows)}`;
  await writeTextAtomic(join(values.out, "ablation.md"), md);
  await writeTextAtomic(
    join(values.out, "ablation.svg"),
    ablationSvg(rows, "Accuracy by visual head (mean ± std)"),
  );
  await writeTextAtomic(join(values.out, "ablation.json"), JSON.stringify({ runs, rows }, null, 1) + "\n");
  console.log(`\n${md}\nwritten: ${join(values.out, "ablation.md")}, ablation.svg, ablation.json`);
  await e.close();
}

/**
 * A finished run's image reliance on 4 micro-batches of its last stage's data (in file order), measured
 * from its latest checkpoint once and kept in `<run>/image_reliance.json`.
 */
async function relianceOf(e: Engine, runDir: string): Promise<ImageReliance> {
  const file = join(runDir, "image_reliance.json");
  try {
    return JSON.parse(await Deno.readTextFile(file));
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw new Error(`${file}: ${(err as Error).message}`);
  }
  const cfg = parseRunConfig(await readJsonFile(join(runDir, "config.json"), "a run's config"), runDir);
  cfg.data.shuffle = false; // the same rows for every run
  cfg.data.groupByLength = false;
  const model = await AsvrModel.build(e, modelConfig(cfg), { dtype: cfg.train.dtype });
  const ckDir = await latestCheckpoint(runDir);
  if (!ckDir) throw new Error(`${runDir}: no checkpoint to measure; delete the folder to redo the run`);
  await verifyCheckpoint(ckDir, { files: ["model.safetensors"] });
  const ckpt = await Checkpoint.open(join(ckDir, "model.safetensors"));
  await loadParams(model.params(), ckpt);
  ckpt.close();
  const stage = cfg.train.stages.at(-1)!;
  const tokenizer = await TextTokenizer.load(join(runDir, "tokenizer"));
  const data = await StageData.open(cfg, stage, tokenizer, model, { seed: 0 });
  const batches = [];
  for (let k = 0; k < 4 && (k + 1) * stage.batchSize <= data.rows; k++) {
    const b = await data.batch(0, k * stage.batchSize, stage.batchSize);
    if (b) batches.push(b);
  }
  data.close();
  const r = await imageReliance(model, batches);
  await model.dispose();
  await writeTextAtomic(file, JSON.stringify(r) + "\n");
  return r;
}
