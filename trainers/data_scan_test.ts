import assert from "node:assert/strict";
import { join } from "node:path";
import type { RunConfig, StageConfig } from "./config.ts";
import {
  type DataScan,
  estimateRowTokens,
  formatScan,
  formatScanErrors,
  parseImageCheck,
  scanDataFile,
  scanFindings,
  scanRunData,
} from "./data_scan.ts";

const dir = await Deno.makeTempDir({ prefix: "asvr_data_scan_" });
globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));

function stageOf(data: string, over: Partial<StageConfig> = {}): StageConfig {
  return {
    name: "s",
    data,
    imageRoot: null,
    template: "plain",
    imageMode: "resize",
    trainable: { projector: true, llm: false, head: true },
    batchSize: 2,
    gradAccum: 2,
    lr: 1e-3,
    warmupRatio: 0,
    schedule: "cosine",
    weightDecay: 0,
    epochs: 1,
    maxSteps: null,
    visualWeight: null,
    ...over,
  };
}

const ask = (text: string) => [{ from: "human", value: text }, { from: "gpt", value: "ok" }];

/** 8 image rows (img0..img5 exist, img6 and img7 do not), 3 text rows (one long), 2 malformed rows. */
const ROWS: unknown[] = [
  ...Array.from(
    { length: 8 },
    (_, i) => ({ id: `i${i}`, image: `img${i}.png`, conversations: ask("<image>\nq") }),
  ),
  { id: "t0", conversations: ask("hi") },
  { id: "t1", conversations: ask("x".repeat(400)) }, // ~ 100 tokens
  { id: 7, conversations: ask('a [ ] { } " \\ string') },
  { id: "bad0", conversations: [] },
  { conversations: ask("no id") },
];
await Deno.mkdir(join(dir, "images"));
for (let i = 0; i < 6; i++) await Deno.writeFile(join(dir, "images", `img${i}.png`), new Uint8Array(4));
const JSON_FILE = join(dir, "images", "rows.json");
await Deno.writeTextFile(JSON_FILE, JSON.stringify(ROWS, null, 2));

Deno.test("scan: counts rows, malformed rows, text rows, missing images and long rows", async () => {
  const opts = { imageRoot: join(dir, "images"), imageTokens: 64, maxLength: 66, chunkBytes: 7 };
  const s = await scanDataFile(JSON_FILE, { ...opts, checkImages: "all" });
  assert.equal(s.rows, 13);
  assert.equal(s.malformed, 2);
  assert.equal(s.imageRows, 8);
  assert.equal(s.textRows, 3);
  assert.deepEqual([s.imagesChecked, s.imagesMissing], [8, 2]);
  assert.match(s.missingExamples[0], /rows\.json row 6 \(id "i6"\): .*img6\.png is missing/);
  assert.match(s.malformedExamples[0], /rows\.json row 11 \(id "bad0"\): conversations is empty/);
  assert.match(s.malformedExamples[1], /row 12 \(no id\): field "id" is missing/);
  // 64 image positions + "q" (1 token) fit in 66; the 400-character row (~101 tokens) does not.
  assert.equal(s.overMaxLength, 1);
  // A sample of 3 images checks 3; none checks none; the counts stay.
  const some = await scanDataFile(JSON_FILE, { ...opts, checkImages: 3 });
  assert.equal(some.imagesChecked, 3);
  assert.equal(some.rows, 13);
  const none = await scanDataFile(JSON_FILE, { ...opts, checkImages: "none" });
  assert.deepEqual([none.imagesChecked, none.imagesMissing, none.imageRows], [0, 0, 8]);
});

