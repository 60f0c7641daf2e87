import assert from "node:assert/strict";
import { backward, checkpoint } from "../core/autograd.ts";
import type { Engine } from "../core/engine.ts";
import { crossEntropy } from "../core/kernels/cross_entropy/cross_entropy.ts";
import { scale } from "../core/kernels/elementwise/elementwise.ts";
import { matmul } from "../core/kernels/matmul/matmul.ts";
import type { Tensor } from "../core/tensor.ts";
import { assertClose, gpuTest, randn } from "../core/testing.ts";
import { classifierCrossEntropy, defaultChunkRows, visualLogitsBytes } from "./visual_ce.ts";

const R = 10, C = 6, V = 7;
const X = randn(R * C, 1), W = randn(V * C, 2, 0.5), BIAS = randn(V, 3, 0.5);
// Rows 2, 5 and 9 are not counted (one by -100, one out of range, one by -100).
const TARGETS = [0, 6, -100, 3, 1, 7, 2, 5, 4, -100];

/** The loss in f64 on the host: mean over counted rows of logsumexp(z) - z[t], z = W x + b. */
function cpuLoss(
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  b: ArrayLike<number> | null,
  t: number[],
): number {
  let s = 0, n = 0;
  for (let r = 0; r < t.length; r++) {
    if (t[r] < 0 || t[r] >= V) continue;
    const z = Array.from({ length: V }, (_, v) => {
      let acc = b ? b[v] : 0;
      for (let c = 0; c < C; c++) acc += x[r * C + c] * w[v * C + c];
      return acc;
    });
    const m = Math.max(...z);
    s += m + Math.log(z.reduce((a, zv) => a + Math.exp(zv - m), 0)) - z[t[r]];
    n++;
  }
  return n ? s / n : 0;
}

interface Grads {
  loss: number;
  dx: Float32Array;
  dw: Float32Array;
  db: Float32Array | null;
}

/** Loss and gradients of states, weight, bias (fresh params each call), by `lossFn`. */
async function run(
  e: Engine,
  lossFn: (x: Tensor, w: Tensor, b: Tensor | null, t: Tensor) => Tensor,
  opts: { bias?: boolean; targets?: number[]; paramStates?: boolean } = {},
): Promise<Grads> {
  const px = e.param(X, [R, C]), pw = e.param(W, [V, C]), pb = e.param(BIAS, [V]);
  const out = await e.tidy(async () => {
    const t = e.tensor(opts.targets ?? TARGETS, [R], "i32");
    // Non-parameter states and weight (outputs of an op) take the other gradient path.
    const x = opts.paramStates === false ? scale(px, 1) : px;
    const w = opts.paramStates === false ? scale(pw, 1) : pw;
    const loss = lossFn(x, w, opts.bias === false ? null : pb, t);
    backward(loss);
    return (await loss.read())[0];
  });
  const g: Grads = {
    loss: out,
    dx: (await px.grad!.read()) as Float32Array,
    dw: (await pw.grad!.read()) as Float32Array,
    db: pb.grad ? (await pb.grad.read()) as Float32Array : null,
  };
  for (const p of [px, pw, pb]) p.dispose();
  return g;
}

const unchunked = (x: Tensor, w: Tensor, b: Tensor | null, t: Tensor) =>
  crossEntropy(matmul(x, w, { transB: true, bias: b ?? undefined }), t);

function assertSameGrads(got: Grads, want: Grads, label: string): void {
  assertClose([got.loss], [want.loss], { atol: 1e-5, label: `${label} loss` });
  assertClose(got.dx, want.dx, { atol: 1e-6, label: `${label} d states` });
  assertClose(got.dw, want.dw, { atol: 1e-6, label: `${label} d weight` });
  if (want.db) assertClose(got.db!, want.db, { atol: 1e-6, label: `${label} d bias` });
  else assert.equal(got.db, null, `${label}: no bias gradient without a bias`);
}

gpuTest(
  "classifierCrossEntropy: equals the unchunked matmul + crossEntropy, forward and gradients",
  async (e) => {
    const want = await run(e, unchunked);
    assertClose([want.loss], [cpuLoss(X, W, BIAS, TARGETS)], { atol: 1e-5, label: "unchunked vs f64 host" });
    for (const chunkRows of [1, 3, 4, 10, 64, undefined]) {
      const got = await run(e, (x, w, b, t) => classifierCrossEntropy(x, w, b, t, { chunkRows }));
      assertSameGrads(got, want, `chunkRows ${chunkRows}`);
    }
    // The count given by the caller instead of computed on the GPU: 7 of the 10 rows count.
    const counted = await run(
      e,
      (x, w, b, t) => classifierCrossEntropy(x, w, b, t, { chunkRows: 4, count: 7 }),
    );
    assertSameGrads(counted, want, "count given");
  },
);

