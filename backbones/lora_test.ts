import assert from "node:assert/strict";
import { assertClose, gpuTest, randInt, randn } from "../core/testing.ts";
import { backward } from "../core/autograd.ts";
import { Engine } from "../core/engine.ts";
import type { Decoder } from "./decoder.ts";
import {
  LORA_TARGET_KEYS,
  LORA_TARGETS,
  LoraAdapters,
  loraParamNames,
  mergeLora,
  parseLoraConfig,
} from "./lora.ts";
import { layerParamName } from "./names.ts";
import { randomDecoder, tinyDecoderConfig } from "./testing.ts";

const [B, T] = [2, 5];

/** Logits [B, T, V] of `model` on fixed ids, read back. */
async function logitsOf(e: Engine, model: Decoder, ids: Int32Array): Promise<Float32Array> {
  const out = e.noGrad(() =>
    e.tidy(() => model.logits(model.forward(model.embed(e.tensor(ids, [B, T], "i32")))))
  );
  const v = Float32Array.from(await out.read());
  out.dispose();
  return v;
}

/** W + s * B A on the host: w [out, in], a [r, in], b [out, r]. */
function mergedOnHost(
  w: ArrayLike<number>,
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  r: number,
  s: number,
) {
  const inDim = a.length / r, out = b.length / r;
  const m = Float32Array.from(w);
  for (let o = 0; o < out; o++) {
    for (let i = 0; i < inDim; i++) {
      let acc = 0;
      for (let k = 0; k < r; k++) acc += b[o * r + k] * a[k * inDim + i];
      m[o * inDim + i] += s * acc;
    }
  }
  return m;
}

for (const arch of ["llama", "mistral", "qwen2"] as const) {
  gpuTest(
    `LoRA (${arch}): fresh pairs change nothing; trained ones equal merged weights, before and after mergeLora`,
    async (e) => {
      const cfg = tinyDecoderConfig(arch);
      const ids = randInt(B * T, cfg.vocabSize, 5);
      const model = randomDecoder(e, cfg, 3, 0.2);
      const reference = randomDecoder(e, cfg, 3, 0.2);
      const lora = LoraAdapters.create(
        e,
        cfg,
        parseLoraConfig({ rank: 3, alpha: 6, targets: [...LORA_TARGETS] }),
      );
      try {
        const base = await logitsOf(e, model, ids);
        model.setLora(lora);
        assert.deepEqual(await logitsOf(e, model, ids), base, "B = 0: the adapted model starts as the base");

        // Give every B values, merge on the host into the reference's weights.
        let seed = 40;
        for (let i = 0; i < cfg.numLayers; i++) {
          for (const target of LORA_TARGETS) {
            const key = LORA_TARGET_KEYS[target];
            const p = lora.pair(i, key)!;
            e.write(p.b, randn(p.b.size, seed++, 0.3));
            const w = reference.params().get(layerParamName(arch, key, i))!;
            e.write(w, mergedOnHost(await w.read(), await p.a.read(), await p.b.read(), 3, lora.scale));
          }
        }
        const merged = await logitsOf(e, reference, ids);
        const adapted = await logitsOf(e, model, ids);
        assert.ok(adapted.some((v, i) => Math.abs(v - base[i]) > 1e-3), "the pairs change the logits");
        assertClose(adapted, merged, { atol: 2e-5, label: "adapted forward vs merged weights" });

        // The cached path adds the pairs too.
        const cache = model.createCache();
        const hidden = e.noGrad(() =>
          e.tidy(() => model.logits(model.prefill(model.embed(e.tensor(ids, [B, T], "i32")), cache)))
        );
        assertClose(await hidden.read(), adapted, { atol: 2e-5, label: "prefill with LoRA" });
        hidden.dispose();
        cache.dispose();

        await mergeLora(model);
        assert.equal(model.lora, null);
        assertClose(await logitsOf(e, model, ids), merged, { atol: 2e-5, label: "after mergeLora" });
      } finally {
        model.dispose();
        reference.dispose();
        lora.dispose();
      }
    },
  );
}