Deno.test("scan: an image path leading outside the image root is an image the trainer cannot use", async () => {
  const file = join(dir, "images", "escape.jsonl");
  await Deno.writeTextFile(join(dir, "secret.png"), "x"); // exists, but outside images/
  const rows = [
    { id: "in", image: "img0.png", conversations: ask("<image>") },
    { id: "out", image: "../secret.png", conversations: ask("<image>") },
  ];
  await Deno.writeTextFile(file, rows.map((r) => JSON.stringify(r)).join("\n"));
  const s = await scanDataFile(file, {
    imageRoot: join(dir, "images"),
    imageTokens: 0,
    maxLength: 10,
    checkImages: "all",
  });
  assert.deepEqual([s.imagesChecked, s.imagesMissing], [2, 1]);
  assert.match(s.missingExamples[0], /row 1 \(id "out"\): \.\.\/secret\.png: the path leads through "\.\."/);
  const f = scanFindings(s, stageOf(file), { onError: "error", maxSkipShare: 0 });
  assert.match(f.errors[0], /1 of 2 images checked are missing or outside the image root/);
});

Deno.test("scan: JSONL lines that are not JSON are malformed rows; a .json element that is not JSON stops", async () => {
  const jsonl = join(dir, "rows.jsonl");
  await Deno.writeTextFile(
    jsonl,
    [JSON.stringify({ id: "a", conversations: ask("q") }), "{not json", "", '{"id": "c"}'].join("\n"),
  );
  const s = await scanDataFile(jsonl, { imageRoot: dir, imageTokens: 0, maxLength: 100 });
  assert.deepEqual([s.rows, s.malformed, s.textRows], [3, 2, 1]);
  assert.match(s.malformedExamples[0], /rows\.jsonl row 1: not valid JSON/);
  assert.match(s.malformedExamples[1], /row 3 \(id "c"\): field "conversations" is missing/);
  const broken = join(dir, "broken.json");
  await Deno.writeTextFile(broken, '[\n{"id": "a"},\n{"id": tru}\n]');
  await assert.rejects(
    scanDataFile(broken, { imageRoot: dir, imageTokens: 0, maxLength: 100 }),
    /broken\.json row 1 \(line 3\): not valid JSON .*; fix the file/,
  );
  await assert.rejects(
    scanDataFile(join(dir, "nothing.json"), { imageRoot: dir, imageTokens: 0, maxLength: 100 }),
    /nothing\.json: data set file not found/,
  );
});

