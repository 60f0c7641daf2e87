import assert from "node:assert/strict";
import { join } from "node:path";
import sharp from "sharp";
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

/** A stage of three image rows: a good one, one whose path leads up out of the root, one linked out. */
async function pathRows(dir: string, data: Record<string, unknown>): Promise<StageData> {
  const S = TINY.image;
  await Deno.mkdir(join(dir, "images"));
  const png = await sharp(new Uint8Array(S * S * 3).fill(90), { raw: { width: S, height: S, channels: 3 } })
    .png().toBuffer();
  await Deno.writeFile(join(dir, "images", "a.png"), png);
  await Deno.writeFile(join(dir, "elsewhere.png"), png);
  await Deno.symlink(join(dir, "elsewhere.png"), join(dir, "images", "linked.png"));
  const row = (id: string, image: string) => ({
    id,
    image,
    conversations: [{ from: "human", value: "<image>\nWhat is it?" }, { from: "gpt", value: "grey" }],
  });
  const file = join(dir, "images", "rows.json");
  await Deno.writeTextFile(
    file,
    JSON.stringify([row("good", "a.png"), row("up", "../elsewhere.png"), row("link", "linked.png")]),
  );
  const cfg = parseRunConfig({
    ...tinyConfig("unused.safetensors"),
    name: "t",
    data: { tokenizer: await llama2TokenizerDir(), maxLength: 64, shuffle: false, prefetch: 1, ...data },
    train: { seed: 1, stages: [{ data: file, template: "vicuna_v1", batchSize: 1 }] },
  }, "test");
  const tokenizer = await TextTokenizer.load(cfg.data.tokenizer!);
  return StageData.open(cfg, cfg.train.stages[0], tokenizer, model, { seed: cfg.train.seed });
}

Deno.test("StageData: an image path outside the image root is a bad row naming the row and the fix", async () => {
  const dir = await Deno.realPath(await Deno.makeTempDir());
  try {
    let data = await pathRows(dir, {});
    try {
      assert.ok((await data.batch(0, 0, 1))?.pixels, "the image inside the root loads");
      await assert.rejects(
        () => data.batch(0, 1, 1),
        /rows\.json row 1 \(id "up"\): \.\.\/elsewhere\.png: the path leads through "\.\." to .*elsewhere\.png, outside the image root .*images; give image paths relative to the image root.*data\.onError: "skip"/,
      );
      await assert.rejects(
        () => data.batch(0, 2, 1),
        /rows\.json row 2 \(id "link"\): linked\.png: a symbolic link leads to .*elsewhere\.png, outside the image root .*; set data\.followSymlinks: true to follow links out of the image root/,
      );
    } finally {
      data.close();
    }
    await Deno.remove(join(dir, "images"), { recursive: true });
    data = await pathRows(dir, { onError: "skip", maxSkipShare: 1 });
    try {
      for (let i = 0; i < 3; i++) await data.batch(0, i, 1);
      assert.equal(data.ledger.counts().rows_skipped_path, 2);
      assert.match(
        data.ledger.summary(),
        /^2 of 3 rows skipped \(67%, limit 100%\): 2 path; first: .*row 1 \(id "up"\)/,
      );
    } finally {
      data.close();
    }
    await Deno.remove(join(dir, "images"), { recursive: true });
    data = await pathRows(dir, { onError: "skip", maxSkipShare: 1, followSymlinks: true });
    try {
      assert.ok((await data.batch(0, 2, 1))?.pixels, "data.followSymlinks: the linked image loads");
      assert.equal(await data.batch(0, 1, 1), null, ".. is refused still");
      assert.equal(data.ledger.counts().rows_skipped_path, 1);
    } finally {
      data.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
