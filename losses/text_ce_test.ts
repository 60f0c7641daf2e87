import assert from "node:assert/strict";
import { backward } from "../core/autograd.ts";
import { matmul } from "../core/kernels/matmul/matmul.ts";
import { assertClose, gpuTest, randn } from "../core/testing.ts";
import { textLoss, textLossFromHidden } from "./text_ce.ts";

const B = 2, T = 5, C = 4, V = 9;
const H = randn(B * T * C, 11), W = randn(V * C, 12, 0.7);
// Supervised labels: row 0 positions 2..4, row 1 positions 1 and 4 (position 0 can never be a target).
const LABELS = [-100, -100, 3, 8, 0, 7, 2, -100, -100, 5];

/** Host f64 reference: logits z = h W^T; mean over (b, t) with a label at t + 1 of CE(z[b, t], label). */
function reference(h: ArrayLike<number>): { loss: number; dlogits: Float64Array } {
  const rows: [number, number][] = [];
  for (let b = 0; b < B; b++) {
    for (let t = 0; t + 1 < T; t++) {
      const y = LABELS[b * T + t + 1];
      if (y !== -100) rows.push([b * T + t, y]);
    }
  }
  const dlogits = new Float64Array(B * T * V);
  let loss = 0;
  for (const [r, y] of rows) {
    const z = Array.from({ length: V }, (_, v) => {
      let s = 0;
      for (let c = 0; c < C; c++) s += h[r * C + c] * W[v * C + c];
      return s;
    });
    const m = Math.max(...z), se = z.reduce((a, zv) => a + Math.exp(zv - m), 0);
    loss += m + Math.log(se) - z[y];
    for (let v = 0; v < V; v++) {
      dlogits[r * V + v] = (Math.exp(z[v] - m) / se - (v === y ? 1 : 0)) / rows.length;
    }
  }
  return { loss: loss / rows.length, dlogits };
}

gpuTest("textLoss: shifted next-token CE over supervised labels, value and gradient", async (e) => {
  const ref = reference(H);
  const h = e.tensor(H, [B, T, C]);
  const logits = e.param(await matmul(h, e.tensor(W, [V, C]), { transB: true }).read(), [B, T, V]);
  await e.tidy(async () => {
    const loss = textLoss(logits, e.tensor(LABELS, [B, T], "i32"));
    backward(loss);
    assertClose(await loss.read(), [ref.loss], { atol: 1e-5 });
  });
  assertClose(await logits.grad!.read(), ref.dlogits, { atol: 1e-6 });
  logits.dispose();
  assert.throws(
    () => textLoss(e.tensor(randn(B * T * V, 1), [B, T, V]), e.tensor(LABELS, [B, T])),
    /i32/,
  );
});

gpuTest("textLossFromHidden: the same loss and gradients without the [B, T, V] logits", async (e) => {
  const ref = reference(H);
  // d loss / d h = dlogits W and d loss / d W = dlogits^T h, from the host reference.
  const dh = new Float64Array(B * T * C), dw = new Float64Array(V * C);
  for (let r = 0; r < B * T; r++) {
    for (let v = 0; v < V; v++) {
      for (let c = 0; c < C; c++) {
        dh[r * C + c] += ref.dlogits[r * V + v] * W[v * C + c];
        dw[v * C + c] += ref.dlogits[r * V + v] * H[r * C + c];
      }
    }
  }
  for (const chunkRows of [3, 4, undefined]) {
    const h = e.param(H, [B, T, C]), w = e.param(W, [V, C]);
    await e.tidy(async () => {
      const loss = textLossFromHidden(h, w, e.tensor(LABELS, [B, T], "i32"), { chunkRows });
      backward(loss);
      assertClose(await loss.read(), [ref.loss], { atol: 1e-5, label: `chunkRows ${chunkRows}` });
    });
    assertClose(await h.grad!.read(), dh, { atol: 1e-6, label: `d hidden, chunkRows ${chunkRows}` });
    assertClose(await w.grad!.read(), dw, { atol: 1e-6, label: `d head, chunkRows ${chunkRows}` });
    h.dispose();
    w.dispose();
  }
  const h = e.tensor(H, [B, T, C]), w = e.tensor(W, [V, C]);
  await e.tidy(async () => {
    const none = textLossFromHidden(h, w, e.tensor(new Array(B * T).fill(-100), [B, T], "i32"));
    assert.deepEqual([...await none.read()], [0], "no supervised label: 0");
  });
  assert.throws(
    () => textLossFromHidden(h.view([B * T, C]), w, e.tensor(LABELS, [B, T], "i32")),
    /\[B, T, C\]/,
  );
  assert.throws(
    () => textLossFromHidden(h, w, e.tensor(LABELS, [T, B], "i32")),
    /labels must be i32 \[2, 5\]/,
  );
});
