import assert from "node:assert/strict";
import { backward } from "../core/autograd.ts";
import type { Engine } from "../core/engine.ts";
import { assertClose, gpuTest, randn } from "../core/testing.ts";
import { writeHfFolder } from "../io/params.ts";
import { type VisionConfig, visionConfigToHf } from "./config.ts";
import { VisionEncoder, visionParamShapes } from "./vit.ts";

const SIGLIP: VisionConfig = {
  arch: "siglip",
  hiddenSize: 16,
  intermediateSize: 24,
  numLayers: 2,
  numHeads: 2,
  imageSize: 10, // p = 4: a 2 x 2 grid, the last 2 pixel rows and columns unused (as 384 / 14)
  patchSize: 4,
  layerNormEps: 1e-6,
  act: "gelu_tanh",
};

const CLIP: VisionConfig = { ...SIGLIP, arch: "clip", imageSize: 8, layerNormEps: 1e-5, act: "quick_gelu" };

function dispose(enc: VisionEncoder): void {
  for (const t of enc.params().values()) t.dispose();
}

function pixels(e: Engine, B: number, S: number, seed = 1) {
  return e.tensor(randn(B * 3 * S * S, seed), [B, 3, S, S]);
}

gpuTest("VisionEncoder: HF parameter names and shapes", (e) => {
  const clip = VisionEncoder.create(e, CLIP);
  const shapes = Object.fromEntries([...clip.params()].map(([n, t]) => [n, t.shape.join("x")]));
  assert.equal(shapes["vision_model.embeddings.class_embedding"], "16");
  assert.equal(shapes["vision_model.embeddings.patch_embedding.weight"], "16x3x4x4");
  assert.equal(shapes["vision_model.embeddings.position_embedding.weight"], "5x16"); // N + 1
  assert.equal(shapes["vision_model.pre_layrnorm.weight"], "16");
  assert.equal(shapes["vision_model.encoder.layers.1.mlp.fc1.weight"], "24x16");
  assert.equal(shapes["vision_model.encoder.layers.1.self_attn.out_proj.bias"], "16");
  assert.equal(shapes["vision_model.post_layernorm.bias"], "16");
  assert.equal(shapes["vision_model.embeddings.patch_embedding.bias"], undefined); // CLIP: no conv bias
  assert.equal(clip.params().size, 3 + 2 + 2 * 16 + 2); // embeddings, pre-norm, 2 layers, post-norm
  const siglip = VisionEncoder.create(e, SIGLIP);
  const names = [...siglip.params().keys()];
  assert.ok(names.includes("vision_model.embeddings.patch_embedding.bias"));
  assert.ok(!names.some((n) => n.includes("class_embedding") || n.includes("pre_layrnorm")));
  assert.deepEqual(siglip.params().get("vision_model.embeddings.position_embedding.weight")!.shape, [4, 16]);
  assert.equal(siglip.numPatches, 4);
  for (const t of siglip.params().values()) {
    assert.equal(
      t.name,
      names.find((n) => siglip.params().get(n) === t),
    );
  }
  dispose(clip);
  dispose(siglip);
});

gpuTest(
  "visionParamShapes: each family declares exactly the parameters the encoder builds, in order",
  (e) => {
    for (const cfg of [SIGLIP, CLIP]) {
      const enc = VisionEncoder.create(e, cfg);
      const built = new Map([...enc.params()].map(([n, t]) => [n, t.shape]));
      assert.deepEqual([...visionParamShapes(cfg)], [...built], `${cfg.arch}: declared vs built`);
      dispose(enc);
    }
  },
);

gpuTest("VisionEncoder.forward: shapes for every layer, CLS kept or dropped", (e) => {
  const siglip = VisionEncoder.create(e, SIGLIP), clip = VisionEncoder.create(e, CLIP);
  e.tidy(() => {
    const ps = pixels(e, 2, 10), pc = pixels(e, 2, 8);
    for (const layer of [0, 1, 2, -1, -2, -3]) {
      assert.deepEqual(siglip.forward(ps, { layer }).shape, [2, 4, 16], `siglip layer ${layer}`);
      assert.deepEqual(clip.forward(pc, { layer }).shape, [2, 5, 16], `clip layer ${layer}`);
      assert.deepEqual(
        clip.forward(pc, { layer, keepCls: false }).shape,
        [2, 4, 16],
        `clip patches ${layer}`,
      );
    }
  });
  dispose(siglip);
  dispose(clip);
});

