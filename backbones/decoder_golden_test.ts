/**
 * Parity with PyTorch: the golden fixtures of tests/golden/make_golden.py (LLaMA, Mistral with a
 * sliding window of 5 < T = 12, Qwen2 with q/k/v biases and tied embeddings; B = 2, T = 12, C = 64,
 * 2 layers, NH 4, NKV 2, V 128), computed in f64 from f32 weights.
 *
 * Errors are relative to the largest magnitude of the reference tensor: max |ours - ref| / max |ref|
 * (elementwise relative error is meaningless for values near zero, which every gradient has).
 * - f32: logits, loss and every parameter gradient within 1e-4. Measured on lavapipe: logits
 *   <= 8e-7, loss <= 2e-7, gradients <= 2e-6 (the reference is f64, so this is our f32 rounding).
 * - f16 (weights rounded to f16 on load, f16 activations between kernels, f32 math inside each
 *   kernel): f16 keeps 11 significant bits (relative rounding up to 4.9e-4 per value), and each of
 *   the ~20 kernels per layer rounds its output again, so errors of a few 1e-3 are expected.
 *   Logits within 1e-2 (measured <= 2.2e-3), loss within 2e-3 (measured <= 1e-4), gradients within
 *   2e-2 (measured <= 5e-3).
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { backward } from "../core/autograd.ts";
import { gpuTest } from "../core/testing.ts";
import type { Engine } from "../core/engine.ts";
import { Checkpoint } from "../io/safetensors.ts";
import { Decoder, type DecoderDType } from "./decoder.ts";

const FIXTURES = join(import.meta.dirname!, "..", "tests", "golden", "fixtures");

/** max |a - b| / max |b|. */
function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length, "lengths differ");
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    num = Math.max(num, Number.isNaN(d) ? Infinity : d);
    den = Math.max(den, Math.abs(b[i]));
  }
  return num / den;
}

function assertRel(label: string, a: ArrayLike<number>, b: ArrayLike<number>, tol: number): void {
  const err = relErr(a, b);
  assert.ok(err <= tol, `${label}: relative error ${err.toExponential(2)} > ${tol}`);
}

/** Runs a fixture through the decoder: logits, loss and every parameter gradient. */
async function runFixture(e: Engine, name: string, dtype: DecoderDType) {
  const dir = join(FIXTURES, name);
  const model = await Decoder.load(e, dir, { dtype });
  const gold = await Checkpoint.open(join(dir, "golden.safetensors"));
  try {
    const [B, T] = gold.info("input_ids").shape;
    const ids = e.tensor(await gold.read("input_ids"), [B, T], "i32");
    const labels = e.tensor(await gold.read("labels"), [B, T], "i32");
    const { logits, loss } = e.tidy(() => {
      const logits = model.logits(model.forward(model.embed(ids))); // [B, T, V]
      const loss = model.lossFromLabels(logits, labels);
      backward(loss);
      return { logits, loss };
    });
    const out = {
      logits: await logits.read(),
      loss: (await loss.read())[0],
      goldLogits: await gold.read("logits"),
      goldLoss: (await gold.read("loss"))[0],
      grads: new Map<string, [ArrayLike<number>, ArrayLike<number>]>(),
    };
    for (const [pname, p] of model.params()) {
      assert.ok(p.grad, `${name}: ${pname} got no gradient`);
      out.grads.set(pname, [await p.grad.read(), await gold.read(`grad.${pname}`)]);
    }
    const goldGrads = gold.names().filter((n) => n.startsWith("grad."));
    assert.equal(out.grads.size, goldGrads.length, `${name}: parameter count differs from the fixture`);
    for (const t of [ids, labels, logits, loss]) t.dispose();
    return out;
  } finally {
    gold.close();
    model.dispose();
  }
}

for (const name of ["llama", "mistral", "qwen2"]) {
  gpuTest(`decoder golden ${name} f32: logits, loss and every gradient match PyTorch`, async (e) => {
    const r = await runFixture(e, name, "f32");
    assertRel(`${name} logits`, r.logits, r.goldLogits, 1e-4);
    assertRel(`${name} loss`, [r.loss], [r.goldLoss], 1e-4);
    for (const [pname, [ours, ref]] of r.grads) assertRel(`${name} grad ${pname}`, ours, ref, 1e-4);
  });
}

for (const name of ["llama", "mistral", "qwen2"]) {
  gpuTest(
    `decoder golden ${name} f16: weights loaded as f16 give the logits, loss and gradients`,
    async (e) => {
      if (!e.hasF16) throw new Error("this adapter lacks shader-f16; the f16 parity test needs it");
      const r = await runFixture(e, name, "f16");
      assertRel(`${name} f16 logits`, r.logits, r.goldLogits, 1e-2);
      assertRel(`${name} f16 loss`, [r.loss], [r.goldLoss], 2e-3);
      for (const [pname, [ours, ref]] of r.grads) assertRel(`${name} f16 grad ${pname}`, ours, ref, 2e-2);
    },
  );
}
