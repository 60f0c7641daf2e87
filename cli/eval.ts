/**
 * `deno task eval <run or checkpoint> <questions.json> [--image-root DIR] [--out FILE]
 * [--max-new-tokens N] [--template plain|vicuna_v1]`
 *
 * Loads a run's model (its `config.json` and the latest checkpoint, or the checkpoint folder given),
 * answers every question greedily with a KV cache, scores the answers (exact match after VQA-style
 * normalization, multiple choice, POPE-style yes/no precision, recall and F1), writes the results as
 * JSON and prints a table.
 * @module
 */

import { parseArgs } from "node:util";
import { basename, dirname, join } from "node:path";
import { Engine } from "../core/engine.ts";
import { NoAdapterError } from "../core/device.ts";
import { AsvrModel } from "../models/asvr_model.ts";
import { TextTokenizer } from "../tokenizers/text_tokenizer.ts";
import { Checkpoint, writeTextAtomic } from "../io/safetensors.ts";
import { loadParams } from "../io/params.ts";
import { readJsonFile } from "../io/json.ts";
import { loadQuestions } from "../eval/questions.ts";
import { formatReport } from "../eval/report.ts";
import { modelConfig, parseRunConfig } from "../trainers/config.ts";
import { latestCheckpoint } from "../trainers/checkpoint.ts";
import { encoderInput } from "../trainers/stage_data.ts";
import { evaluate } from "../trainers/evaluate.ts";
import { TEMPLATE_NAMES, type TemplateName } from "../data/templates.ts";
import { pathExists } from "../io/path_exists.ts";

const USAGE = `usage: deno task eval <run folder or checkpoint folder> <questions.json> [options]
  --image-root DIR      folder of the questions' images (default: the questions file's folder)
  --out FILE            results JSON (default: <run>/eval-<questions name>.json)
  --max-new-tokens N    longest answer in tokens (default: the run's train.evalMaxNewTokens)
  --template T          plain or vicuna_v1 (default: the last stage's)`;

const { values, positionals } = parseArgs({
  args: Deno.args.filter((a) => a !== "--"),
  allowPositionals: true,
  options: {
    "image-root": { type: "string" },
    out: { type: "string" },
    "max-new-tokens": { type: "string" },
    template: { type: "string" },
    help: { type: "boolean", short: "h", default: false },
  },
});

if (values.help || positionals.length !== 2) {
  console.log(USAGE);
  Deno.exit(values.help ? 0 : 2);
}

try {
  await main(positionals[0], positionals[1]);
} catch (err) {
  console.error(err instanceof NoAdapterError ? err.message : `eval: ${(err as Error).message}`);
  Deno.exit(1);
}

async function main(target: string, questionsFile: string): Promise<void> {
  // A checkpoint folder (runs/x/checkpoints/step-00000120) or a run folder (its latest checkpoint).
  const isCheckpoint = basename(dirname(target)) === "checkpoints";
  const runDir = isCheckpoint ? dirname(dirname(target)) : target;
  const ckDir = isCheckpoint ? target : await latestCheckpoint(runDir);
  if (!ckDir) throw new Error(`${runDir}: no complete checkpoint under ${runDir}/checkpoints`);
  const cfg = parseRunConfig(
    await readJsonFile(join(runDir, "config.json"), "a run's config"),
    join(runDir, "config.json"),
  );
  const last = cfg.train.stages.at(-1)!;
  const template = (values.template ?? last.template) as TemplateName;
  if (!TEMPLATE_NAMES.includes(template)) {
    throw new Error(`--template: use one of ${TEMPLATE_NAMES.join(", ")}`);
  }
  const maxNewTokens = values["max-new-tokens"]
    ? Number(values["max-new-tokens"])
    : cfg.train.evalMaxNewTokens;
  if (!Number.isInteger(maxNewTokens) || maxNewTokens < 1) {
    throw new Error("--max-new-tokens: a positive integer");
  }
  const questions = await loadQuestions(questionsFile);

  const e = await Engine.create();
  // The run's own copy of the tokenizer, else where the config found it.
  const ownTokenizer = join(runDir, "tokenizer");
  const tokenizer = await TextTokenizer.load(
    await pathExists(join(ownTokenizer, "tokenizer.json"))
      ? ownTokenizer
      : cfg.data.tokenizer ?? cfg.llm.path!,
  );
  const model = await AsvrModel.build(e, modelConfig(cfg), { dtype: cfg.train.dtype, seed: cfg.train.seed });
  const ckpt = await Checkpoint.open(join(ckDir, "model.safetensors"));
  try {
    await loadParams(model.params(), ckpt);
  } finally {
    ckpt.close();
  }
  console.log(`model: ${runDir} at ${basename(ckDir)}; ${questions.length} questions from ${questionsFile}`);
  const { image, imageTokens } = encoderInput(cfg, model.encoder, last.imageMode, "eval");
  const t0 = performance.now();
  const report = await evaluate(model, tokenizer, questions, {
    template,
    imageRoot: values["image-root"] ?? dirname(questionsFile),
    image,
    imageTokens,
    maxNewTokens,
    onAnswer: (i, n) => {
      if ((i + 1) % 10 === 0 || i + 1 === n) {
        const s = (performance.now() - t0) / 1000;
        console.log(`answered ${i + 1}/${n} (${((i + 1) / s).toFixed(1)} questions/s)`);
      }
    },
  });
  report.meta.checkpoint = ckDir;
  report.meta.questionsFile = questionsFile;
  const out = values.out ?? join(runDir, `eval-${basename(questionsFile).replace(/\.json$/, "")}.json`);
  await writeTextAtomic(out, JSON.stringify(report, null, 1) + "\n");
  console.log(formatReport(report.summary));
  console.log(`results: ${out}`);
  await model.dispose();
  e.destroy();
}