gpuTest(
  "classifierCrossEntropy: non-parameter inputs and no bias take the accumulated-gradient path",
  async (e) => {
    const want = await run(e, unchunked, { bias: false, paramStates: false });
    assertClose([want.loss], [cpuLoss(X, W, null, TARGETS)], { atol: 1e-5, label: "no bias vs f64 host" });
    for (const chunkRows of [3, 7]) {
      const got = await run(e, (x, w, b, t) => classifierCrossEntropy(x, w, b, t, { chunkRows }), {
        bias: false,
        paramStates: false,
      });
      assertSameGrads(got, want, `non-param, chunkRows ${chunkRows}`);
    }
  },
);

gpuTest("classifierCrossEntropy: frozen weight gets no gradient; no counted row gives 0", async (e) => {
  const x = e.param(X, [R, C]), w = e.param(W, [V, C]), b = e.param(BIAS, [V]);
  w.requiresGrad = false;
  b.requiresGrad = false;
  await e.tidy(async () => {
    const loss = classifierCrossEntropy(x, w, b, e.tensor(TARGETS, [R], "i32"), { chunkRows: 3 });
    backward(loss);
    assertClose([(await loss.read())[0]], [cpuLoss(X, W, BIAS, TARGETS)], { atol: 1e-5 });
  });
  assert.equal(w.grad, null);
  assert.equal(b.grad, null);
  assert.ok(x.grad, "states still get a gradient through a frozen classifier");
  x.grad!.dispose();
  x.grad = null;
  await e.tidy(async () => {
    const none = new Array(R).fill(-100);
    const loss = classifierCrossEntropy(x, w, b, e.tensor(none, [R], "i32"), { chunkRows: 4 });
    backward(loss);
    assert.deepEqual([...await loss.read()], [0]);
    assert.ok((await x.grad!.read()).every((v) => v === 0), "no counted row: zero gradient");
  });
  for (const p of [x, w, b]) p.dispose();
});

gpuTest("classifierCrossEntropy: holds at most a chunk's logits and their gradient, not R x V", async (e) => {
  const R = 64, C = 4, V = 4096, rows = 8;
  const logitsBytes = R * V * 4; // 1 MiB unchunked
  const chunkBytes = rows * V * 4; // 128 KiB
  const x = e.param(randn(R * C, 4), [R, C]), w = e.param(randn(V * C, 5, 0.3), [V, C]);
  const b = e.param(randn(V, 6), [V]);
  const t = e.tensor(Array.from({ length: R }, (_, i) => (i * 37) % V), [R], "i32");
  const peakOf = (chunkRows: number) =>
    e.tidy(() => {
      const before = e.pool.bytesInUse;
      e.pool.resetPeak();
      backward(classifierCrossEntropy(x, w, b, t, { chunkRows }));
      return e.pool.peakBytesInUse - before;
    });
  const chunked = peakOf(rows);
  // What may exist at once beyond the inputs: their gradients (created by this first backward), the
  // states gradient being filled [R, C], a chunk's weight gradient [V, C], the chunk's logits and logits
  // gradient, and small buffers (row statistics, the bias gradient's partial sums, size-class rounding).
  const grads = (R * C + V * C + V) * 4;
  const bound = grads + R * C * 4 + V * C * 4 + 2 * chunkBytes + 16 * 1024;
  assert.ok(chunked <= bound, `peak ${chunked} bytes, bound ${bound}`);
  assert.ok(
    chunked < logitsBytes / 2,
    `peak ${chunked} bytes is not well below the full logits ${logitsBytes}`,
  );
  // The same measure sees the full logits when one chunk covers every row (so the bound can fail).
  assert.ok(peakOf(R) >= 2 * logitsBytes, "one chunk of R rows holds the logits and their gradient");
  await e.sync();
  for (const p of [x, w, b, t]) p.dispose();
});

