import assert from "node:assert/strict";
import { backward } from "../core/autograd.ts";
import { assertClose, gpuTest, randn } from "../core/testing.ts";
import { causalLmLoss, shiftLabels } from "./causal_lm_loss.ts";

gpuTest("shiftLabels: position t gets label t + 1, the last position -100", async (e) => {
  const labels = e.tensor([-100, 5, 6, 7, -100, -100, 3, 1], [2, 4], "i32");
  const shifted = shiftLabels(labels);
  assert.deepEqual(shifted.shape, [2, 4]);
  assert.deepEqual([...await shifted.read()], [5, 6, 7, -100, -100, 3, 1, -100]);
  assert.deepEqual([...await shiftLabels(e.tensor([4, 2], [2, 1], "i32")).read()], [-100, -100]);
  assert.throws(() => shiftLabels(e.tensor([1, 2], [2], "i32")), /labels must be i32 \[B, T\]/);
});

gpuTest(
  "causalLmLoss: HF's shifted cross-entropy, mean over supervised labels, and its gradient",
  async (e) => {
    const B = 2, T = 4, V = 5;
    const x = randn(B * T * V, 7, 2);
    const lab = [-100, 1, 2, 3, -100, -100, 4, 0];
    // Reference in f64: position t of row b predicts lab[b, t + 1].
    let total = 0, n = 0;
    const dref = new Float64Array(B * T * V);
    const rows: [number, number][] = [];
    for (let b = 0; b < B; b++) {
      for (let t = 0; t < T - 1; t++) {
        const y = lab[b * T + t + 1];
        if (y !== -100) rows.push([(b * T + t) * V, y]);
      }
    }
    for (const [o, y] of rows) {
      const m = Math.max(...x.subarray(o, o + V));
      let s = 0;
      for (let v = 0; v < V; v++) s += Math.exp(x[o + v] - m);
      total += Math.log(s) + m - x[o + y];
      n++;
      for (let v = 0; v < V; v++) {
        dref[o + v] = (Math.exp(x[o + v] - m) / s - (v === y ? 1 : 0)) /
          rows.length;
      }
    }
    const logits = e.param(x, [B, T, V]);
    const loss = causalLmLoss(logits, e.tensor(lab, [B, T], "i32"));
    backward(loss);
    assertClose(await loss.read(), [total / n], { atol: 1e-5, rtol: 1e-5, label: "loss" });
    assertClose(await logits.grad!.read(), dref, { atol: 1e-6, rtol: 1e-4, label: "dlogits" });
    assert.throws(() => causalLmLoss(logits, e.tensor(lab, [T, B], "i32")), /labels must be i32 \[2, 4\]/);
    logits.dispose();
  },
);
