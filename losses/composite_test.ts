import assert from "node:assert/strict";
import { backward } from "../core/autograd.ts";
import { mul } from "../core/kernels/elementwise/elementwise.ts";
import { assertClose, gpuTest } from "../core/testing.ts";
import { combineLosses } from "./composite.ts";

gpuTest(
  "combineLosses: total = textWeight * text + visualWeight * sum of visual terms, and its gradient",
  async (e) => {
    const a = e.param([2], [1]), b = e.param([3], [1]), c = e.param([-1], [1]);
    await e.tidy(async () => {
      // text = a^2 = 4, semantic = b^2 = 9, pixel = c^2 = 1
      const text = mul(a, a), semantic = mul(b, b), pixel = mul(c, c);
      const { total, terms } = combineLosses(
        { text, visual: { visual_semantic: semantic, visual_pixel: pixel } },
        { textWeight: 0.5, visualWeight: 2 },
      );
      assert.deepEqual(Object.keys(terms).sort(), ["text", "total", "visual_pixel", "visual_semantic"]);
      assert.equal(terms.text, text);
      assert.equal(terms.visual_semantic, semantic);
      assert.equal(terms.total, total);
      assertClose(await total.read(), [0.5 * 4 + 2 * (9 + 1)]);
      backward(total);
    });
    // d total / d a = 0.5 * 2a, d / d b = 2 * 2b, d / d c = 2 * 2c
    assertClose(await a.grad!.read(), [2]);
    assertClose(await b.grad!.read(), [12]);
    assertClose(await c.grad!.read(), [-4]);
    for (const p of [a, b, c]) p.dispose();
  },
);

gpuTest("combineLosses: a zero weight reports the term but leaves it out of the total", async (e) => {
  const a = e.param([2], [1]), b = e.param([3], [1]);
  await e.tidy(async () => {
    const text = mul(a, a), semantic = mul(b, b);
    const { total, terms } = combineLosses({ text, visual: { visual_semantic: semantic } }, {
      textWeight: 1,
      visualWeight: 0,
    });
    assert.equal(total, text, "a single term of weight 1 is the total itself");
    assertClose(await terms.visual_semantic.read(), [9]);
    backward(total);
  });
  assertClose(await a.grad!.read(), [4]);
  assert.equal(b.grad, null, "no gradient reaches a term of weight 0");
  // The text-only baseline: no visual terms at all.
  await e.tidy(async () => {
    const { total, terms } = combineLosses({ text: mul(a, a) }, { textWeight: 3, visualWeight: 1 });
    assert.deepEqual(Object.keys(terms).sort(), ["text", "total"]);
    assertClose(await total.read(), [12]);
  });
  for (const p of [a, b]) p.dispose();
});

gpuTest("combineLosses: errors for no weighted term and for a non-scalar term", (e) => {
  const w = { textWeight: 1, visualWeight: 1 };
  assert.throws(() => combineLosses({}, w), /no term enters the total \(terms given: none/);
  const s = e.tensor([1], []);
  assert.throws(
    () => combineLosses({ visual: { visual_semantic: s } }, { textWeight: 1, visualWeight: 0 }),
    /terms given: visual_semantic; textWeight 1, visualWeight 0/,
  );
  assert.throws(
    () => combineLosses({ text: e.tensor([1, 2], [2]) }, w),
    /term text must be an f32 scalar, got f32\[2\]/,
  );
  assert.throws(
    () => combineLosses({ text: s, visual: { visual_pixel: e.tensor([1], [1], "i32") } }, w),
    /term visual_pixel must be an f32 scalar/,
  );
  assert.throws(
    () => combineLosses({ text: s, visual: { total: s } }, w),
    /a visual term may not be called "total"/,
  );
});