Deno.test("findings: what stops the stage (onError, maxSkipShare) and what only warns", () => {
  const scan: DataScan = {
    file: "d.json",
    bytes: 1000,
    seconds: 0.5,
    rows: 100,
    malformed: 1,
    imageRows: 90,
    textRows: 9,
    imageCheck: 10,
    imagesChecked: 10,
    imagesMissing: 1,
    imageTokens: 576,
    maxLength: 2048,
    overMaxLength: 3,
    malformedExamples: ['d.json row 4 (no id): field "id" is missing'],
    missingExamples: ['d.json row 9 (id "x"): /d/x.png is missing'],
  };
  const stage = stageOf("/d/d.json");
  let f = scanFindings(scan, stage, { onError: "error", maxSkipShare: 0.01 });
  assert.equal(f.errors.length, 2);
  assert.match(
    f.errors[0],
    /1 malformed row, and the stage stops at the first \(d\.json row 4.*data\.onError: "skip"/,
  );
  assert.match(f.errors[1], /1 of 10 images checked are missing.*imageRoot \(now \/d\)/);
  // Skipping: 1 malformed + about 9 missing (1 in a sample of 10, of 90) is over 5%: likely, not certain.
  f = scanFindings(scan, stage, { onError: "skip", maxSkipShare: 0.05 });
  assert.deepEqual(f.errors, []);
  assert.match(f.warnings[0], /about 10 of 100 rows left out .*over data\.maxSkipShare 5%.*will likely stop/);
  // Counted exactly (every image checked): an error.
  f = scanFindings({ ...scan, imageCheck: "all", imagesChecked: 90 }, stage, {
    onError: "skip",
    maxSkipShare: 0,
  });
  assert.match(
    f.errors[0],
    /^2 of 100 rows left out \(1 malformed, 1 with a missing image: 2%\).*the stage stops/,
  );
  f = scanFindings({ ...scan, imagesMissing: 0 }, stage, { onError: "skip", maxSkipShare: 0.05 });
  assert.deepEqual(f, { errors: [], warnings: [] });
  f = scanFindings({ ...scan, malformed: 100 }, stage, { onError: "skip", maxSkipShare: 1 });
  assert.match(f.errors[0], /d\.json: no usable rows \(100 rows, 100 malformed; first: d\.json row 4/);
  // 24 rows, 1 x 32 rows per step: one step, at lr 0 (warmup).
  const small = stageOf("/d/d.json", { batchSize: 1, gradAccum: 32, warmupRatio: 0.03 });
  f = scanFindings({ ...scan, rows: 24, malformed: 0, imagesMissing: 0 }, small, {
    onError: "error",
    maxSkipShare: 0,
  });
  assert.equal(f.warnings.length, 2);
  const lines = formatScan({ ...scan, rows: 24, malformed: 0, imagesMissing: 0 }, small, f).join("\n");
  assert.match(lines, /24 rows: 90 with an image/);
  assert.match(
    lines,
    /images: 10 of 90 checked \(a random sample; --check-images all checks every one\), 0 missing/,
  );
  assert.match(
    lines,
    /over data\.maxLength 2048 \(estimated: characters \/ 4 \+ 576 image positions\): 3 rows/,
  );
  assert.match(
    lines,
    /optimizer steps: 1 \(24 rows \/ 1 x 32 rows per step = 1 per epoch, x 1 epoch\), of which 1/,
  );
  assert.match(lines, /warning: an epoch \(24 rows\) is shorter than one optimizer step/);
  assert.match(lines, /warning: the stage's one step is a warmup step/);
  assert.match(
    formatScanErrors(["stage s: x"]),
    /1 problem that would stop the run .*\n {2}stage s: x\n\(--no-scan/,
  );
});

Deno.test("scanRunData: each file scanned once, a summary per stage, errors named by stage", async () => {
  const lines: string[] = [];
  const cfg = {
    data: { maxLength: 2048, onError: "error", maxSkipShare: 0.01 },
    train: { seed: 0, stages: [stageOf(JSON_FILE, { name: "one" }), stageOf(JSON_FILE, { name: "two" })] },
  } as unknown as RunConfig;
  const r = await scanRunData(cfg, { imageTokens: 4, checkImages: "all", print: (l) => lines.push(l) });
  assert.equal(r.stages[0].scan, r.stages[1].scan);
  assert.match(lines[0], /^data of stage 1\/2 one: .*rows\.json: .* scanned in/);
  assert.ok(lines.some((l) => /^data of stage 2\/2 two: .*rows\.json: scanned for an earlier stage/.test(l)));
  assert.equal(r.errors.length, 4);
  assert.match(r.errors[0], /^stage one: 2 malformed rows/);
  assert.match(r.errors[3], /^stage two: 2 of 8 images checked are missing/);
});

Deno.test("--check-images: all, none or a sample size; estimates count characters / 4 and the image", () => {
  assert.equal(parseImageCheck("all"), "all");
  assert.equal(parseImageCheck("none"), "none");
  assert.equal(parseImageCheck("250"), 250);
  assert.throws(() => parseImageCheck("some"), /--check-images: "all", "none" or a number .*got "some"/);
  assert.throws(() => parseImageCheck("0"), /got "0"/);
  const row = {
    file: "f",
    index: 0,
    id: "a",
    image: "x.png",
    conversations: [{ from: "human" as const, value: "<image>\n1234567" }, {
      from: "gpt" as const,
      value: "1",
    }],
  };
  assert.equal(estimateRowTokens(row, 576), 576 + 3); // 9 characters without the marker
});
