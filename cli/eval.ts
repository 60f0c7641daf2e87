/**
 * `deno task eval <run or checkpoint> <questions.json> [--image-root DIR] [--out FILE]
 * [--max-new-tokens N] [--template plain|vicuna_v1] [--import MODULE ...]`
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
import { TextTokenizer } from "../tokenizers/text_tokenizer.ts";
import { writeTextAtomic } from "../io/safetensors.ts";
import { loadQuestions } from "../eval/questions.ts";
import { formatReport } from "../eval/report.ts";
import { encoderInput } from "../trainers/stage_data.ts";
import { evaluate } from "../trainers/evaluate.ts";
import { findRun, loadRunModel } from "../trainers/run_model.ts";
import { TEMPLATE_NAMES, type TemplateName } from "../data/templates.ts";

const USAGE = `usage: deno task eval <run folder or checkpoint folder> <questions.json> [options]
  --image-root DIR      folder of the questions' images (default: the questions file's folder)
  --out FILE            results JSON (default: <run>/eval-<questions name>.json)
  --max-new-tokens N    longest answer in tokens (default: the run's train.evalMaxNewTokens)
  --template T          plain or vicuna_v1 (default: the last stage's)
  --import MODULE       a module registering the run's kinds (repeatable); the run's own are
                        imported from its imports.json`;

const { values, positionals } = parseArgs({
  args: Deno.args.filter((a) => a !== "--"),
  allowPositionals: true,
  options: {
    "image-root": { type: "string" },
    out: { type: "string" },
    "max-new-tokens": { type: "string" },
    template: { type: "string" },
    import: { type: "string", multiple: true, default: [] },
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
  const run = await findRun(target, { imports: values.import });
  const { runDir, checkpoint: ckDir, cfg } = run;
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
  const tokenizer = await TextTokenizer.load(run.tokenizerDir);
  const model = await loadRunModel(e, run, console.log);
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
  await e.close();
}
