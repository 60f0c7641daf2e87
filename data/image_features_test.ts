import assert from "node:assert/strict";
import { join } from "node:path";
import sharp from "sharp";
import { gpuTest } from "../core/testing.ts";
import { rng } from "../core/random.ts";
import type { Engine } from "../core/engine.ts";
import { parseImagePreprocessConfig, preprocess } from "./preprocess.ts";
import { readImage } from "./image.ts";
import type { VisionConfig } from "../encoders/config.ts";
import { patchify } from "../encoders/patch_embed.ts";
import { VisionEncoder } from "../encoders/vit.ts";
import { imageFeatures, imageFeatureWidth, preprocessedImages } from "./image_features.ts";

/** 28 px images in 7 px patches: N = 16 patches of width 16 (pixels: 3 * 49 = 147). */
const VIT: VisionConfig = {
  arch: "siglip",
  hiddenSize: 16,
  intermediateSize: 24,
  numLayers: 2,
  numHeads: 2,
  imageSize: 28,
  patchSize: 7,
  layerNormEps: 1e-6,
  act: "gelu_tanh",
};
const N = 16;
const IMAGE = parseImagePreprocessConfig({ size: 28, mode: "pad" }, "test");

/** Writes `n` random-coloured PNGs of assorted sizes into `dir`; returns their paths. */
async function writePngs(dir: string, n: number): Promise<string[]> {
  const r = rng(11), paths = [];
  for (let i = 0; i < n; i++) {
    const w = 20 + 4 * i, h = 30 - 2 * i;
    const px = Uint8Array.from({ length: w * h * 3 }, () => Math.floor(r() * 256));
    const path = join(dir, `img${i}.png`);
    await sharp(px, { raw: { width: w, height: h, channels: 3 } }).png().toFile(path);
    paths.push(path);
  }
  return paths;
}

/** The preprocessed pixels of the files [n, 3, 28, 28], read on this thread. */
async function pixelsOf(paths: string[]): Promise<Float32Array> {
  const all = new Float32Array(paths.length * 3 * 28 * 28);
  for (const [i, p] of paths.entries()) all.set(preprocess(await readImage(p), IMAGE), i * 3 * 28 * 28);
  return all;
}

/** What the trainer quantizes for these images, computed directly: [n * N, Dc]. */
async function direct(e: Engine, enc: VisionEncoder, px: Float32Array, layer: number | "pixels") {
  const n = px.length / (3 * 28 * 28);
  const t = e.noGrad(() =>
    e.tidy(() => {
      const x = e.tensor(px, [n, 3, 28, 28]);
      return layer === "pixels" ? patchify(x, 7) : enc.forward(x, { layer, keepCls: false });
    })
  );
  const out = await t.read() as Float32Array;
  t.dispose();
  return out;
}

function dispose(enc: VisionEncoder): void {
  for (const p of enc.params().values()) p.dispose();
}

/** Every chunk of a stream, in order. */
async function drain(stream: AsyncIterable<Float32Array>): Promise<Float32Array[]> {
  const chunks: Float32Array[] = [];
  for await (const c of stream) chunks.push(c);
  return chunks;
}

function concat(chunks: Float32Array[]): Float32Array {
  const all = new Float32Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    all.set(c, at);
    at += c.length;
  }
  return all;
}

