import assert from "node:assert/strict";
import { gpuTest } from "../../core/testing.ts";
import { Decoder } from "../../backbones/decoder.ts";
import type { LlmConfig } from "../../backbones/config.ts";
import { padBatch, pretrainLlm, tinyLlmConfig } from "./pretrain_llm.ts";

const V = 16;
/** A smaller model than the default, for speed on a software adapter. */
const CFG: LlmConfig = {
  ...tinyLlmConfig(V),
  vocabSize: V,
  hiddenSize: 32,
  intermediateSize: 64,
  numLayers: 1,
  numHeads: 2,
  numKvHeads: 2,
  headDim: 16,
};

/** A repeating corpus: the cycle 1..8 (then 1 again) from every start, of lengths 6 to 12. */
function cycles(): number[][] {
  const out: number[][] = [];
  for (let start = 0; start < 8; start++) {
    for (let len = 6; len <= 12; len += 3) {
      out.push(Array.from({ length: len }, (_, t) => 1 + (start + t) % 8));
    }
  }
  return out;
}

Deno.test("tinyLlmConfig: the vocabulary rounded up to a multiple of 64", () => {
  assert.equal(tinyLlmConfig(595).vocabSize, 640);
  assert.equal(tinyLlmConfig(640).vocabSize, 640);
  assert.equal(tinyLlmConfig(1).vocabSize, 64);
});

Deno.test("padBatch: right-pads ids with the pad id and labels with -100", () => {
  const { ids, labels, shape } = padBatch([[5, 6, 7], [8], [9, 10]], 0);
  assert.deepEqual(shape, [3, 3]);
  assert.deepEqual([...ids], [5, 6, 7, 8, 0, 0, 9, 10, 0]);
  assert.deepEqual([...labels], [5, 6, 7, 8, -100, -100, 9, 10, -100]);
});

gpuTest(
  "pretrainLlm: the loss on a repeating corpus falls far below ln V; the saved folder reloads",
  async (e) => {
    const seqs = cycles();
    const { model, losses } = await pretrainLlm(e, seqs, { config: CFG, steps: 40, batch: 8, lr: 1e-2 });
    assert.equal(losses.length, 40);
    const uniform = Math.log(V);
    assert.ok(losses[0] > 0.9 * uniform, `untrained loss ${losses[0]} should be near ln V = ${uniform}`);
    const tail = losses.slice(-5).reduce((a, b) => a + b, 0) / 5;
    assert.ok(tail < 0.15 * uniform, `trained loss ${tail} should fall below ${0.15 * uniform}`);

    const dir = await Deno.makeTempDir({ prefix: "asvr_tiny_llm_" });
    try {
      await model.save(dir);
      const back = await Decoder.load(e, dir);
      assert.deepEqual(back.cfg, CFG);
      const ids = e.tensor([1, 2, 3, 4, 5, 6, 3, 4, 5, 6, 7, 8], [2, 6], "i32");
      const [a, b] = e.noGrad(() => [model, back].map((m) => m.logits(m.forward(m.embed(ids)))));
      const [la, lb] = [await a.read(), await b.read()];
      assert.equal(la.length, 2 * 6 * V);
      assert.deepEqual(lb, la, "reloaded logits differ");
      // Trained: after 1 2 3 4 5 the model predicts 6.
      const row = la.subarray(4 * V, 5 * V);
      assert.equal(row.indexOf(Math.max(...row)), 6);
      for (const t of [ids, a, b]) t.dispose();
      back.dispose();
    } finally {
      await Deno.remove(dir, { recursive: true });
      model.dispose();
    }
  },
);

gpuTest("pretrainLlm: bad sequences and options are refused naming the row and the fix", async (e) => {
  const opts = { config: CFG, steps: 1 };
  await assert.rejects(
    pretrainLlm(e, [[1, 2], [3, 16]], opts),
    /sequence 1, position 1 is 16; ids must be .* \[0, 16\)/,
  );
  await assert.rejects(pretrainLlm(e, [[1, 2], [3]], opts), /sequence 1 has 1 ids; each needs 2\.\.512/);
  await assert.rejects(pretrainLlm(e, [], opts), /no sequences/);
  await assert.rejects(pretrainLlm(e, [[1, 2]], { ...opts, padId: 16 }), /option padId is 16/);
  await assert.rejects(
    pretrainLlm(e, [[1, 2]], { ...opts, batch: 0 }),
    /option batch is 0; it must be an integer >= 1/,
  );
});
