import assert from "node:assert/strict";
import { type ImageJob, ImagePrefetcher, type ImageResult, loadImageJob } from "./prefetch.ts";
import { parseImagePreprocessConfig } from "./preprocess.ts";

const dir = new URL("./testdata/", import.meta.url).pathname;
const cfg = parseImagePreprocessConfig({ size: 6, mode: "pad" }, "image");
const GOOD = [
  "rgb_4x3.png",
  "photo_32x24.jpg",
  "rgb_24x8.webp",
  "gray_16x8.jpg",
  "cmyk_24x8.jpg",
  "rgba_4x3.png",
];

async function takeAll(pre: ImagePrefetcher): Promise<ImageResult[]> {
  const out: ImageResult[] = [];
  for await (const r of pre) out.push(r);
  return out;
}

Deno.test("results come back in job order and equal loading inline, with 1 and 3 workers", async () => {
  const jobs: ImageJob[] = [...GOOD, ...GOOD, ...GOOD].map((name) => ({ path: dir + name, cfg }));
  const inline = await Promise.all(jobs.map(loadImageJob));
  for (const workers of [1, 3]) {
    const pre = new ImagePrefetcher(jobs, { lookahead: 4, workers });
    try {
      const got = await takeAll(pre);
      assert.deepEqual(got.map((r) => r.path), jobs.map((j) => j.path), `${workers} workers: order`);
      assert.deepEqual(got, inline, `${workers} workers: results`);
      for (const r of got) assert.ok(r.ok && r.pixels.length === 3 * 6 * 6);
    } finally {
      pre.close();
    }
  }
});

Deno.test("a bad image fails its own job only, naming the path; the worker goes on", async () => {
  const tmp = await Deno.makeTempDir();
  const pre = new ImagePrefetcher([], { lookahead: 2 });
  try {
    const jpg = await Deno.readFile(dir + "photo_32x24.jpg");
    await Deno.writeFile(`${tmp}/cut.jpg`, jpg.slice(0, 300));
    await Deno.writeTextFile(`${tmp}/page.jpg`, "<html>");
    const paths = [
      dir + "rgb_4x3.png",
      `${tmp}/missing.jpg`,
      dir + "photo_32x24.jpg",
      `${tmp}/cut.jpg`,
      `${tmp}/page.jpg`,
      dir + "rgb_4x3.webp",
    ];
    pre.push(...paths.map((path) => ({ path, cfg })));
    const got = await takeAll(pre);
    assert.deepEqual(got.map((r) => r.path), paths);
    assert.deepEqual(got.map((r) => r.ok), [true, false, true, false, false, true]);
    const errors = got.flatMap((r) => (r.ok ? [] : [r.error]));
    assert.match(errors[0], /missing\.jpg: image file not found/);
    assert.match(errors[1], /cut\.jpg: corrupt or truncated JPEG/);
    assert.match(errors[2], /page\.jpg: not a JPEG, PNG or WebP file \(starts with 3c 68 74 6d\)/);
    const first = got[0], last = got[5];
    assert.ok(first.ok && last.ok);
    assert.deepEqual(first.pixels, last.pixels); // the PNG and the lossless WebP hold the same pixels
    assert.deepEqual([first.width, first.height], [4, 3]);
  } finally {
    pre.close();
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("the look-ahead bounds how many jobs are handed to the workers", async () => {
  const jobs = Array.from({ length: 10 }, () => ({ path: dir + "rgb_4x3.png", cfg }));
  const pre = new ImagePrefetcher(jobs.slice(0, 7), { lookahead: 3 });
  try {
    assert.equal(pre.dispatched, 3);
    assert.equal(pre.pending, 7);
    const a = await pre.next();
    assert.ok(a.ok);
    assert.equal(pre.dispatched, 4);
    await Promise.all([pre.next(), pre.next()]);
    assert.equal(pre.dispatched, 6);
    pre.push(...jobs.slice(7));
    assert.equal(pre.dispatched, 6);
    assert.equal(pre.pending, 7);
    assert.equal((await takeAll(pre)).length, 7);
    assert.equal(pre.dispatched, 10);
    await assert.rejects(pre.next(), /no job pending/);
  } finally {
    pre.close();
  }
});

Deno.test("close() terminates: waiting and later calls reject", async () => {
  const pre = new ImagePrefetcher([{ path: dir + "photo_32x24.jpg", cfg }, {
    path: dir + "rgb_4x3.png",
    cfg,
  }]);
  const waiting = pre.next();
  pre.close();
  await assert.rejects(waiting, /closed/);
  await assert.rejects(pre.next(), /closed/);
  assert.throws(() => pre.push({ path: dir + "rgb_4x3.png", cfg }), /closed/);
  pre.close();
});

Deno.test("options are checked", () => {
  assert.throws(() => new ImagePrefetcher([], { lookahead: 0 }), /options\.lookahead is 0/);
  assert.throws(() => new ImagePrefetcher([], { workers: 1.5 }), /options\.workers is 1\.5/);
});