gpuTest("VisionEncoder.forward: bad layer and pixel shapes are refused with the fix", (e) => {
  const enc = VisionEncoder.create(e, SIGLIP);
  e.tidy(() => {
    const px = pixels(e, 1, 10);
    for (const layer of [3, -4, 0.5]) {
      assert.throws(
        () => enc.forward(px, { layer }),
        /layer .* is out of range for 2 layers; use 0\.\.2 or -1\.\.-3 \(hidden_states indexing\)/,
      );
    }
    assert.throws(
      () => enc.forward(pixels(e, 1, 8), { layer: -1 }),
      /pixels f32\[1,3,8,8\] must be \[B, 3, 10, 10\]; resize images to image_size first/,
    );
  });
  dispose(enc);
});

gpuTest("VisionEncoder.forward: only the layers up to the selected one run", async (e) => {
  const enc = VisionEncoder.create(e, SIGLIP, { seed: 2 });
  const px = pixels(e, 1, 10);
  // Two runs of layer 1: equal, and not what layer 2 gives.
  const [a, b, c] = await e.tidy(() =>
    e.noGrad(() =>
      Promise.all([
        enc.forward(px, { layer: 1 }).read(),
        enc.forward(px, { layer: -2 }).read(),
        enc.forward(px, { layer: 2, postLayerNorm: false }).read(),
      ])
    )
  );
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, c);
  e.tidy(() => backward(enc.forward(px, { layer: -2 }), e.full([1, 4, 16], 1)));
  for (const [name, t] of enc.params()) {
    const used = !name.includes("layers.1.") && !name.includes("post_layernorm");
    assert.equal(t.grad !== null, used, `${name} ${used ? "gets" : "gets no"} gradient`);
  }
  px.dispose();
  dispose(enc);
});

gpuTest(
  "VisionEncoder.forward: SigLIP post-normalizes only the last layer; CLIP never by default",
  async (e) => {
    const siglip = VisionEncoder.create(e, SIGLIP, { seed: 3 }),
      clip = VisionEncoder.create(e, CLIP, { seed: 3 });
    // The post-layernorm starts at identity (weight 1, bias 0): normalized rows have mean 0, variance 1.
    const rowStats = (v: Float32Array, C: number) => {
      const out: { mean: number; v: number }[] = [];
      for (let r = 0; r < v.length / C; r++) {
        const row = v.subarray(r * C, (r + 1) * C);
        const m = row.reduce((s, x) => s + x, 0) / C;
        out.push({ mean: m, v: row.reduce((s, x) => s + (x - m) ** 2, 0) / C });
      }
      return out;
    };
    const normalized = (v: Float32Array) =>
      rowStats(v, 16).every((s) => Math.abs(s.mean) < 1e-4 && Math.abs(s.v - 1) < 1e-3);
    const [last, raw, mid, clipLast, clipPost] = await e.tidy(() =>
      e.noGrad(() => {
        const ps = pixels(e, 2, 10), pc = pixels(e, 2, 8);
        return Promise.all([
          siglip.forward(ps, { layer: -1 }).read(),
          siglip.forward(ps, { layer: -1, postLayerNorm: false }).read(),
          siglip.forward(ps, { layer: 1 }).read(),
          clip.forward(pc, { layer: -1 }).read(),
          clip.forward(pc, { layer: -1, postLayerNorm: true }).read(),
        ]);
      })
    ) as Float32Array[];
    assert.ok(normalized(last), "SigLIP layer -1 is post-normalized");
    assert.ok(!normalized(raw), "postLayerNorm: false gives the raw last layer");
    assert.ok(!normalized(mid), "a middle layer is not post-normalized");
    assert.ok(!normalized(clipLast), "CLIP's hidden states are not post-normalized");
    assert.ok(normalized(clipPost), "CLIP with postLayerNorm: true");
    dispose(siglip);
    dispose(clip);
  },
);