gpuTest(
  "imageFeatures: one chunk per batch, together the encoder's features at the layer, in order",
  async (e) => {
    const dir = await Deno.makeTempDir({ prefix: "asvr_fit_images_" });
    const enc = VisionEncoder.create(e, VIT, { seed: 5 });
    try {
      const paths = await writePngs(dir, 5);
      const px = await pixelsOf(paths);
      const progress: [number, number][] = [];
      // Batches of 2: two full ones and a last one of a single image.
      const chunks = await drain(
        imageFeatures(e, enc, preprocessedImages(paths, IMAGE, { onError: "error" }), {
          layer: 1,
          batch: 2,
          onProgress: (p) => progress.push([p.images, p.rows]),
        }),
      );
      assert.deepEqual(progress, [[2, 2 * N], [4, 4 * N], [5, 5 * N]]);
      assert.deepEqual(chunks.map((c) => c.length), [2 * N * 16, 2 * N * 16, N * 16]);
      assert.equal(imageFeatureWidth(VIT, 1), 16);
      const got = concat(chunks);
      const want = await direct(e, enc, px, 1);
      assert.equal(got.length, want.length);
      // Batches of 2 against one batch of 5: the same per-row arithmetic.
      for (let i = 0; i < want.length; i++) assert.ok(Math.abs(got[i] - want[i]) <= 1e-5, `value ${i}`);
      // Another layer gives other rows (the layer is not ignored).
      const last = await direct(e, enc, px, 2);
      assert.ok(last.some((v, i) => Math.abs(v - got[i]) > 1e-3));
      // No images: no chunk.
      assert.deepEqual(await drain(imageFeatures(e, enc, [], { layer: 1 })), []);
    } finally {
      dispose(enc);
      await Deno.remove(dir, { recursive: true });
    }
  },
);

gpuTest('imageFeatures: layer "pixels" gives patchify\'s rows and needs only the config', async (e) => {
  const dir = await Deno.makeTempDir({ prefix: "asvr_fit_images_" });
  const enc = VisionEncoder.create(e, VIT, { seed: 5 });
  try {
    const px = await pixelsOf(await writePngs(dir, 3));
    const images = Array.from({ length: 3 }, (_, i) => px.subarray(i * 2352, (i + 1) * 2352));
    const chunks = await drain(imageFeatures(e, VIT, images, { layer: "pixels" }));
    assert.equal(chunks.length, 1, "3 images fit one batch of the default 32");
    assert.equal(imageFeatureWidth(VIT, "pixels"), 3 * 7 * 7);
    assert.deepEqual(chunks[0], await direct(e, enc, px, "pixels"));
    // Bad options fail at the call, before any image is read.
    assert.throws(
      () => imageFeatures(e, VIT, images, { layer: 1 }),
      /layer 1 needs a loaded VisionEncoder/,
    );
    assert.throws(
      () => imageFeatures(e, enc, images, { layer: 3 }),
      /layer 3 is outside the encoder's hidden states \[0, 2\]/,
    );
    assert.throws(
      () => imageFeatures(e, enc, images, { layer: 1, batch: 0 }),
      /batch must be an integer >= 1/,
    );
    await assert.rejects(
      () => drain(imageFeatures(e, enc, [images[0], new Float32Array(10)], { layer: 1 })),
      /image 1 has 10 values; each image must be preprocessed pixels f32 \[3, 28, 28\]/,
    );
  } finally {
    dispose(enc);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("preprocessedImages: an unreadable image stops the stream naming it, or is skipped and reported", async () => {
  const dir = await Deno.makeTempDir({ prefix: "asvr_fit_images_" });
  try {
    const [good] = await writePngs(dir, 1);
    const bad = join(dir, "broken.png");
    await Deno.writeTextFile(bad, "not an image");
    const want = preprocess(await readImage(good), IMAGE);
    const skipped: string[] = [];
    const got: Float32Array[] = [];
    for await (
      const px of preprocessedImages([bad, good, join(dir, "gone.png")], IMAGE, {
        onError: "skip",
        onSkip: (path, reason) => {
          assert.ok(reason.includes(path), reason);
          skipped.push(path);
        },
      })
    ) got.push(px);
    assert.deepEqual(skipped, [bad, join(dir, "gone.png")]);
    assert.equal(got.length, 1);
    assert.deepEqual(got[0], want);
    await assert.rejects(async () => {
      for await (const _ of preprocessedImages([good, bad], IMAGE, { onError: "error" })) { /* drain */ }
    }, (err: Error) => err.message.includes(bad) && /data\.onError: "skip"/.test(err.message));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
