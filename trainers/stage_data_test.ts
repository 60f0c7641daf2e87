import assert from "node:assert/strict";
import { join } from "node:path";
import { rng } from "../core/random.ts";
import { TINY, tinyConfig } from "../models/testing.ts";
import type { AsvrModel } from "../models/asvr_model.ts";
import { TextTokenizer } from "../tokenizers/text_tokenizer.ts";
import { llama2TokenizerDir } from "../tests/fixtures/tokenizers/fixture_dirs.ts";
import { parseRunConfig } from "./config.ts";
import { StageData } from "./stage_data.ts";

/** What StageData reads of the model: the encoder's config and patch count (no GPU needed). */
const model = {
  encoder: { cfg: { arch: "siglip", imageSize: TINY.image }, numPatches: TINY.patches },
} as unknown as AsvrModel;

/** 64 text-only rows whose answers have 1 to 64 words, in a seeded order; batches of 4. */
async function open(dir: string, groupByLength: boolean): Promise<StageData> {
  const words = Array.from({ length: 64 }, (_, i) => i + 1);
  const r = rng(9);
  words.sort(() => r() - 0.5);
  const rows = words.map((n, i) => ({
    id: `r${i}`,
    conversations: [{ from: "human", value: "Count." }, { from: "gpt", value: "one ".repeat(n).trim() }],
  }));
  const file = join(dir, "rows.json");
  await Deno.writeTextFile(file, JSON.stringify(rows));
  const cfg = parseRunConfig({
    ...tinyConfig("unused.safetensors"),
    name: "t",
    data: { tokenizer: await llama2TokenizerDir(), maxLength: 256, groupByLength },
    train: { seed: 1, stages: [{ data: file, template: "vicuna_v1", batchSize: 4 }] },
  }, "test");
  const tokenizer = await TextTokenizer.load(cfg.data.tokenizer!);
  return StageData.open(cfg, cfg.train.stages[0], tokenizer, model, { seed: cfg.train.seed });
}

/** Each batch of epoch 0 as its rows' counts of supervised tokens (distinct per row: 1 to 64 words). */
async function epoch(data: StageData): Promise<number[][]> {
  const batches: number[][] = [];
  for (let s = 0; s + 4 <= data.rows; s += 4) {
    const b = (await data.batch(0, s, 4))!;
    const T = b.inputIds.length / 4;
    batches.push([0, 1, 2, 3].map((i) => b.labels.subarray(i * T, (i + 1) * T).filter((l) => l >= 0).length));
  }
  data.close();
  return batches;
}

/** Padding positions: the rows differ only in their answers, so a row pads by its batch's longest - its own. */
const padding = (batches: number[][]) =>
  batches.reduce((sum, b) => sum + b.reduce((s, n) => s + Math.max(...b) - n, 0), 0);

Deno.test("StageData: data.groupByLength pads batches far less, over the same rows", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const plain = await epoch(await open(dir, false));
    const grouped = await epoch(await open(dir, true));
    const sorted = (b: number[][]) => b.flat().sort((x, y) => x - y);
    assert.equal(new Set(plain.flat()).size, 64);
    assert.deepEqual(sorted(grouped), sorted(plain));
    // One group of 16 batches: each batch holds 4 neighbouring lengths.
    assert.ok(padding(grouped) < 0.25 * padding(plain), `${padding(grouped)} vs ${padding(plain)}`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