gpuTest("VisionEncoder.create: the seed decides the weights", async (e) => {
  const a = VisionEncoder.create(e, SIGLIP, { seed: 1 }), b = VisionEncoder.create(e, SIGLIP, { seed: 1 });
  const c = VisionEncoder.create(e, SIGLIP, { seed: 2 });
  const name = "vision_model.encoder.layers.0.self_attn.q_proj.weight";
  const [wa, wb, wc] = await Promise.all([a, b, c].map((m) => m.params().get(name)!.read()));
  assert.deepEqual(wa, wb);
  assert.notDeepEqual(wa, wc);
  for (const m of [a, b, c]) dispose(m);
});

gpuTest("VisionEncoder.freeze: no parameter gradients, the input still gets one", async (e) => {
  const enc = VisionEncoder.create(e, CLIP);
  enc.freeze();
  const px = e.param(randn(3 * 64, 4), [1, 3, 8, 8]);
  e.tidy(() => backward(enc.forward(px, { layer: -1 }), e.full([1, 5, 16], 1)));
  for (const t of enc.params().values()) assert.equal(t.grad, null);
  assert.ok(((await px.grad!.read()) as Float32Array).some((v) => v !== 0));
  px.dispose();
  dispose(enc);
});

for (const cfg of [SIGLIP, CLIP]) {
  gpuTest(
    `VisionEncoder ${cfg.arch}: save -> load round trip keeps config, weights and outputs`,
    async (e) => {
      const dir = await Deno.makeTempDir({ prefix: "asvr_vit_" });
      try {
        const enc = VisionEncoder.create(e, cfg, { seed: 7 });
        await enc.save(dir);
        const back = await VisionEncoder.load(e, dir);
        assert.deepEqual(back.cfg, cfg);
        assert.deepEqual([...back.params().keys()], [...enc.params().keys()]);
        for (const [name, t] of enc.params()) {
          assert.deepEqual(await back.params().get(name)!.read(), await t.read(), name);
        }
        const S = cfg.imageSize;
        const [y0, y1] = await e.tidy(() =>
          e.noGrad(() => {
            const px = pixels(e, 1, S, 5);
            return Promise.all([
              enc.forward(px, { layer: -1 }).read(),
              back.forward(px, { layer: -1 }).read(),
            ]);
          })
        );
        assert.deepEqual(y1, y0);
        dispose(enc);
        dispose(back);
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  );
}

gpuTest(
  "VisionEncoder.load: a LLaVA-style checkpoint (prefixed names, nested config, extra tensors)",
  async (e) => {
    const dir = await Deno.makeTempDir({ prefix: "asvr_vit_" });
    try {
      const enc = VisionEncoder.create(e, CLIP, { seed: 8 });
      const params = new Map(enc.params());
      const extra = e.param(new Float32Array(4), [4]);
      params.set("text_model.final_layer_norm.weight", extra); // another tower in the same file
      await writeHfFolder(dir, { model_type: "clip", vision_config: visionConfigToHf(CLIP) }, params, {
        prefix: "model.vision_tower.vision_tower.",
      });
      const back = await VisionEncoder.load(e, dir, { prefix: "model.vision_tower.vision_tower." });
      assert.deepEqual(back.cfg, CLIP);
      const name = "vision_model.embeddings.class_embedding";
      assert.deepEqual(await back.params().get(name)!.read(), await enc.params().get(name)!.read());
      extra.dispose();
      dispose(enc);
      dispose(back);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

gpuTest("VisionEncoder f16: forward runs in f16 storage and tracks f32", async (e) => {
  if (!e.hasF16) return;
  const enc32 = VisionEncoder.create(e, SIGLIP, { seed: 9 });
  const enc16 = VisionEncoder.create(e, SIGLIP, { seed: 9, dtype: "f16" });
  assert.equal(enc16.params().get("vision_model.post_layernorm.weight")!.dtype, "f16");
  const [y32, y16] = await e.tidy(() =>
    e.noGrad(() => {
      const px = pixels(e, 1, 10, 6);
      const out16 = enc16.forward(px, { layer: -2 });
      assert.equal(out16.dtype, "f16");
      return Promise.all([enc32.forward(px, { layer: -2 }).read(), out16.read()]);
    })
  );
  assertClose(y16, y32, { atol: 2e-2, rtol: 2e-2, label: "f16 vs f32" });
  dispose(enc32);
  dispose(enc16);
});