gpuTest(
  "LoRA on a decoder whose weights are split over buffers: adapted and merged logits equal the whole one's",
  async (e) => {
    // 2 KiB bindings: [48, 32] weights split in 3, [32, 48] in 4, the [32, 32] embedding in 2.
    const small = await Engine.create({ limitOverrides: { maxStorageBufferBindingSize: 2048 } });
    try {
      const cfg = tinyDecoderConfig("llama");
      const ids = randInt(B * T, cfg.vocabSize, 6);
      const run = async (eng: Engine) => {
        const model = randomDecoder(eng, cfg, 3, 0.2);
        const lora = LoraAdapters.create(eng, cfg, parseLoraConfig({ rank: 2, targets: [...LORA_TARGETS] }));
        let seed = 60;
        for (const [n, t] of lora.params()) {
          if (n.endsWith("lora_B.weight")) eng.write(t, randn(t.size, seed++, 0.3)); // B starts at zero
        }
        model.setLora(lora);
        const adapted = await logitsOf(eng, model, ids);
        await mergeLora(model);
        const merged = await logitsOf(eng, model, ids);
        const pieces = model.params().get(layerParamName("llama", "wDown", 0))!.pieces.length;
        model.dispose();
        lora.dispose();
        return { adapted, merged, pieces };
      };
      const [split, whole] = [await run(small), await run(e)];
      assert.equal(split.pieces, 4);
      assert.equal(whole.pieces, 1);
      assertClose(split.adapted, whole.adapted, { atol: 2e-5, label: "adapted" });
      assertClose(split.merged, whole.merged, { atol: 2e-5, label: "merged" });
      assertClose(split.merged, split.adapted, { atol: 2e-5, label: "merged vs adapted, split" });
    } finally {
      await small.close();
    }
  },
);

gpuTest(
  "LoRA gradients: A and B against finite differences, with and without checkpointed layers; the frozen base gets none",
  async (e) => {
    const cfg = tinyDecoderConfig("llama");
    const model = randomDecoder(e, cfg, 8, 0.2);
    const lora = LoraAdapters.create(
      e,
      cfg,
      parseLoraConfig({ rank: 2, targets: ["q_proj", "down_proj"], seed: 1 }),
    );
    model.setLora(lora);
    const ids = randInt(B * T, cfg.vocabSize, 6), labels = randInt(B * T, cfg.vocabSize, 7);
    let s = 70;
    for (const [name, t] of lora.params()) {
      if (name.endsWith("lora_B.weight")) e.write(t, randn(t.size, s++, 0.3));
    }
    const loss = (checkpointLayers = false) =>
      model.lossFromLabels(
        model.logits(model.forward(model.embed(e.tensor(ids, [B, T], "i32")), { checkpointLayers })),
        e.tensor(labels, [B, T], "i32"),
      );
    try {
      // Checkpointed layers (the trainer's default) recompute the LoRA path in backward: same gradients.
      e.tidy(() => backward(loss(true)));
      const checkpointed = new Map<string, Float32Array>();
      for (const [name, t] of lora.params()) {
        checkpointed.set(name, Float32Array.from(await t.grad!.read()));
        t.grad!.dispose();
        t.grad = null;
      }
      e.tidy(() => backward(loss()));
      for (const [name, t] of lora.params()) {
        assertClose(await t.grad!.read(), checkpointed.get(name)!, {
          atol: 1e-6,
          label: `${name}, checkpointed`,
        });
      }
      for (const p of model.params().values()) assert.equal(p.grad, null, `${p.name} is frozen`);
      const eps = 1e-2;
      for (const [name, t] of lora.params()) {
        assert.ok(t.grad, `${name} has a gradient`);
        const grad = await t.grad!.read(), value = Float32Array.from(await t.read());
        for (const j of [0, Math.floor(t.size / 3), t.size - 1]) {
          const at = async (v: number) => {
            const x = value.slice();
            x[j] = v;
            e.write(t, x);
            const out = e.noGrad(() => e.tidy(() => loss()));
            const r = (await out.read())[0];
            out.dispose();
            return r;
          };
          const fd = (await at(value[j] + eps) - await at(value[j] - eps)) / (2 * eps);
          e.write(t, value);
          assert.ok(
            Math.abs(fd - grad[j]) <= 2e-3 + 2e-2 * Math.abs(fd),
            `${name}[${j}]: ${grad[j]} vs ${fd}`,
          );
        }
      }
    } finally {
      model.dispose();
      lora.dispose();
    }
  },
);

