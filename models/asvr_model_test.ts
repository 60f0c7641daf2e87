import assert from "node:assert/strict";
import { backward, zeroGrad } from "../core/autograd.ts";
import type { Engine } from "../core/engine.ts";
import { AdamW } from "../core/kernels/adamw/adamw.ts";
import { assertClose, gpuTest } from "../core/testing.ts";
import type { VisionEncoder } from "../encoders/vit.ts";
import { rqDecode, rqEncode } from "../tokenizers/rq.ts";
import { type AsvrBatch, AsvrModel } from "./asvr_model.ts";
import type { AsvrConfigInput, RqTokenizerConfigInput } from "./config.ts";
import { TINY, tinyBatch, tinyConfig, writeTinyCodebooks } from "./testing.ts";

const dir = await Deno.makeTempDir({ prefix: "asvr_model_test_" });
const CODEBOOKS = await writeTinyCodebooks(dir);
globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));

/** The tiny config with `patch` merged into slot `slot`. */
function cfgWith(slot: keyof AsvrConfigInput, patch: Record<string, unknown>): AsvrConfigInput {
  const c = tinyConfig(CODEBOOKS);
  return { ...c, [slot]: { ...(c[slot] as object), ...patch } };
}

/** Runs forward (and backward when asked) in a tidy scope; returns every term's value. */
async function losses(
  e: Engine,
  m: AsvrModel,
  batch: AsvrBatch,
  withBackward = false,
): Promise<Record<string, number>> {
  const terms = e.tidy(() => {
    const r = m.forward(batch);
    if (withBackward) backward(r.total);
    return r.terms;
  });
  const out: Record<string, number> = {};
  for (const [k, t] of Object.entries(terms)) out[k] = (await t.read())[0];
  for (const t of new Set(Object.values(terms))) t.dispose(); // total may be the text term itself
  return out;
}

/** Rows of `a` then rows of `b` (same T). */
function stack(a: AsvrBatch, b: AsvrBatch): AsvrBatch {
  const cat = <T extends Int32Array | Float32Array>(x: T, y: T): T => {
    const out = new (x.constructor as { new (n: number): T })(x.length + y.length);
    out.set(x);
    out.set(y, x.length);
    return out;
  };
  return {
    inputIds: cat(a.inputIds, b.inputIds),
    labels: cat(a.labels, b.labels),
    imagePositions: [...a.imagePositions, ...b.imagePositions],
    pixels: cat(a.pixels!, b.pixels!),
    hasImage: [...a.hasImage, ...b.hasImage],
  };
}

gpuTest("AsvrModel: finite terms, LLaVA-style names, and no visual term for head none", async (e) => {
  const m = await AsvrModel.build(e, tinyConfig(CODEBOOKS));
  const out = await losses(e, m, tinyBatch([true, false]));
  assert.deepEqual(Object.keys(out).sort(), ["text", "total", "visual_semantic"]);
  for (const [k, v] of Object.entries(out)) assert.ok(Number.isFinite(v) && v > 0, `${k} = ${v}`);
  // Fresh random models predict about uniformly: ln V for text, ln K for each depth.
  assert.ok(Math.abs(out.text - Math.log(TINY.vocab)) < 0.5, `text ${out.text}`);
  assert.ok(Math.abs(out.visual_semantic - Math.log(TINY.codes)) < 0.7, `visual ${out.visual_semantic}`);
  assertClose([out.total], [out.text + out.visual_semantic], { atol: 1e-5 });
  const names = [...m.params().keys()];
  for (
    const n of [
      "model.embed_tokens.weight",
      "model.layers.1.mlp.down_proj.weight",
      "lm_head.weight",
      "model.mm_projector.0.weight",
      "model.mm_projector.2.bias",
      "model.vision_tower.vision_tower.vision_model.embeddings.patch_embedding.weight",
      "visual_head.projector.0.weight",
      "visual_head.heads.1.weight",
    ]
  ) assert.ok(names.includes(n), `${n} in params`);

  const none = await AsvrModel.build(e, { ...tinyConfig(CODEBOOKS), head: { kind: "none" } });
  const base = await losses(e, none, tinyBatch([true, false]));
  assert.deepEqual(Object.keys(base).sort(), ["text", "total"]);
  assertClose([base.text], [out.text], { atol: 1e-5, label: "same seed, same LLM: same text loss" });
  assert.ok(![...none.params().keys()].some((n) => n.startsWith("visual_head.")));
  await m.dispose();
  await none.dispose();
});

