/**
 * A tiny two-stage run for the trainer's tests, written into a folder: 8 generated 28 px PNG images
 * (a coloured square on grey), a `plain` caption file for stage 1 and a `vicuna_v1` question file for
 * stage 2 (with one text-only row), 16 evaluation questions (open, yes/no, multiple choice) on the same
 * images, the real Llama-2 tokenizer, random codebooks, and a run config on
 * the tiny random-init model of models/testing.ts (with Llama-2's 32000-token vocabulary).
 * @module
 */

import { join } from "node:path";
import sharp from "sharp";
import { TINY, tinyConfig, writeTinyCodebooks } from "../models/testing.ts";
import type { RunConfigInput, StageConfigInput } from "../trainers/config.ts";
import { llama2TokenizerDir } from "./fixtures/tokenizers/fixture_dirs.ts";
import { writeLlama2Tokenizer } from "./make_llama2_tokenizer.ts";

const COLORS: [string, [number, number, number]][] = [
  ["red", [220, 30, 30]],
  ["green", [30, 200, 40]],
  ["blue", [30, 40, 220]],
  ["yellow", [230, 220, 30]],
];

/** Options of {@linkcode writeTinyRun}. */
export interface TinyRunOptions {
  /** Optimizer steps of each stage (default 3). */
  steps?: number;
  /** Overrides of the stages. */
  stage?: Partial<StageConfigInput>;
}

/** Writes the run's files into `dir` and returns its config. */
export async function writeTinyRun(dir: string, opts: TinyRunOptions = {}): Promise<RunConfigInput> {
  const S = TINY.image;
  await Deno.mkdir(join(dir, "images"), { recursive: true });
  const captions = [], questions = [];
  for (let i = 0; i < 8; i++) {
    const [name, rgb] = COLORS[i % COLORS.length];
    const px = new Uint8Array(S * S * 3).fill(128);
    const x0 = (i * 3) % 12, y0 = (i * 5) % 12;
    for (let y = y0; y < y0 + 14; y++) for (let x = x0; x < x0 + 14; x++) px.set(rgb, (y * S + x) * 3);
    const file = `img${i}.png`;
    await sharp(px, { raw: { width: S, height: S, channels: 3 } }).png().toFile(join(dir, "images", file));
    captions.push({
      id: `cap${i}`,
      image: file,
      conversations: [{ from: "human", value: "<image>" }, { from: "gpt", value: `a ${name} square` }],
    });
    questions.push({
      id: `qa${i}`,
      image: file,
      conversations: [
        { from: "human", value: "<image>\nWhat color is the square?" },
        { from: "gpt", value: name },
      ],
    });
  }
  questions.push({
    id: "text0",
    conversations: [{ from: "human", value: "Say hi." }, { from: "gpt", value: "hi" }],
  });
  const evalQs = [0, 1, 2, 3].flatMap((i) => {
    const [name] = COLORS[i];
    const other = COLORS[(i + 1) % COLORS.length][0];
    return [
      {
        id: `open${i}`,
        image: `img${i}.png`,
        question: "What color is the square?",
        answer: name,
        type: "open",
      },
      {
        id: `yes${i}`,
        image: `img${i}.png`,
        question: `Is the square ${name}?`,
        answer: "yes",
        type: "yesno",
      },
      {
        id: `no${i}`,
        image: `img${i}.png`,
        question: `Is the square ${other}?`,
        answer: "no",
        type: "yesno",
      },
      {
        id: `mc${i}`,
        image: `img${i}.png`,
        question: "What color is the square?",
        choices: [other, name],
        answer: "B",
        type: "choice",
        category: "color",
      },
    ];
  });
  await Deno.writeTextFile(join(dir, "images", "eval.json"), JSON.stringify(evalQs));
  await Deno.writeTextFile(join(dir, "images", "captions.json"), JSON.stringify(captions));
  await Deno.writeTextFile(join(dir, "images", "questions.json"), JSON.stringify(questions));
  const books = await writeTinyCodebooks(dir);
  const model = tinyConfig(books);
  const steps = opts.steps ?? 3;
  return {
    ...model,
    llm: { ...model.llm, config: { ...model.llm.config!, vocabSize: 32000 } },
    name: "tiny",
    data: { tokenizer: await llama2TokenizerDir(), maxLength: 128, prefetch: 1 },
    train: {
      seed: 3,
      out: join(dir, "runs"),
      keepLast: 2,
      evalData: join(dir, "images", "eval.json"),
      evalMaxNewTokens: 4,
      stages: [
        {
          name: "pretrain",
          data: join(dir, "images", "captions.json"),
          template: "plain",
          batchSize: 2,
          lr: 3e-3,
          maxSteps: steps,
          ...opts.stage,
        },
        {
          name: "finetune",
          data: join(dir, "images", "questions.json"),
          template: "vicuna_v1",
          imageMode: "pad",
          trainable: { projector: true, head: true, llm: true },
          batchSize: 2,
          lr: 1e-3,
          maxSteps: steps,
          ...opts.stage,
        },
      ],
    },
  };
}

/**
 * Writes the tiny run into `dir` as a run file for the CLI (`deno task train <dir>/run.ts`): the files
 * of {@linkcode writeTinyRun}, the Llama-2 tokenizer in `<dir>/tokenizer` (the fixture's shared
 * folder lives only as long as this process) and `<dir>/run.ts`, whose default export is the config,
 * without the final evaluation (the CLI's tests train only). Returns the run file's path and its config.
 */
export async function writeTinyRunFile(
  dir: string,
  opts: TinyRunOptions = {},
): Promise<{ file: string; config: RunConfigInput }> {
  const config = await writeTinyRun(dir, opts);
  const tokenizer = await writeLlama2Tokenizer(join(dir, "tokenizer"));
  config.data = { ...config.data, tokenizer };
  config.train = { ...config.train!, evalData: null };
  const file = join(dir, "run.ts");
  await Deno.writeTextFile(file, `export default ${JSON.stringify(config, null, 2)};\n`);
  return { file, config };
}
