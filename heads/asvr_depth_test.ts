import assert from "node:assert/strict";
import { AdamW } from "../core/kernels/adamw/adamw.ts";
import { backward, zeroGrad } from "../core/autograd.ts";
import type { Engine } from "../core/engine.ts";
import type { Tensor } from "../core/tensor.ts";
import { assertClose, gpuTest, randInt, randn } from "../core/testing.ts";
import { AsvrDepthHead } from "./asvr_depth.ts";
import { asvrDepthLossCpu } from "./asvr_depth_cpu.ts";
import { type AsvrDepthHeadConfig, parseHeadConfig } from "./mod.ts";
import type { VisualTargets } from "./head.ts";

// Tiny sizes: B images of N patches, LLM width DL, head width C (2 heads of 8), D depths, K codes.
const B = 2, N = 3, DL = 12, D = 3, K = 7, DC = 5;
const SIZES = [7, 5, 9]; // V_d: depth 2 has more classes than the codebook has entries

function config(over: Record<string, unknown> = {}): AsvrDepthHeadConfig {
  return parseHeadConfig({
    kind: "asvr_depth",
    width: 16,
    heads: 2,
    layers: 2,
    depths: D,
    codebookSizes: SIZES,
    codebookDim: DC,
    ...over,
  }, "head") as AsvrDepthHeadConfig;
}

/** Overwrites every trained param with random values of a useful scale (the fresh init is too tame). */
function randomize(e: Engine, head: AsvrDepthHead, seed: number): void {
  let s = seed;
  for (const [name, t] of head.params()) {
    if (!t.requiresGrad) continue;
    const norm = name.endsWith("layernorm1.weight") || name.endsWith("layernorm2.weight") ||
      name === "headnorm.weight";
    const data = randn(t.size, ++s, norm ? 0.1 : name.endsWith("bias") ? 0.1 : 0.3);
    if (norm) { for (let i = 0; i < data.length; i++) data[i] += 1; }
    e.write(t, data);
  }
}

function inputs(seed: number) {
  const hidden = randn(B * N * DL, seed);
  const codes = randInt(B * N * D, K, seed + 1);
  codes[2 * D + 1] = 8; // a class id that exists at depth 1? no: V_1 = 5, so 8 does not count...
  codes[2 * D + 2] = 8; // ... while at depth 2 (V_2 = 9) it counts, and has no codebook row (K = 7)
  for (let d = 0; d < D; d++) codes[4 * D + d] = -100; // patch 4 fully masked
  codes[1 * D + 2] = -100; // one masked last-depth code
  const books = randn(D * K * DC, seed + 2);
  return { hidden, codes, books };
}

function targetsOf(e: Engine, codes: Int32Array, books: Float32Array): VisualTargets {
  return {
    semantic: { codes: e.tensor(codes, [B, N, D], "i32"), codebooks: e.tensor(books, [D, K, DC]) },
  };
}

async function hostParams(head: AsvrDepthHead): Promise<Map<string, Float32Array>> {
  const out = new Map<string, Float32Array>();
  for (const [n, t] of head.params()) out.set(n, (await t.read()) as Float32Array);
  return out;
}

function disposeHead(head: { params(): Map<string, Tensor> }): void {
  for (const t of head.params().values()) t.dispose();
}

gpuTest(
  "AsvrDepthHead f32: loss and states match the CPU reference (masked and out-of-range codes)",
  async (e) => {
    const cfg = config();
    const head = AsvrDepthHead.create(e, cfg, { llmWidth: DL, seed: 1 });
    randomize(e, head, 10);
    const { hidden, codes, books } = inputs(3);
    const ref = asvrDepthLossCpu({
      cfg,
      params: await hostParams(head),
      hidden,
      B,
      N,
      llmWidth: DL,
      codes,
      codebooks: books,
      K,
    });
    const [loss, states] = await e.tidy(() =>
      e.noGrad(async () => {
        const h = e.tensor(hidden, [B, N, DL]);
        const t = targetsOf(e, codes, books);
        const out = head.loss(h, t);
        assert.deepEqual(Object.keys(out.terms), ["visual_semantic"]);
        return [(await out.total.read())[0], await head.states(h, t).read()];
      })
    );
    assert.ok(
      ref.loss > 0.5 && ref.depthLosses.every((l) => l > 0),
      `reference loss ${ref.loss} is degenerate`,
    );
    assertClose(states, ref.states, { atol: 2e-5, rtol: 1e-4, label: "states" });
    assertClose([loss], [ref.loss], { atol: 1e-5, rtol: 1e-5, label: "loss" });
    disposeHead(head);
  },
);

