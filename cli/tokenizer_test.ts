import assert from "node:assert/strict";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import sharp from "sharp";
import type { Engine } from "../core/engine.ts";
import { randn } from "../core/random.ts";
import { assertClose, gpuTest } from "../core/testing.ts";
import { readImage } from "../data/image.ts";
import { parseImagePreprocessConfig, preprocess, SIGLIP_NORM } from "../data/preprocess.ts";
import { VisionEncoder } from "../encoders/vit.ts";
import { writeSafetensors } from "../io/safetensors.ts";
import { Codebooks } from "../tokenizers/codebooks.ts";
import { fitResidualKMeans } from "../tokenizers/fit_codebooks.ts";

const CLI = new URL("./tokenizer.ts", import.meta.url).pathname;

/** Runs `deno run -A cli/tokenizer.ts ...args`; returns the exit code and the output. */
async function tokenizer(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", CLI, ...args],
    stdout: "piped",
    stderr: "piped",
  })
    .output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

Deno.test("deno task tokenizer fit: fits codebooks on a features file, one line per iteration; info reads them", async () => {
  const dir = await Deno.makeTempDir();
  try {
    // Features [2, 40, 6] (leading dims are flattened to 80 rows) with provenance metadata.
    const feats = `${dir}/feats.safetensors`;
    await writeSafetensors(
      feats,
      [{ name: "hidden", dtype: "F16", shape: [2, 40, 6], data: randn(480, 3) }],
      {
        layer: "26",
        encoder: "tiny-siglip",
      },
    );
    const out = `${dir}/sub/cb.safetensors`;
    const r = await tokenizer(
      "fit",
      "--features",
      feats,
      "--tensor",
      "hidden",
      "--depths",
      "2",
      "--codebook-size",
      "8",
      "--iters",
      "3",
      "--seed",
      "1",
      "--out",
      out,
    );
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.split("\n").filter((l) => l.startsWith("depth "));
    assert.equal(lines.length, 2 * (3 + 1), r.stdout);
    assert.match(lines[0], /^depth 1\/2 +iter +1\/3 +mse \d\.\d+e[-+]\d+ +dead \d+ +rows 80 /);
    assert.match(lines[3], /^depth 1\/2 +final +mse .* dead 0 /);
    const cb = await Codebooks.load(out);
    assert.deepEqual(cb.info, {
      depths: 2,
      codebookSize: 8,
      dim: 6,
      shared: false,
      layer: 26,
      encoder: "tiny-siglip",
    });
    assert.ok(r.stdout.includes(`identity ${cb.identity()}`));
    const i = await tokenizer("info", out);
    assert.equal(i.code, 0, i.stderr);
    assert.match(i.stdout, /codebooks \[2,8,6\] \(one per 2 depths\)/);
    assert.ok(i.stdout.includes(cb.identity()));
    assert.ok(i.stdout.includes("layer: 26  encoder: tiny-siglip"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("deno task tokenizer: a missing or bad flag names the flag and the fix (exit 2)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const feats = `${dir}/f.safetensors`;
    await writeSafetensors(feats, [{ name: "features", dtype: "F32", shape: [10, 4], data: randn(40, 1) }]);
    const cases: [string[], RegExp][] = [
      [["fit", "--depths", "2", "--codebook-size", "4", "--out", "x"], /--features is required/],
      [["fit", "--features", feats, "--codebook-size", "4", "--out", "x"], /--depths is required/],
      [
        ["fit", "--features", feats, "--depths", "two", "--codebook-size", "4", "--out", "x"],
        /--depths must be an integer >= 1, got "two"/,
      ],
      [
        ["fit", "--features", feats, "--depths", "2", "--codebook-size", "70000", "--out", "x"],
        /--codebook-size 70000 is over 65536/,
      ],
      [["fit", "--features", feats, "--depths", "2", "--codebook-size", "4"], /--out is required/],
      [
        ["fit", "--features", feats, "--tensor", "h", "--depths", "2", "--codebook-size", "4", "--out", "x"],
        /no tensor "h" \(it holds: features\); choose one with --tensor/,
      ],
      [
        ["fit", "--features", feats, "--depths", "2", "--codebook-size", "4", "--out", "x", "--bogus"],
        /bogus/,
      ],
      [["frobnicate"], /unknown command "frobnicate"; use fit or info/],
    ];
    for (const [args, re] of cases) {
      const r = await tokenizer(...args);
      assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
      assert.match(r.stderr, re);
      assert.match(r.stderr, /--help/);
    }
    const help = await tokenizer("--help");
    assert.equal(help.code, 0);
    assert.match(help.stdout, /deno task tokenizer fit <run\.ts> \[flags\] +on the run's own images/);
    assert.match(help.stdout, /--tokenizer <name>/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/**
 * A complete tiny run in `dir`: a random 28 px SigLIP (7 px patches, width 32, 2 layers) saved as an HF
 * folder, 5 PNG images behind 7 caption rows (one image used twice, one text-only row), and a run file
 * with two rq tokenizers, "semantic" (layer 1 of that encoder, 2 x 4 codes) and "pixel" (patch pixels,
 * 1 x 4 codes), whose codebooks do not exist yet.
 */
async function writeRun(e: Engine, dir: string) {
  const encDir = join(dir, "siglip");
  const enc = VisionEncoder.create(e, {
    arch: "siglip",
    hiddenSize: 32,
    intermediateSize: 48,
    numLayers: 2,
    numHeads: 2,
    imageSize: 28,
    patchSize: 7,
    layerNormEps: 1e-6,
    act: "gelu_tanh",
  }, { seed: 9 });
  await enc.save(encDir);
  await Deno.mkdir(join(dir, "data", "img"), { recursive: true });
  const rows: unknown[] = [];
  const files: string[] = [];
  for (let i = 0; i < 5; i++) {
    const w = 24 + 6 * i, h = 40 - 3 * i;
    const px = Uint8Array.from(randn(w * h * 3, 40 + i), (v) => Math.max(0, Math.min(255, 128 + 60 * v)));
    const file = `img/${i}.png`;
    await sharp(px, { raw: { width: w, height: h, channels: 3 } }).png().toFile(join(dir, "data", file));
    files.push(join(dir, "data", file));
    rows.push({
      id: `r${i}`,
      image: file,
      conversations: [{ from: "human", value: "<image>" }, { from: "gpt", value: "a" }],
    });
  }
  rows.push({
    id: "again",
    image: "img/2.png",
    conversations: [{ from: "human", value: "<image>" }, { from: "gpt", value: "b" }],
  });
  rows.push({ id: "text", conversations: [{ from: "human", value: "hi" }, { from: "gpt", value: "hi" }] });
  const data = join(dir, "data", "captions.json");
  await Deno.writeTextFile(data, JSON.stringify(rows));
  const semantic = join(dir, "cb", "semantic.safetensors"), pixel = join(dir, "cb", "pixel.safetensors");
  const cfg = {
    name: "fit_test",
    encoder: { kind: "siglip", path: encDir, layer: -2 },
    projector: { kind: "mlp2x_gelu" },
    llm: {
      kind: "llama",
      config: {
        vocabSize: 64,
        hiddenSize: 32,
        intermediateSize: 64,
        numLayers: 1,
        numHeads: 2,
        numKvHeads: 1,
      },
    },
    visualTokenizers: [
      { kind: "rq", name: "semantic", layer: 1, depths: 2, codebookSize: 4, codebooks: semantic },
      { kind: "rq", name: "pixel", layer: "pixels", depths: 1, codebookSize: 4, codebooks: pixel },
    ],
    head: { kind: "asvr_depth", target: "semantic", width: 32, layers: 1, heads: 2, checkpointLayers: false },
    train: { stages: [{ data }] },
  };
  const run = join(dir, "run.ts");
  const config = pathToFileURL(new URL("../trainers/config.ts", import.meta.url).pathname).href;
  await Deno.writeTextFile(
    run,
    `import { defineRun } from ${JSON.stringify(config)};\n` +
      `export default defineRun(${JSON.stringify(cfg)} as Parameters<typeof defineRun>[0]);\n`,
  );
  return { enc, encDir, run, semantic, pixel, files };
}

gpuTest(
  "deno task tokenizer fit <run.ts>: fits a run's tokenizers on its own images, as the trainer sees them",
  async (e) => {
    const dir = await Deno.makeTempDir({ prefix: "asvr_tokenizer_fit_run_" });
    try {
      const { enc, encDir, run, semantic, pixel, files } = await writeRun(e, dir);
      // Both codebooks are missing: the choice is the user's.
      const both = await tokenizer("fit", run);
      assert.equal(both.code, 2, both.stderr);
      assert.match(both.stderr, /several rq tokenizers are missing \(semantic, pixel\); pass --tokenizer/);

      const r = await tokenizer("fit", run, "--tokenizer", "semantic", "--iters", "2", "--batch", "2");
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /7 rows, 5 distinct images, 1 text-only row/);
      assert.match(r.stdout, /rows of width 32; fitting 2 x 4 codes on a sample of at most 256 rows/);
      // The images stream into the fit: the last progress line comes before k-means starts.
      const out1 = r.stdout.split("\n");
      const done = out1.findIndex((l) => /^images 5\/5 +rows 80 +[\d.]+ images\/s/.test(l));
      assert.ok(done >= 0, r.stdout);
      const depthLines = out1.filter((l) => l.startsWith("depth "));
      assert.equal(depthLines.length, 2 * (2 + 1), r.stdout);
      assert.ok(done < out1.indexOf(depthLines[0]), r.stdout);
      assert.ok(depthLines.every((l) => / rows 80 /.test(l)), r.stdout);
      const cb = await Codebooks.load(semantic);
      assert.deepEqual(cb.shape, [2, 4, 32]);
      assert.deepEqual({ layer: cb.info.layer, encoder: cb.info.encoder, shared: cb.info.shared }, {
        layer: 1,
        encoder: encDir,
        shared: false,
      });

      // The same fit on features computed here: the stage's "resize" preprocessing with SigLIP's
      // normalization, hidden state 1 of the encoder (no CLS), every row kept.
      const image = parseImagePreprocessConfig({
        size: 28,
        mode: "resize",
        fill: [127, 127, 127],
        ...SIGLIP_NORM,
      }, "t");
      const px = new Float32Array(5 * 3 * 28 * 28);
      for (const [i, f] of files.entries()) px.set(preprocess(await readImage(f), image), i * 3 * 28 * 28);
      const feats = e.noGrad(() =>
        e.tidy(() => enc.forward(e.tensor(px, [5, 3, 28, 28]), { layer: 1, keepCls: false }))
      );
      const rows = await feats.read() as Float32Array;
      feats.dispose();
      const want = await fitResidualKMeans(e, rows, { depths: 2, K: 4, Dc: 32, iters: 2, seed: 0 });
      assertClose(cb.data, want, { atol: 1e-4, rtol: 1e-4, label: "codebooks" });

      // Now only the pixel tokenizer's codebooks are missing: it is the default.
      const p = await tokenizer("fit", run, "--iters", "1");
      assert.equal(p.code, 0, p.stderr);
      assert.match(p.stdout, /tokenizer "pixel": patch pixels, rows of width 147/);
      const pcb = await Codebooks.load(pixel);
      assert.deepEqual(pcb.shape, [1, 4, 147]);
      assert.deepEqual({ layer: pcb.info.layer, encoder: pcb.info.encoder }, {
        layer: "pixels",
        encoder: "pixels",
      });

      // --out and --max-images: 3 of the 5 images.
      const out = join(dir, "other", "cb.safetensors");
      const m = await tokenizer(
        "fit",
        run,
        "--tokenizer",
        "semantic",
        "--max-images",
        "3",
        "--iters",
        "0",
        "--sample-limit",
        "20",
        "--out",
        out,
      );
      assert.equal(m.code, 0, m.stderr);
      assert.match(m.stdout, /encoding 3 of them/);
      assert.match(m.stdout, /on a sample of at most 20 rows/);
      assert.match(m.stdout, /images 3\/3 +rows 48 /);
      // 48 rows streamed, 20 of them sampled for k-means.
      assert.match(m.stdout, /depth 1\/2 +final +mse .* rows 20 /);
      assert.deepEqual((await Codebooks.load(out)).shape, [2, 4, 32]);
      for (const t of enc.params().values()) t.dispose();
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

gpuTest(
  "deno task tokenizer fit <run.ts>: errors name the tokenizer, stage, data file or image and the fix",
  async (e) => {
    const dir = await Deno.makeTempDir({ prefix: "asvr_tokenizer_fit_run_" });
    try {
      const { enc, run } = await writeRun(e, dir);
      for (const t of enc.params().values()) t.dispose();
      const cases: [string[], number, RegExp][] = [
        [
          ["--tokenizer", "appearance"],
          2,
          /--tokenizer "appearance": .*run\.ts has no visual tokenizer of that name; its tokenizers: semantic \(rq\), pixel \(rq\)/,
        ],
        [
          ["--tokenizer", "semantic", "--stage", "2"],
          2,
          /--stage 2: the run has 1 stage \(1: stage1\); use 1\.\.1/,
        ],
        [
          ["--tokenizer", "semantic", "--set", `train.stages[0].data=${join(dir, "nope.json")}`],
          1,
          /train\.stages\[0\]\.data = .*nope\.json: data file not found/,
        ],
        [
          ["--tokenizer", "semantic", "--set", `visualTokenizers[0].encoder=${join(dir, "nowhere")}`],
          1,
          /visualTokenizers\[0\]\.encoder = .*nowhere: no encoder folder there \(config\.json missing\)/,
        ],
        [["--tokenizer", "semantic", "--depths", "3"], 2, /--depths belongs to the --features form/],
      ];
      for (const [args, code, re] of cases) {
        const r = await tokenizer("fit", run, ...args);
        assert.equal(r.code, code, `${args.join(" ")}: ${r.stderr}`);
        assert.match(r.stderr, re);
      }
      // An unreadable image stops the fit (data.onError "error"), or is skipped with a warning ("skip").
      await Deno.writeTextFile(join(dir, "data", "img", "3.png"), "not a png");
      const stop = await tokenizer("fit", run, "--tokenizer", "pixel", "--iters", "0");
      assert.equal(stop.code, 1);
      assert.match(stop.stderr, /img\/3\.png.*data\.onError: "skip"/);
      const skip = await tokenizer(
        "fit",
        run,
        "--tokenizer",
        "pixel",
        "--iters",
        "0",
        "--set",
        "data.onError=skip",
      );
      assert.equal(skip.code, 0, skip.stderr);
      assert.match(skip.stdout, /warning: skipped an unreadable image: .*img\/3\.png/);
      assert.match(skip.stdout, /images 4\/5 +rows 64 .*skipped 1/);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);
