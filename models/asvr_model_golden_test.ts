/**
 * Parity with PyTorch for the whole ASVR loss: tests/golden/make_golden.py's `asvr_vlm` fixture, a
 * tiny composed VLM (SigLIP 28 px / patch 7 -> N = 16 patches of width 32, 3 layers; mlp2x_gelu
 * projector; LLaMA width 32, 2 layers, GQA 2:1, V 64; an rq tokenizer on the same encoder's layer 1,
 * D = 2 depths of K = 8; an asvr_depth head of width 32, 1 layer), computed in f64 from f32 values.
 * The batch: row 0 holds an image at positions 1..16, row 1 is text-only (masked out of the visual
 * loss). The model is built from the fixture's config.json with random init, then the fixture's
 * parameters are loaded over it by name and its codebooks written into `model.codebooks("semantic")`.
 *
 * Errors are relative to the reference tensor's largest magnitude (max |ours - ref| / max |ref|):
 * the encoder features and the three loss terms within 1e-5, every trainable parameter's gradient
 * within 1e-4, the RQ codes exactly (the fixture's choices win by >= 1e-3 relative). Measured on
 * lavapipe: features <= 5.5e-7, losses <= 1e-7, gradients <= 3.7e-6 (worst:
 * `model.layers.0.self_attn.o_proj.weight`); the reference is f64, so this is our f32 rounding.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { backward } from "../core/autograd.ts";
import type { Engine } from "../core/engine.ts";
import { gpuTest } from "../core/testing.ts";
import type { VisionEncoder } from "../encoders/vit.ts";
import { readJsonFile } from "../io/json.ts";
import { loadParams } from "../io/params.ts";
import { Checkpoint } from "../io/safetensors.ts";
import { rqEncode } from "../tokenizers/rq.ts";
import type { RqTokenizerConfig } from "../tokenizers/visual_config.ts";
import { type AsvrBatch, AsvrModel, PARAM_PREFIXES } from "./asvr_model.ts";
import { parseConfig, type VisionEncoderSlotConfig } from "./config.ts";
import { writeTinyCodebooks } from "./testing.ts";

const DIR = join(import.meta.dirname!, "..", "tests", "golden", "fixtures", "asvr_vlm");

/** A tensor of golden.safetensors: F32 as Float32Array, I64 as Int32Array. */
interface Stored {
  data: Float32Array | Int32Array;
  shape: number[];
}

/** golden.safetensors, whole (it is small). */
async function readGolden(): Promise<Map<string, Stored>> {
  const ckpt = await Checkpoint.open(join(DIR, "golden.safetensors"));
  try {
    const out = new Map<string, Stored>();
    for (const n of ckpt.names()) {
      out.set(n, { data: (await ckpt.read(n)) as Float32Array | Int32Array, shape: ckpt.info(n).shape });
    }
    return out;
  } finally {
    ckpt.close();
  }
}

function stored(g: Map<string, Stored>, name: string): Stored {
  const t = g.get(name);
  if (!t) throw new Error(`tests/golden/fixtures/asvr_vlm/golden.safetensors has no "${name}"`);
  return t;
}

/** The fixture's batch as {@linkcode AsvrModel.forward} takes it. */
function fixtureBatch(g: Map<string, Stored>): AsvrBatch {
  const ids = stored(g, "input_ids"), pos = stored(g, "image_positions");
  const [B, N] = pos.shape;
  const hasImage = Array.from(stored(g, "has_image").data, (v) => v === 1);
  const imagePositions = hasImage.map((has, b) =>
    has ? Array.from(pos.data.subarray(b * N, (b + 1) * N)) : []
  );
  assert.equal(ids.shape[0], B);
  return {
    inputIds: ids.data as Int32Array,
    labels: stored(g, "labels").data as Int32Array,
    imagePositions,
    pixels: stored(g, "pixel_values").data as Float32Array,
    hasImage,
  };
}

/** max |a - b| / max |b|. */
function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length, "lengths differ");
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    num = Math.max(num, Number.isNaN(d) ? Infinity : d);
    den = Math.max(den, Math.abs(b[i]));
  }
  return num / Math.max(den, 1e-30);
}

function assertRel(label: string, a: ArrayLike<number>, b: ArrayLike<number>, tol: number): number {
  const err = relErr(a, b);
  assert.ok(err <= tol, `${label}: relative error ${err.toExponential(2)} > ${tol}`);
  return err;
}

/**
 * The fixture's model: built from config.json (random init, codebooks from a temporary random file
 * of the right sizes), then the fixture's parameters loaded (every name, nothing left over) and its
 * codebooks written over the random ones.
 */