gpuTest("AsvrModel: the encoder and codebooks get no gradients; setTrainable chooses the rest", async (e) => {
  const m = await AsvrModel.build(e, tinyConfig(CODEBOOKS), { seed: 3 });
  m.setTrainable({ projector: true, llm: false, head: true }); // stage 1
  await losses(e, m, tinyBatch([true, true]), true);
  const p = m.params();
  for (const [n, t] of p) {
    if (n.startsWith("model.vision_tower.")) {
      assert.equal(t.requiresGrad, false, n);
      assert.equal(t.grad, null, `${n}: the frozen encoder gets no gradient`);
    }
  }
  assert.equal(m.codebooks("semantic").grad, null, "frozen codebooks get no gradient");
  assert.equal(m.codebooks("semantic").requiresGrad, false);
  assert.equal(p.get("model.embed_tokens.weight")!.grad, null, "stage 1: the LLM is frozen");
  assert.equal(p.get("model.layers.0.self_attn.q_proj.weight")!.grad, null);
  const g = (n: string) =>
    p.get(n)!.grad!.read().then((a) => Array.from(a).reduce((s, v) => s + Math.abs(v), 0));
  assert.ok(await g("model.mm_projector.0.weight") > 0, "the projector trains");
  assert.ok(await g("visual_head.projector.0.weight") > 0, "the head trains");
  assert.ok(await g("visual_head.heads.0.weight") > 0);
  m.setTrainable({ llm: true, head: true });
  assert.equal(p.get("model.embed_tokens.weight")!.requiresGrad, true);
  assert.equal(
    p.get("visual_head.head_transformer.0.linear1.bias")!.requiresGrad,
    false,
    "unused head biases stay frozen",
  );
  assert.ok(m.trainableParams().every((t) => t.requiresGrad));
  assert.ok(
    !m.trainableParams().includes(
      p.get("model.vision_tower.vision_tower.vision_model.post_layernorm.weight")!,
    ),
  );
  await m.dispose();
});

gpuTest("AsvrModel: the visual loss responds to alignment and to the text-only rows", async (e) => {
  const same = await AsvrModel.build(e, tinyConfig(CODEBOOKS));
  const next = await AsvrModel.build(e, cfgWith("loss", { alignment: "next" }));
  const batch = tinyBatch([true, true]);
  const a = await losses(e, same, batch), b = await losses(e, next, batch);
  assertClose([b.text], [a.text], { atol: 1e-5, label: "alignment leaves the text loss alone" });
  assert.ok(
    Math.abs(a.visual_semantic - b.visual_semantic) > 1e-4,
    `same ${a.visual_semantic} vs next ${b.visual_semantic}`,
  );

  // A text-only row next to an image row: masked, it changes nothing in the visual loss.
  const image = tinyBatch([true], 5), textOnly = tinyBatch([false], 6);
  const alone = await losses(e, same, image);
  const masked = await losses(e, same, stack(image, textOnly));
  assertClose([masked.visual_semantic], [alone.visual_semantic], {
    atol: 2e-5,
    label: "masked text-only row",
  });
  assert.ok(Math.abs(masked.text - alone.text) > 1e-4, "the text loss does see the second row");
  // Trained on (the reference's zero image and zero hidden states), it does change the visual loss.
  const train = await AsvrModel.build(e, cfgWith("loss", { textOnlyRows: "train" }));
  const trained = await losses(e, train, stack(image, textOnly));
  assert.ok(
    Math.abs(trained.visual_semantic - alone.visual_semantic) > 1e-4,
    `train ${trained.visual_semantic}`,
  );
  // No image at all, masked: the visual term is reported and is zero.
  const none = await losses(e, same, stack(tinyBatch([false], 7), textOnly));
  assert.equal(none.visual_semantic, 0);
  for (const m of [same, next, train]) await m.dispose();
});

gpuTest("AsvrModel: the discrete-input ablation feeds the RQ reconstruction to the projector", async (e) => {
  const cont = await AsvrModel.build(e, tinyConfig(CODEBOOKS), { seed: 2 });
  const quant = await AsvrModel.build(e, cfgWith("encoder", { input: "quantized" }), { seed: 2 });
  const batch = tinyBatch([true, true], 9);
  const c = await losses(e, cont, batch), q = await losses(e, quant, batch);
  assert.ok(Math.abs(c.text - q.text) > 1e-4, `continuous ${c.text} vs quantized ${q.text}`);
  // By hand: the encoder's layer-1 features, RQ-encoded and decoded, given as the projector input.
  const S = TINY.image;
  const recon = e.tidy(() =>
    e.noGrad(() => {
      const feats = (cont.encoder as VisionEncoder).forward(e.tensor(batch.pixels!, [2, 3, S, S]), {
        layer: 1,
      });
      const cb = cont.codebooks("semantic");
      return rqDecode(rqEncode(feats, cb, { depths: TINY.depths }), cb); // [B, N, Dc]
    })
  );
  const features = (await recon.read()) as Float32Array;
  recon.dispose();
  const byHand = await losses(e, cont, { ...batch, features });
  assertClose([byHand.text], [q.text], {
    atol: 1e-5,
    label: "quantized input = rqDecode output fed by hand",
  });
  await cont.dispose();
  await quant.dispose();
});