gpuTest(
  "AsvrDepthHead: checkpointed layers and small CE chunks give the same loss and gradients",
  async (e) => {
    const { hidden, codes, books } = inputs(5);
    const run = async (over: Record<string, unknown>) => {
      const head = AsvrDepthHead.create(e, config(over), { llmWidth: DL, seed: 2 });
      randomize(e, head, 20);
      const h = e.param(hidden, [B, N, DL]);
      const loss = await e.tidy(async () => {
        const l = head.loss(h, targetsOf(e, codes, books)).total;
        backward(l);
        return (await l.read())[0];
      });
      const grads = new Map<string, Float32Array>([["hidden", (await h.grad!.read()) as Float32Array]]);
      for (const [n, t] of head.params()) if (t.grad) grads.set(n, (await t.grad.read()) as Float32Array);
      disposeHead(head);
      h.dispose();
      return { loss, grads };
    };
    const a = await run({ checkpointLayers: false });
    const b = await run({ checkpointLayers: true, chunkRows: 2 });
    assertClose([b.loss], [a.loss], { atol: 1e-6, rtol: 1e-5, label: "loss" });
    assert.deepEqual([...b.grads.keys()].sort(), [...a.grads.keys()].sort());
    for (const [n, g] of a.grads) assertClose(b.grads.get(n)!, g, { atol: 1e-6, rtol: 1e-4, label: n });
    // The masked patch (row 4) gets no gradient at all: every one of its targets is -100.
    const gh = a.grads.get("hidden")!;
    assert.ok(gh.slice(4 * DL, 5 * DL).every((v) => v === 0), "masked patch has a gradient");
    assert.ok(gh.slice(0, DL).some((v) => v !== 0), "supervised patch has no gradient");
  },
);

gpuTest("AsvrDepthHead: frozen codebooks and the unused FFN biases get no gradient", async (e) => {
  const head = AsvrDepthHead.create(e, config(), { llmWidth: DL, seed: 3 });
  const { hidden, codes, books } = inputs(7);
  const codebooks = e.param(books, [D, K, DC], { name: "codebooks" });
  codebooks.requiresGrad = false;
  e.tidy(() => {
    const l = head.loss(e.tensor(hidden, [B, N, DL]), {
      semantic: { codes: e.tensor(codes, [B, N, D], "i32"), codebooks },
    }).total;
    backward(l);
  });
  assert.equal(codebooks.grad, null);
  assertClose(await codebooks.read(), books, { atol: 0, rtol: 0, label: "codebooks unchanged" });
  const p = head.params();
  for (let i = 0; i < 2; i++) {
    for (const n of [`head_transformer.${i}.linear1.bias`, `head_transformer.${i}.linear2.bias`]) {
      const t = p.get(n)!;
      assert.equal(t.requiresGrad, false, n);
      assert.equal(t.grad, null, `${n} got a gradient`);
      assert.ok((await t.read()).every((v) => v === 0), `${n} is not zero`);
    }
  }
  // Every other parameter is trained.
  for (const [n, t] of p) {
    if (n.endsWith("linear1.bias") || n.endsWith("linear2.bias")) continue;
    assert.ok(t.grad, `${n} got no gradient`);
  }
  assert.equal(p.get("head_transformer.0.linear1.weight")!.shape.join(), [32, D * 16].join());
  assert.equal(p.get("head_transformer.0.linear2.weight")!.shape.join(), [16, D * 32].join());
  assert.equal(p.get("head_transformer.1.self_attention.in_proj_weight")!.shape.join(), [48, 16].join());
  assert.equal(p.get("heads.2.weight")!.shape.join(), [9, 16].join());
  codebooks.dispose();
  disposeHead(head);
});

gpuTest("AsvrDepthHead: a few AdamW steps on fixed inputs reduce the visual loss", async (e) => {
  const head = AsvrDepthHead.create(e, config(), { llmWidth: DL, seed: 4 });
  const { hidden, codes, books } = inputs(9);
  const h = e.tensor(hidden, [B, N, DL]);
  const t = targetsOf(e, codes, books);
  for (const x of [h, t.semantic.codes, t.semantic.codebooks]) e.untrack(x);
  const params = [...head.params().values()];
  const opt = new AdamW(params, { lr: 1e-2 });
  const losses: number[] = [];
  for (let step = 0; step < 6; step++) {
    const l = e.tidy(() => {
      const l = head.loss(h, t).total;
      backward(l);
      opt.step();
      zeroGrad(params);
      return l;
    });
    losses.push((await l.read())[0]);
    l.dispose();
  }
  assert.ok(losses.at(-1)! < losses[0] - 0.2, `loss did not fall: ${losses.map((v) => v.toFixed(3))}`);
  for (const x of [h, t.semantic.codes, t.semantic.codebooks]) x.dispose();
  disposeHead(head);
});

gpuTest("AsvrDepthHead: bad inputs are refused with the field and the fix", (e) => {
  const head = AsvrDepthHead.create(e, config(), { llmWidth: DL });
  const { codes, books } = inputs(11);
  e.tidy(() => {
    const t = targetsOf(e, codes, books);
    assert.throws(() => head.loss(e.zeros([B, N, DL + 1]), t), /hidden is f32\[2,3,13\].*\[B, N, 12\]/);
    assert.throws(() => head.loss(e.zeros([B, N, DL]), { pixel: t.semantic }), /no "semantic" entry.*pixel/);
    assert.throws(
      () => head.loss(e.zeros([B, N, DL]), { semantic: { ...t.semantic, codes: e.zeros([B, N, D]) } }),
      /targets\.semantic\.codes is f32\[2,3,3\]; it must be i32\[2,3,3\]/,
    );
    assert.throws(
      () =>
        head.loss(e.zeros([B, N, DL]), { semantic: { ...t.semantic, codebooks: e.zeros([D, K, DC + 1]) } }),
      /codebooks is f32\[3,7,6\]; it must be f32 or f16 \[3, K, 5\]/,
    );
  });
  disposeHead(head);
});
