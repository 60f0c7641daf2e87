import assert from "node:assert/strict";
import { gpuTest, rng } from "../../core/testing.ts";
import type { VisionConfig } from "../../encoders/config.ts";
import { VisionEncoder } from "../../encoders/vit.ts";
import { type PatchLabelData, pretrainEncoder } from "./pretrain_encoder.ts";

/** 16 px images in 4 px patches (N = 16), one small layer: fast on a software adapter. */
const CFG: VisionConfig = {
  arch: "siglip",
  hiddenSize: 32,
  intermediateSize: 64,
  numLayers: 1,
  numHeads: 2,
  imageSize: 16,
  patchSize: 4,
  layerNormEps: 1e-6,
  act: "gelu_tanh",
};

/** The colour of class k (0: gray background), as preprocessed pixels in [-1, 1]. */
const COLOURS = [[0, 0, 0], [0.9, -0.8, -0.8], [-0.8, 0.9, -0.8], [-0.8, -0.8, 0.9]];

/**
 * `n` images whose every 4 x 4 patch is filled with one colour plus noise; the patch's class is
 * its colour (about half the patches are background).
 */
function colourPatches(n: number, seed: number): PatchLabelData {
  const r = rng(seed), S = 16, p = 4, G = S / p;
  const pixels = new Float32Array(n * 3 * S * S), patchLabels = new Int32Array(n * G * G);
  for (let i = 0; i < n; i++) {
    for (let patch = 0; patch < G * G; patch++) {
      const k = r() < 0.5 ? 0 : 1 + Math.floor(r() * 3);
      patchLabels[i * G * G + patch] = k;
      const y0 = Math.floor(patch / G) * p, x0 = (patch % G) * p;
      for (let c = 0; c < 3; c++) {
        for (let y = 0; y < p; y++) {
          for (let x = 0; x < p; x++) {
            pixels[((i * 3 + c) * S + y0 + y) * S + x0 + x] = COLOURS[k][c] + (r() - 0.5) * 0.2;
          }
        }
      }
    }
  }
  return { pixels, patchLabels, numClasses: 4 };
}

gpuTest(
  "pretrainEncoder: held-out patch accuracy rises far above chance; the saved folder reloads",
  async (e) => {
    const data = colourPatches(48, 1);
    const seen: number[] = [];
    const res = await pretrainEncoder(e, data, {
      config: CFG,
      steps: 30,
      batch: 8,
      lr: 1e-2,
      holdout: 8,
      readEvery: 10,
      onStep: (s) => seen.push(s),
    });
    const { encoder, losses, accuracy, foregroundAccuracy, backgroundShare } = res;
    assert.deepEqual(seen, Array.from({ length: 30 }, (_, i) => i));
    assert.equal(losses.length, 30);
    assert.ok(losses[0] > 0.7 * Math.log(4), `untrained loss ${losses[0]} should be near ln 4`);
    assert.ok(losses.at(-1)! < 0.3, `trained loss ${losses.at(-1)} should fall below 0.3`);
    // Always guessing background scores backgroundShare (~0.5); a colour-blind guess, 1/4 of the rest.
    assert.ok(backgroundShare > 0.3 && backgroundShare < 0.7, `background share ${backgroundShare}`);
    assert.ok(accuracy > 0.9, `held-out patch accuracy ${accuracy} should pass 0.9`);
    assert.ok(
      foregroundAccuracy > 0.85,
      `held-out foreground accuracy ${foregroundAccuracy} should pass 0.85`,
    );

    const dir = await Deno.makeTempDir({ prefix: "asvr_tiny_encoder_" });
    try {
      await encoder.save(dir);
      const back = await VisionEncoder.load(e, dir);
      assert.deepEqual(back.cfg, CFG);
      const px = e.tensor(data.pixels.subarray(0, 2 * 3 * 16 * 16), [2, 3, 16, 16]);
      const [a, b] = e.noGrad(() => [encoder.forward(px, { layer: -1 }), back.forward(px, { layer: -1 })]);
      const [fa, fb] = [await a.read(), await b.read()];
      assert.equal(fa.length, 2 * 16 * 32);
      assert.deepEqual(fb, fa, "reloaded features differ");
      for (const t of [px, a, b, ...back.params().values()]) t.dispose();
    } finally {
      await Deno.remove(dir, { recursive: true });
      for (const t of encoder.params().values()) t.dispose();
    }
    // The trained encoder keeps no gradients once the run is over.
    assert.ok([...encoder.params().values()].every((p) => p.grad === null));
  },
);

gpuTest("pretrainEncoder: bad data and options are refused naming the field and the fix", async (e) => {
  const data = colourPatches(2, 2);
  const opts = { config: CFG, steps: 1 };
  const bad = new Int32Array(data.patchLabels);
  bad[16 + 5] = 9;
  await assert.rejects(
    pretrainEncoder(e, { ...data, patchLabels: bad }, opts),
    /image 1, patch 5 is 9; classes must lie in \[0, 4\)/,
  );
  await assert.rejects(
    pretrainEncoder(e, { ...data, pixels: data.pixels.subarray(1) }, opts),
    /data\.pixels has 1535 values; 2 images \(from patchLabels\) need f32 \[2, 3, 16, 16\]/,
  );
  await assert.rejects(
    pretrainEncoder(e, { ...data, patchLabels: data.patchLabels.subarray(3) }, opts),
    /not a whole number of images of 16 patches/,
  );
  await assert.rejects(
    pretrainEncoder(e, data, { ...opts, holdout: 2 }),
    /holdout is 2; it must be below .* \(2\)/,
  );
  await assert.rejects(
    pretrainEncoder(e, data, { ...opts, lr: -1 }),
    /option lr is -1; it must be a finite number > 0/,
  );
  await assert.rejects(
    pretrainEncoder(e, data, { ...opts, stepz: 3 } as never),
    /unknown option stepz; the options are/,
  );
});