gpuTest("AsvrModel: a few AdamW steps on one batch reduce the total loss", async (e) => {
  const m = await AsvrModel.build(e, tinyConfig(CODEBOOKS), { seed: 4 });
  const params = m.trainableParams();
  const opt = new AdamW(params, { lr: 3e-3 });
  const batch = tinyBatch([true, false], 11);
  const totals: number[] = [], inUse: number[] = [];
  for (let step = 0; step < 6; step++) {
    const total = e.tidy(() => {
      const r = m.forward(batch);
      backward(r.total);
      opt.step();
      zeroGrad(params);
      return r.total;
    });
    totals.push((await total.read())[0]);
    total.dispose();
    inUse.push(e.pool.bytesInUse);
  }
  assert.ok(totals.every(Number.isFinite), `${totals}`);
  // Gradients and optimizer state exist from step 1 on; every intermediate is freed with its scope.
  assert.deepEqual(inUse.slice(1), new Array(5).fill(inUse[1]), `bytes in use per step: ${inUse}`);
  assert.ok(totals[5] < totals[0] - 0.05, `total ${totals.map((t) => t.toFixed(4)).join(" -> ")}`);
  await m.dispose();
});

gpuTest("AsvrModel: f16 storage with checkpointed LLM layers matches f32", async (e) => {
  if (!e.hasF16) return; // the adapter has no shader-f16
  const batch = tinyBatch([true, false], 13);
  for (const input of ["continuous", "quantized"]) {
    const cfg = cfgWith("encoder", { input });
    const m32 = await AsvrModel.build(e, cfg);
    const m16 = await AsvrModel.build(e, cfg, { dtype: "f16", checkpointLayers: true });
    const a = await losses(e, m32, batch), b = await losses(e, m16, batch, true);
    for (const k of Object.keys(a)) assertClose([b[k]], [a[k]], { atol: 3e-3, label: `${input} ${k}` });
    assert.ok(m16.params().get("model.mm_projector.0.weight")!.grad, "backward through checkpointed layers");
    await m32.dispose();
    await m16.dispose();
  }
});

gpuTest("AsvrModel: build and batch errors name the field and the fix", async (e) => {
  const narrow = await writeTinyCodebooks(dir, "narrow.safetensors", { dim: 16 });
  await assert.rejects(
    AsvrModel.build(e, tinyConfig(narrow)),
    /visualTokenizers\[0\]\.codebooks .*narrow\.safetensors holds 16-wide code vectors, but the encoder's features it quantizes are 32 wide/,
  );
  await assert.rejects(
    AsvrModel.build(e, cfgWith("head", { codebookDim: 16 })),
    /head\.codebookDim is 16 but the "semantic" codebooks .* hold 32-wide vectors; set head\.codebookDim to 32/,
  );
  const tok = tinyConfig(CODEBOOKS).visualTokenizers![0] as RqTokenizerConfigInput;
  await assert.rejects(
    AsvrModel.build(e, { ...tinyConfig(CODEBOOKS), visualTokenizers: [{ ...tok, codebookSize: 16 }] }),
    /visualTokenizers\[0\]\.codebookSize is 16 but .* holds 8 codes per codebook; set it to 8/,
  );
  await assert.rejects(
    AsvrModel.build(e, { ...tinyConfig(CODEBOOKS), visualTokenizers: [{ ...tok, layer: 2 }] }),
    /visualTokenizers\[0\]\.layer is 2 but .* was fit on layer 1 features; set it to 1/,
  );
  const m = await AsvrModel.build(e, { ...tinyConfig(CODEBOOKS), head: { kind: "none" } });
  const batch = tinyBatch([true, false]);
  assert.throws(
    () => m.forward({ ...batch, imagePositions: [batch.imagePositions[0].slice(1), []] }),
    /batch\.imagePositions\[0\] must be 16 contiguous ascending positions in \[0, 23\)/,
  );
  assert.throws(
    () => m.forward({ ...batch, imagePositions: [batch.imagePositions[0], [3]] }),
    /imagePositions\[1\] has 1 positions but row 1 has no image/,
  );
  const labels = batch.labels.slice();
  labels[3] = 5;
  assert.throws(
    () => m.forward({ ...batch, labels }),
    /batch\.labels\[0, 3\] is 5 at an image position; .* set -100/,
  );
  const ids = batch.inputIds.slice();
  ids[20] = 64;
  assert.throws(
    () => m.forward({ ...batch, inputIds: ids }),
    /batch\.inputIds\[0, 20\] is 64, outside the vocabulary \[0, 64\)/,
  );
  assert.throws(() => m.forward({ ...batch, pixels: null }), /batch\.pixels is null but row 0 has an image/);
  assert.throws(() => m.codebooks("pixel"), /no rq tokenizer named "pixel" \(rq tokenizers: "semantic"\)/);
  await m.dispose();
});