async function fixtureModel(e: Engine, g: Map<string, Stored>, tmp: string): Promise<AsvrModel> {
  const raw = await readJsonFile(join(DIR, "config.json"), "the asvr_vlm fixture config");
  const parsed = parseConfig(raw, "asvr_vlm/config.json");
  const tok = parsed.visualTokenizers[0] as RqTokenizerConfig;
  const enc = parsed.encoder as VisionEncoderSlotConfig;
  const books = stored(g, "codebooks");
  const [D, K, Dc] = books.shape;
  assert.deepEqual([tok.depths, tok.codebookSize, enc.config!.hiddenSize], [D, K, Dc]);
  const path = await writeTinyCodebooks(tmp, "semantic.safetensors", {
    depths: D,
    codes: K,
    dim: Dc,
    layer: tok.layer as number,
  });
  const cfg = { ...parsed, visualTokenizers: [{ ...tok, codebooks: path }] };
  const model = await AsvrModel.build(e, cfg, { seed: 5 });
  const ckpt = await Checkpoint.open(join(DIR, "model.safetensors"));
  try {
    await loadParams(model.params(), ckpt); // strict: a missing or a left-over name throws
  } finally {
    ckpt.close();
  }
  const cb = model.codebooks("semantic");
  const before = await cb.read();
  assert.ok(relErr(before, books.data) > 0.1, "the temporary codebooks differ from the fixture's");
  e.write(cb, books.data);
  assert.deepEqual(await cb.read(), books.data, "codebooks written");
  return model;
}

gpuTest(
  "AsvrModel f32 matches PyTorch (asvr_vlm): text, visual and total loss, every gradient",
  async (e) => {
    const g = await readGolden();
    const tmp = await Deno.makeTempDir({ prefix: "asvr_model_golden_" });
    const model = await fixtureModel(e, g, tmp).finally(() => Deno.remove(tmp, { recursive: true }));
    const batch = fixtureBatch(g);
    const B = batch.hasImage.length, S = (model.encoder as VisionEncoder).cfg.imageSize;

    // Where a mismatch would come from: the frozen features and the tokenizer's codes.
    const enc = model.encoder as VisionEncoder, encCfg = model.cfg.encoder as VisionEncoderSlotConfig;
    const tok = model.cfg.visualTokenizers[0] as RqTokenizerConfig;
    const frozen = e.tidy(() =>
      e.noGrad(() => {
        const px = e.tensor(batch.pixels!, [B, 3, S, S]);
        const fTok = enc.forward(px, { layer: tok.layer as number });
        return {
          fIn: enc.forward(px, { layer: encCfg.layer }),
          fTok,
          codes: rqEncode(fTok, model.codebooks("semantic"), { depths: tok.depths }),
        };
      })
    );
    assertRel("features.projector", await frozen.fIn.read(), stored(g, "features.projector").data, 1e-5);
    assertRel("features.tokenizer", await frozen.fTok.read(), stored(g, "features.tokenizer").data, 1e-5);
    const codes = await frozen.codes.read(), want = stored(g, "codes").data;
    const imageRows = batch.hasImage.flatMap((h, b) => (h ? [b] : []));
    const per = want.length / B;
    for (const b of imageRows) {
      assert.deepEqual(
        codes.subarray(b * per, (b + 1) * per),
        want.subarray(b * per, (b + 1) * per),
        `codes row ${b}`,
      );
    }
    for (const t of Object.values(frozen)) t.dispose();

    // The loss and its gradients.
    const terms = e.tidy(() => {
      const r = model.forward(batch);
      backward(r.total);
      return r.terms;
    });
    assert.deepEqual(Object.keys(terms).sort(), ["text", "total", "visual_semantic"]);
    const value = async (k: string) => (await terms[k].read())[0];
    const got = {
      text: await value("text"),
      visual: await value("visual_semantic"),
      total: await value("total"),
    };
    for (const t of new Set(Object.values(terms))) t.dispose();
    for (const k of ["text", "visual", "total"] as const) {
      assertRel(`loss.${k}`, [got[k]], stored(g, `loss.${k}`).data, 1e-5);
    }

    let trainable = 0;
    for (const [name, p] of model.params()) {
      const ref = g.get(`grad.${name}`);
      if (!p.requiresGrad) {
        assert.equal(p.grad, null, `${name} is frozen: no gradient`);
        assert.equal(ref, undefined, `${name} is frozen here but has a gradient in the fixture`);
        assert.ok(
          name.startsWith(PARAM_PREFIXES.encoder) ||
            /^visual_head\.head_transformer\.\d+\.linear[12]\.bias$/.test(name),
          `${name}: only the encoder and the head's unused FFN biases are frozen`,
        );
        continue;
      }
      trainable++;
      assert.ok(ref, `${name} trains but the fixture has no grad.${name}`);
      assert.ok(p.grad, `${name} got no gradient`);
      assertRel(`grad.${name}`, await p.grad.read(), ref.data, 1e-4);
    }
    const refGrads = [...g.keys()].filter((k) => k.startsWith("grad.")).length;
    assert.equal(trainable, refGrads, "every gradient of the fixture belongs to a trainable parameter");
    assert.ok(trainable > 40, `${trainable} trainable parameters compared`);
    await model.dispose();
  },
);
