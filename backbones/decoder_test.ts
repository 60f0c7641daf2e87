import assert from "node:assert/strict";
import { tinyDecoderConfig } from "./testing.ts";
import { join } from "node:path";
import { backward } from "../core/autograd.ts";
import type { Engine } from "../core/engine.ts";
import type { Tensor } from "../core/tensor.ts";
import { gpuTest, randInt, randn } from "../core/testing.ts";
import { writeHfFolder } from "../io/params.ts";
import { Checkpoint } from "../io/safetensors.ts";
import { readJsonFile } from "../io/json.ts";
import type { LlmArch } from "./config.ts";
import { llmConfigToHf } from "./config.ts";
import { hfParamNames } from "./names.ts";
import { Decoder, type DecoderDType } from "./decoder.ts";

const ARCHS: LlmArch[] = ["llama", "mistral", "qwen2"];
const B = 2, T = 6;

/** Token ids [B, T] and labels with the first two positions unsupervised. */
function batch(e: Engine, V: number, seed: number): { ids: Tensor; labels: Tensor } {
  const ids = randInt(B * T, V, seed);
  const labels = Int32Array.from(ids, (v, i) => (i % T < 2 ? -100 : v));
  return { ids: e.tensor(ids, [B, T], "i32"), labels: e.tensor(labels, [B, T], "i32") };
}

/** Overwrites every parameter with N(0, 0.3) values (non-trivial logits, non-zero biases). */
function randomize(e: Engine, model: Decoder, seed: number): void {
  let s = seed;
  for (const p of model.params().values()) e.write(p, randn(p.size, ++s, 0.3));
}

async function readAll(ts: Map<string, Tensor>): Promise<Map<string, Float32Array>> {
  const out = new Map<string, Float32Array>();
  for (const [k, t] of ts) out.set(k, Float32Array.from(await t.read()));
  return out;
}

for (const arch of ARCHS) {
  gpuTest(
    `Decoder ${arch}: random init, forward/backward: finite loss near ln V, every param a gradient`,
    async (e) => {
      const cfg = tinyDecoderConfig(arch);
      const model = Decoder.create(e, cfg, { seed: 1 });
      assert.deepEqual([...model.params().keys()], hfParamNames(cfg), "params() are keyed by the HF names");
      const { ids, labels } = batch(e, cfg.vocabSize, 2);
      const { hidden, logits, loss } = e.tidy(() => {
        const hidden = model.forward(model.embed(ids));
        const logits = model.logits(hidden);
        const loss = model.lossFromLabels(logits, labels);
        backward(loss);
        return { hidden, logits, loss };
      });
      assert.deepEqual(hidden.shape, [B, T, cfg.hiddenSize]);
      assert.deepEqual(logits.shape, [B, T, cfg.vocabSize]);
      const l = (await loss.read())[0];
      // N(0, 0.02) weights give nearly uniform predictions (logits of std ~0.02 sqrt(C) = 0.11, 8 targets).
      assert.ok(Number.isFinite(l) && Math.abs(l - Math.log(cfg.vocabSize)) < 0.25, `loss ${l}`);
      for (const [name, p] of model.params()) {
        assert.ok(p.grad, `${name} has no gradient`);
        const g = await p.grad.read();
        assert.ok(g.every(Number.isFinite), `${name}: gradient not finite`);
        assert.ok(g.some((v) => v !== 0), `${name}: gradient is all zero`);
      }
      for (const t of [ids, labels, hidden, logits, loss]) t.dispose();
      model.dispose();
    },
  );
}

gpuTest("Decoder: checkpointLayers gives the same loss and gradients", async (e) => {
  const cfg = tinyDecoderConfig("qwen2");
  const model = Decoder.create(e, cfg, { seed: 3 });
  randomize(e, model, 30);
  const { ids, labels } = batch(e, cfg.vocabSize, 4);
  const run = async (checkpointLayers: boolean) => {
    const loss = e.tidy(() => {
      const l = model.lossFromLabels(
        model.logits(model.forward(model.embed(ids), { checkpointLayers })),
        labels,
      );
      backward(l);
      return l;
    });
    const grads = await readAll(new Map([...model.params()].map(([k, p]) => [k, p.grad!])));
    for (const p of model.params().values()) p.grad?.dispose(), p.grad = null;
    return { loss: (await loss.read())[0], grads };
  };
  const plain = await run(false), ckpt = await run(true);
  assert.ok(
    Math.abs(plain.loss - Math.log(cfg.vocabSize)) > 0.1,
    "randomized weights give a non-trivial loss",
  );
  assert.equal(ckpt.loss, plain.loss);
  for (const [k, g] of plain.grads) assert.deepEqual(ckpt.grads.get(k), g, k);
  model.dispose();
});