gpuTest("classifierCrossEntropy: errors name the argument and the fix", (e) => {
  const x = e.tensor(X, [R, C]), w = e.tensor(W, [V, C]), t = e.tensor(TARGETS, [R], "i32");
  assert.throws(
    () => classifierCrossEntropy(x.view([2, 5, C]), w, null, t),
    /states must be f32 or f16 \[R, C\]/,
  );
  assert.throws(() => classifierCrossEntropy(x, w.view([C, V]), null, t), /weight must be f32\[V, 6\]/);
  assert.throws(
    () => classifierCrossEntropy(x, w, e.tensor([1, 2], [2]), t),
    /bias must be f32\[7\] or null/,
  );
  assert.throws(
    () => classifierCrossEntropy(x, w, null, e.tensor(TARGETS, [R])),
    /targets must be i32 \[10\]/,
  );
  assert.throws(
    () => classifierCrossEntropy(x, w, null, t, { chunkRows: 0 }),
    /chunkRows is 0; it must be a positive/,
  );
  assert.throws(() => classifierCrossEntropy(x, w, null, t, { count: 11 }), /count is 11; .* 0\.\.10/);
});

Deno.test("defaultChunkRows: a chunk's logits stay under 64 MiB", () => {
  assert.equal(defaultChunkRows(16384), 1024); // 1024 x 16384 x 4 bytes = 64 MiB
  assert.equal(defaultChunkRows(16384, "f16"), 2048);
  assert.equal(defaultChunkRows(32000), 524);
  assert.equal(defaultChunkRows(1e9), 1);
});

Deno.test("visualLogitsBytes: the 7B recipe's worked example, ~1.5 GB unchunked", () => {
  const est = visualLogitsBytes({ rows: 4 * 729 * 8, vocab: 16384 });
  assert.equal(est.unchunked, 23328 * 16384 * 4);
  assert.ok(est.unchunked > 1.5e9 && est.unchunked < 1.55e9, `${est.unchunked}`);
  assert.equal(est.chunkRows, 1024);
  assert.equal(est.chunked, 2 * 64 * 1024 * 1024);
  assert.deepEqual(visualLogitsBytes({ rows: 10, vocab: 100, chunkRows: 64, dtype: "f16" }), {
    chunkRows: 10,
    chunked: 2 * 10 * 100 * 2,
    unchunked: 10 * 100 * 2,
  });
  assert.throws(() => visualLogitsBytes({ rows: 10, vocab: 100, chunkRows: 0 }), /chunkRows is 0/);
  assert.throws(() => visualLogitsBytes({ rows: -1, vocab: 100 }), /rows is -1/);
});

gpuTest("classifierCrossEntropy: f16 states and weight (odd C) match the unchunked f16 loss", async (e) => {
  if (!e.hasF16) throw new Error("this adapter lacks shader-f16; the f16 path cannot be checked here");
  const R = 9, C = 5, V = 6;
  const xs = randn(R * C, 21), ws = randn(V * C, 22, 0.5), bs = randn(V, 23, 0.5);
  const t = [0, 5, -100, 2, 3, 1, 4, 4, 0];
  const grads = async (f: (x: Tensor, w: Tensor, b: Tensor, tt: Tensor) => Tensor) => {
    const x = e.param(xs, [R, C], { dtype: "f16" }), w = e.param(ws, [V, C], { dtype: "f16" });
    const b = e.param(bs, [V], { dtype: "f16" });
    const loss = await e.tidy(async () => {
      const l = f(x, w, b, e.tensor(t, [R], "i32"));
      backward(l);
      return (await l.read())[0];
    });
    const out = [loss, ...await x.grad!.read(), ...await w.grad!.read(), ...await b.grad!.read()];
    for (const p of [x, w, b]) p.dispose();
    return out;
  };
  const want = await grads(unchunked);
  const got = await grads((x, w, b, tt) => classifierCrossEntropy(x, w, b, tt, { chunkRows: 2 }));
  assertClose(got, want, { atol: 2e-3, rtol: 1e-2 });
});

gpuTest("classifierCrossEntropy: inside a checkpoint gives the same gradients", async (e) => {
  const want = await run(e, (x, w, b, t) => classifierCrossEntropy(x, w, b, t, { chunkRows: 3 }));
  const got = await run(
    e,
    (x, w, b, t) => checkpoint((xx) => classifierCrossEntropy(xx, w, b, t, { chunkRows: 3 }), scale(x, 1)),
  );
  assertSameGrads(got, want, "checkpointed");
});
