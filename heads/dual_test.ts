import assert from "node:assert/strict";
import { backward, zeroGrad } from "../core/autograd.ts";
import { AdamW } from "../core/kernels/adamw/adamw.ts";
import { assertClose, gpuTest, randInt, randn } from "../core/testing.ts";
import { buildHead } from "./mod.ts";
import { parseHeadConfig } from "./mod.ts";
import { DualHead } from "./dual.ts";
import type { VisualTargets } from "./head.ts";

const B = 2, N = 3, DL = 8, D = 2, K = 5, DC = 4;

gpuTest("DualHead: both terms reported, total is their sum, and a few AdamW steps reduce both", async (e) => {
  const cfg = parseHeadConfig({
    kind: "dual",
    appearance: { kind: "linear", width: 8, depths: D, codebookSizes: [K, K] },
    semantic: {
      kind: "asvr_depth",
      width: 8,
      heads: 1,
      layers: 1,
      depths: D,
      codebookSizes: [K, K],
      codebookDim: DC,
    },
  }, "head");
  const head = buildHead(e, cfg, { llmWidth: DL, seed: 3 }) as DualHead;
  assert.ok(head instanceof DualHead);
  assert.equal(head.appearance.kind, "linear");
  assert.equal(head.semantic.kind, "asvr_depth");
  const names = [...head.params().keys()];
  assert.ok(
    names.includes("appearance.proj.weight") && names.includes("semantic.in_mlp_1.weight"),
    names.join(),
  );
  assert.ok(names.every((n) => n.startsWith("appearance.") || n.startsWith("semantic.")));

  const h = e.tensor(randn(B * N * DL, 1), [B, N, DL]);
  const targets: VisualTargets = {
    pixel: { codes: e.tensor(randInt(B * N * D, K, 2), [B, N, D], "i32"), codebooks: e.zeros([D, K, DC]) },
    semantic: {
      codes: e.tensor(randInt(B * N * D, K, 3), [B, N, D], "i32"),
      codebooks: e.tensor(randn(D * K * DC, 4), [D, K, DC]),
    },
  };
  const keep = [h, ...Object.values(targets).flatMap((t) => [t.codes, t.codebooks])];
  for (const t of keep) e.untrack(t);

  const params = [...head.params().values()];
  const opt = new AdamW(params, { lr: 2e-2 });
  const steps: { total: number; pixel: number; semantic: number }[] = [];
  for (let step = 0; step < 5; step++) {
    const out = e.tidy(() => {
      const out = head.loss(h, targets);
      backward(out.total);
      opt.step();
      zeroGrad(params);
      return out;
    });
    assert.deepEqual(Object.keys(out.terms).sort(), ["visual_pixel", "visual_semantic"]);
    const [total, pixel, semantic] = await Promise.all(
      [out.total, out.terms.visual_pixel, out.terms.visual_semantic].map(async (t) => (await t.read())[0]),
    );
    steps.push({ total, pixel, semantic });
    for (const t of [out.total, ...Object.values(out.terms)]) t.dispose();
  }
  for (const s of steps) {
    assertClose([s.total], [s.pixel + s.semantic], { atol: 1e-6, rtol: 1e-6, label: "total" });
  }
  const [first, last] = [steps[0], steps.at(-1)!];
  assert.ok(
    last.pixel < first.pixel - 0.1,
    `pixel loss did not fall: ${steps.map((s) => s.pixel.toFixed(3))}`,
  );
  assert.ok(
    last.semantic < first.semantic - 0.1,
    `semantic loss did not fall: ${steps.map((s) => s.semantic.toFixed(3))}`,
  );
  // Missing targets: the side that needs them says which.
  assert.throws(
    () => e.tidy(() => head.loss(h, { semantic: targets.semantic })),
    /LinearHead\.loss: targets has no "pixel" entry/,
  );
  for (const t of [...keep, ...params]) t.dispose();
});