gpuTest("LoRA: PEFT names, and what setLora refuses", (e) => {
  const cfg = tinyDecoderConfig("llama");
  assert.deepEqual(loraParamNames(cfg, "wq", 1), {
    a: "base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight",
    b: "base_model.model.model.layers.1.self_attn.q_proj.lora_B.weight",
  });
  const lora = LoraAdapters.create(e, { ...cfg, hiddenSize: 16, headDim: 4 }, parseLoraConfig({ rank: 2 }));
  const model = randomDecoder(e, cfg, 1, 0.1);
  try {
    assert.throws(
      () => model.setLora(lora),
      /layer 0 wq: the pair is .*make the adapters from this decoder's config/,
    );
    assert.equal(model.lora, null);
  } finally {
    model.dispose();
    lora.dispose();
  }
});

Deno.test("parseLoraConfig: defaults, and errors that name the field", () => {
  assert.deepEqual(parseLoraConfig({}), {
    rank: 16,
    alpha: 32,
    targets: ["q_proj", "k_proj", "v_proj", "o_proj"],
    seed: 0,
  });
  assert.equal(parseLoraConfig({ rank: 8, alpha: 8 }).alpha, 8);
  assert.throws(
    () => parseLoraConfig({ rank: 0 }, "train.lora"),
    /train\.lora\.rank: .*expected number to be >=1 \(got 0\)/,
  );
  assert.throws(
    () => parseLoraConfig({ targets: ["qkv"] }),
    /lora\.targets\[0\]: .*one of "q_proj"\|"k_proj".* \(got "qkv"\)/,
  );
  assert.throws(
    () => parseLoraConfig({ targets: ["q_proj", "q_proj"] }),
    /lora\.targets: names a projection twice/,
  );
  assert.throws(
    () => parseLoraConfig({ ranks: 4 }),
    /lora\.ranks: unknown field; allowed fields: rank, alpha/,
  );
});

gpuTest(
  "LoRA at f16: f16 pairs on an f16 decoder follow the f32 ones; mixed dtypes are refused",
  async (e) => {
    if (!e.hasF16) throw new Error("this adapter lacks shader-f16; the f16 LoRA test needs it");
    const cfg = tinyDecoderConfig("llama");
    const ids = randInt(B * T, cfg.vocabSize, 9);
    const lora = parseLoraConfig({ rank: 2, alpha: 8, targets: ["q_proj", "up_proj"] });
    const models = [randomDecoder(e, cfg, 4, 0.2), randomDecoder(e, cfg, 4, 0.2, "f16")];
    const pairs = [LoraAdapters.create(e, cfg, lora), LoraAdapters.create(e, cfg, lora, "f16")];
    try {
      assert.throws(() => models[1].setLora(pairs[0]), /the pairs are f32, the decoder f16/);
      const base = await logitsOf(e, models[0], ids);
      const logits: Float32Array[] = [];
      for (const k of [0, 1]) {
        models[k].setLora(pairs[k]);
        let s = 90;
        for (const [name, t] of pairs[k].params()) {
          if (name.endsWith("lora_B.weight")) e.write(t, randn(t.size, s++, 0.3));
        }
        logits.push(await logitsOf(e, models[k], ids));
      }
      assert.ok(
        logits[0].some((v, i) => Math.abs(v - base[i]) > 0.2),
        "the pairs move the logits past the tolerance",
      );
      assertClose(logits[1], logits[0], { atol: 3e-2, rtol: 3e-2, label: "f16 vs f32 adapted logits" });
      await mergeLora(models[1]);
      assertClose(await logitsOf(e, models[1], ids), logits[0], {
        atol: 3e-2,
        rtol: 3e-2,
        label: "f16 merged",
      });
    } finally {
      for (const m of models) m.dispose();
      for (const p of pairs) p.dispose();
    }
  },
);