for (
  const [arch, dtype] of [["llama", "f32"], ["mistral", "f32"], ["qwen2", "f32"], ["qwen2", "f16"]] as const
) {
  gpuTest(`Decoder ${arch} ${dtype}: save -> load round trip gives identical logits`, async (e) => {
    const d: DecoderDType = dtype;
    const cfg = tinyDecoderConfig(arch);
    const model = Decoder.create(e, cfg, { seed: 5, dtype: d });
    randomize(e, model, 50);
    const dir = await Deno.makeTempDir({ prefix: `asvr_decoder_${arch}_` });
    try {
      await model.save(dir);
      const saved = await readJsonFile(join(dir, "config.json"), "saved config");
      assert.deepEqual(saved, llmConfigToHf(cfg));
      const ckpt = await Checkpoint.open(dir);
      assert.deepEqual(ckpt.names().sort(), hfParamNames(cfg).sort());
      assert.equal(ckpt.info("model.norm.weight").dtype, d === "f16" ? "F16" : "F32");
      ckpt.close();
      const loaded = await Decoder.load(e, dir, { dtype: d });
      assert.deepEqual(loaded.cfg, cfg);
      assert.deepEqual(await readAll(loaded.params()), await readAll(model.params()));
      const { ids } = batch(e, cfg.vocabSize, 6);
      loaded.freeze();
      model.freeze();
      const a = e.tidy(() => model.logits(model.forward(model.embed(ids))));
      const b = e.tidy(() => loaded.logits(loaded.forward(loaded.embed(ids))));
      const va = await a.read(), vb = await b.read();
      assert.ok(va.some((v) => Math.abs(v) > 0.1), "logits are not trivial");
      assert.deepEqual(vb, va);
      for (const t of [ids, a, b]) t.dispose();
      loaded.dispose();
    } finally {
      model.dispose();
      await Deno.remove(dir, { recursive: true });
    }
  });
}

gpuTest("Decoder.load: missing and misshapen tensors are refused by name", async (e) => {
  const cfg = tinyDecoderConfig("llama");
  const model = Decoder.create(e, cfg, { seed: 7 });
  const dir = await Deno.makeTempDir({ prefix: "asvr_decoder_bad_" });
  try {
    const params = model.params();
    params.delete("model.layers.1.mlp.up_proj.weight");
    await writeHfFolder(dir, llmConfigToHf(cfg), params);
    await assert.rejects(() => Decoder.load(e, dir), /model\.layers\.1\.mlp\.up_proj\.weight/);
    // A config whose sizes disagree with the weights.
    await writeHfFolder(dir, llmConfigToHf({ ...cfg, intermediateSize: 40 }), model.params());
    await assert.rejects(() => Decoder.load(e, dir), /gate_proj\.weight/);
    // Tied: a saved lm_head.weight is ignored, as transformers does.
    await writeHfFolder(dir, llmConfigToHf({ ...cfg, tieWordEmbeddings: true }), model.params());
    const tied = await Decoder.load(e, dir);
    assert.ok(!tied.params().has("lm_head.weight"));
    tied.dispose();
    await assert.rejects(() => Decoder.load(e, join(dir, "nowhere")), /nowhere.*config\.json/);
  } finally {
    model.dispose();
    await Deno.remove(dir, { recursive: true });
  }
});

gpuTest("Decoder.freeze: no parameter gradients, activation gradients still flow", async (e) => {
  const cfg = tinyDecoderConfig("mistral");
  const model = Decoder.create(e, cfg, { seed: 9 });
  model.freeze();
  const x = e.param(randn(B * T * cfg.hiddenSize, 10), [B, T, cfg.hiddenSize]); // stands for image features
  const { labels } = batch(e, cfg.vocabSize, 11);
  e.tidy(() => backward(model.lossFromLabels(model.logits(model.forward(x)), labels)));
  for (const [name, p] of model.params()) assert.equal(p.grad, null, `${name} got a gradient while frozen`);
  assert.ok(x.grad && (await x.grad.read()).some((v) => v !== 0), "inputsEmbeds got a gradient");
  model.unfreeze();
  e.tidy(() => backward(model.lossFromLabels(model.logits(model.forward(x)), labels)));
  for (const [name, p] of model.params()) {
    // The embedding is not used: the forward starts from x.
    if (name !== "model.embed_tokens.weight") assert.ok(p.grad, `${name}: no gradient after unfreeze`);
  }
  x.dispose();
  labels.dispose();
  model.dispose();
});

gpuTest("Decoder: bad inputs and configs are refused with the fix", (e) => {
  const cfg = tinyDecoderConfig("llama");
  assert.throws(() => Decoder.create(e, { ...cfg, numKvHeads: 3 }), /numKvHeads = 3: must divide numHeads/);
  const model = Decoder.create(e, cfg);
  const x = e.zeros([B, T, 16]);
  assert.throws(() => model.forward(x), /inputsEmbeds must be f32 \[B, T, 32\]/);
  assert.throws(() => model.embed(e.zeros([B, T])), /ids must be i32/);
  x.dispose();
  model.dispose();
});

gpuTest(
  "Decoder.create init gpu: seeded, N(0, 0.02) weights, unit norms, same parameter set as host init",
  async (e) => {
    const cfg = tinyDecoderConfig("llama");
    const a = Decoder.create(e, cfg, { seed: 3, init: "gpu" });
    const b = Decoder.create(e, cfg, { seed: 3, init: "gpu" });
    const h = Decoder.create(e, cfg, { seed: 3 });
    assert.deepEqual([...a.params().keys()], [...h.params().keys()]);
    for (const [name, p] of a.params()) {
      assert.equal(p.isParam && p.requiresGrad, true, name);
      assert.deepEqual(p.shape, h.params().get(name)!.shape, name);
      const x = await p.read(), y = await b.params().get(name)!.read();
      assert.deepEqual(Array.from(x), Array.from(y), `${name}: same seed, same values`);
      if (name.includes("norm")) assert.ok(x.every((v) => v === 1), `${name}: ones`);
      else {
        const std = Math.sqrt(Array.from(x).reduce((s, v) => s + v * v, 0) / x.length);
        assert.ok(Math.abs(std - 0.02) < 0.006, `${name}: std ${std}`);
      }
    }
    for (const m of [a, b, h]) m.dispose();
  },
);
