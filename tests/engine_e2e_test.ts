/**
 * End-to-end checks of the engine: small models learn (their loss falls below what an untrained model
 * can reach), GPU memory stays flat across steps, and a step is one submit.
 */
import assert from "node:assert/strict";
import { assertClose, gpuTest } from "../core/testing.ts";
import { randn, rng } from "../core/random.ts";
import { backward, zeroGrad } from "../core/autograd.ts";
import { matmul } from "../core/kernels/matmul/matmul.ts";
import { gelu } from "../core/kernels/elementwise/elementwise.ts";
import { crossEntropy } from "../core/kernels/cross_entropy/cross_entropy.ts";
import { AdamW } from "../core/kernels/adamw/adamw.ts";
import { sumRuleBatch, TINY_LM, TinyLM, trainTinyLM } from "../examples/tiny_lm.ts";

/** Three interleaved spirals in 2-D: points [N, 2] and labels [N]. */
function spirals(n: number, seed: number): { x: Float32Array; y: Int32Array } {
  const r = rng(seed);
  const x = new Float32Array(n * 2), y = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const c = i % 3, t = r();
    const a = c * (2 * Math.PI / 3) + t * 3 + (r() - 0.5) * 0.2;
    x[2 * i] = t * Math.cos(a);
    x[2 * i + 1] = t * Math.sin(a);
    y[i] = c;
  }
  return { x, y };
}

gpuTest("e2e: a two-layer MLP learns three spirals (loss far below ln 3)", async (e) => {
  const H = 64, N = 192;
  const w1 = e.param(randn(H * 2, 1, 1), [H, 2]), b1 = e.param(new Float32Array(H), [H]);
  const w2 = e.param(randn(3 * H, 2, 1 / Math.sqrt(H)), [3, H]), b2 = e.param(new Float32Array(3), [3]);
  const params = [w1, b1, w2, b2];
  const opt = new AdamW(params, { lr: 0.02 });
  const { x, y } = spirals(N, 5);
  const xs = e.tensor(x, [N, 2]), ys = e.tensor(y, [N], "i32");
  let first = 0, last = 0;
  for (let step = 0; step < 250; step++) {
    const loss = e.tidy(() => {
      const h = gelu(matmul(xs, w1, { transB: true, bias: b1 }), "tanh");
      const l = crossEntropy(matmul(h, w2, { transB: true, bias: b2 }), ys);
      backward(l);
      opt.step();
      zeroGrad(params);
      return l;
    });
    if (step === 0 || step === 249) {
      const v = (await loss.read())[0];
      if (step === 0) first = v;
      else last = v;
    }
    loss.dispose();
  }
  assert.ok(first > 0.9, `untrained loss ${first} should be near ln 3 = 1.0986`);
  assert.ok(last < 0.35, `trained loss ${last} should fall below 0.35`);
  for (const t of [...params, xs, ys]) t.dispose();
});

gpuTest("e2e: a causal transformer block learns a rule that needs attention", async (e) => {
  const { losses, model } = await trainTinyLM(e, TINY_LM, {
    steps: 150,
    batch: 16,
    seqLen: 10,
    lr: 1e-2,
    seed: 3,
  });
  const uniform = Math.log(TINY_LM.vocab);
  assert.ok(losses[0] > 0.8 * uniform, `untrained loss ${losses[0]} should be near ln V = ${uniform}`);
  const tail = losses.slice(-10).reduce((a, b) => a + b, 0) / 10;
  assert.ok(tail < 0.25 * uniform, `trained loss ${tail} should fall below ${0.25 * uniform}`);
  for (const p of model.params()) p.dispose();
});

gpuTest(
  "e2e: memory is flat across steps; a step submits once per maxPendingDispatches dispatches (with checkpointing)",
  async (e) => {
    const cfg = { ...TINY_LM, layers: 2, checkpointBlocks: true };
    const model = new TinyLM(e, cfg, 7);
    const opt = new AdamW(model.params(), { lr: 1e-3 });
    const inUse: number[] = [], submits: number[] = [], dispatches: number[] = [];
    for (let step = 1; step <= 20; step++) {
      const { ids, targets } = sumRuleBatch(4, 8, cfg.vocab, step);
      const before = e.stats.submits, dispatched = e.stats.dispatches;
      const loss = e.tidy(() => {
        const l = model.loss(e.tensor(ids, [4, 8], "i32"), e.tensor(targets, [32], "i32"));
        backward(l);
        opt.step();
        zeroGrad(model.params());
        return l;
      });
      const value = (await loss.read())[0];
      loss.dispose();
      assert.ok(Number.isFinite(value));
      submits.push(e.stats.submits - before);
      dispatches.push(e.stats.dispatches - dispatched);
      inUse.push(e.pool.bytesInUse);
    }
    assert.equal(
      inUse[19],
      inUse[1],
      `bytes in use after step 20 (${inUse[19]}) != after step 2 (${inUse[1]})`,
    );
    // The host submits as it goes (the GPU starts early), and waits once, at the read.
    const expected = dispatches.map((d) => Math.ceil(d / e.maxPendingDispatches));
    assert.ok(
      submits.every((s, i) => s <= expected[i] + 1 && s >= 1),
      `submits ${submits}, dispatches ${dispatches}`,
    );
    assert.ok(submits.every((s) => s === submits[1]), `the same submits every step: ${submits}`);
    assert.equal(e.tape.length, 0);
    for (const p of model.params()) p.dispose();
  },
);

gpuTest("e2e: gradient checkpointing gives the same gradients as keeping activations", async (e) => {
  const { ids, targets } = sumRuleBatch(3, 9, TINY_LM.vocab, 11);
  const grads: Float32Array[][] = [];
  for (const checkpointBlocks of [false, true]) {
    const model = new TinyLM(e, { ...TINY_LM, layers: 2, checkpointBlocks }, 5);
    e.tidy(() => backward(model.loss(e.tensor(ids, [3, 9], "i32"), e.tensor(targets, [27], "i32"))));
    grads.push(await Promise.all(model.params().map(async (p) => Float32Array.from(await p.grad!.read()))));
    for (const p of model.params()) p.dispose();
  }
  assert.equal(grads[0].length, grads[1].length);
  grads[0].forEach((g, i) => assertClose(grads[1][i], g, { atol: 1e-6, rtol: 1e-5, label: `param ${i}` }));
});
