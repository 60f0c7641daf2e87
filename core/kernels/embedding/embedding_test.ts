import assert from "node:assert/strict";
import { backward } from "../../autograd.ts";
import { type DType, roundToF16 } from "../../dtype.ts";
import type { Engine } from "../../engine.ts";
import { assertClose, finiteDiff, gpuTest, probe, randInt, randn } from "../../testing.ts";
import { embedding, embeddingBackward } from "./embedding.ts";
import { embeddingBackwardCpu, embeddingCpu } from "./embedding_cpu.ts";

/** Runs embedding forward and backward on the GPU and checks both against the CPU reference. */
async function check(e: Engine, V: number, C: number, ids: Int32Array, idsShape: number[], dtype: DType) {
  // f16: inputs are f16 values and sums are f32, so the only error is the final rounding to f16.
  const tol = dtype === "f16" ? { atol: 1e-3, rtol: 2e-3 } : { atol: 1e-5, rtol: 1e-5 };
  const N = ids.length;
  let w = randn(V * C, 1);
  let dout = randn(N * C, 2);
  if (dtype === "f16") {
    w = roundToF16(w);
    dout = roundToF16(dout);
  }
  const weight = e.param(w, [V, C], { dtype });
  await e.tidy(async () => {
    const out = embedding(weight, e.tensor(ids, idsShape, "i32"));
    assert.deepEqual(out.shape, [...idsShape, C]);
    assert.equal(out.dtype, dtype);
    backward(out, e.tensor(dout, out.shape, dtype));
    const label = `V=${V} C=${C} N=${N} ${dtype}`;
    assertClose(await out.read(), embeddingCpu(w, ids, V, C), { ...tol, label: `forward ${label}` });
    assertClose(await weight.grad!.read(), embeddingBackwardCpu(dout, ids, V, C), {
      ...tol,
      label: `dweight ${label}`,
    });
  });
  weight.dispose();
}

gpuTest("embedding: forward and backward vs CPU, repeated ids, V >= 1000, f32", async (e) => {
  // 3 x 7 positions drawn from 10 ids: many repeats.
  const ids = randInt(21, 10, 3).map((x) => x * 97 + 5);
  await check(e, 1000, 33, ids, [3, 7], "f32");
  await check(e, 1031, 7, randInt(129, 1031, 4), [129], "f32");
  await check(e, 5, 1, randInt(1, 5, 5), [1], "f32");
});

gpuTest("embedding: one id repeated at every position (hot row)", async (e) => {
  await check(e, 1000, 7, new Int32Array(129).fill(999), [129], "f32");
});

gpuTest("embedding backward: each id's rows summed in position order, the same bits every run", async (e) => {
  // 5000 positions (20 workgroups) over 7 ids: hundreds of repeats each, scattered by many threads.
  const V = 7, C = 3, N = 5000;
  const ids = randInt(N, V, 11), dout = randn(N * C, 12);
  // f32 sums in ascending position order, as the kernel adds them.
  const want = new Float32Array(V * C);
  for (let n = 0; n < N; n++) {
    for (let c = 0; c < C; c++) want[ids[n] * C + c] = Math.fround(want[ids[n] * C + c] + dout[n * C + c]);
  }
  const g = e.tensor(dout, [N, C]), t = e.tensor(ids, [N], "i32");
  for (let run = 0; run < 3; run++) {
    const got = await e.tidy(() => embeddingBackward(g, t, V)).read();
    assert.deepEqual([...got], [...want], `run ${run}`);
  }
  g.dispose();
  t.dispose();
});

gpuTest("embedding: f16 weights, f32 accumulation", async (e) => {
  if (!e.hasF16) return;
  await check(e, 1000, 33, randInt(129, 30, 6), [3, 43], "f16");
  await check(e, 1001, 7, randInt(7, 1001, 7), [7], "f16");
});

gpuTest("embedding: out-of-range ids read zeros and get no gradient", async (e) => {
  const ids = new Int32Array([3, -1, 1000, 3, 999, 1 << 30, -2147483648]);
  await check(e, 1000, 7, ids, [7], "f32");
});

gpuTest(
  "embedding: scatter-add over a vocabulary larger than the scan workgroup many times over",
  async (e) => {
    const V = 70001, C = 1;
    const ids = randInt(33, V, 8);
    ids[5] = ids[20] = V - 1;
    const dout = randn(33 * C, 9);
    const dw = await e.tidy(() => embeddingBackward(e.tensor(dout, [33, C]), e.tensor(ids, [33], "i32"), V))
      .read();
    assertClose(dw, embeddingBackwardCpu(dout, ids, V, C), { label: "dweight" });
  },
);

gpuTest("embedding: a frozen weight records nothing", (e) => {
  const weight = e.param(randn(10 * 3, 1), [10, 3]);
  weight.requiresGrad = false;
  e.tidy(() => embedding(weight, e.tensor([1, 2], [2], "i32")));
  assert.equal(e.tape.length, 0);
  weight.dispose();
});

Deno.test("embedding CPU backward matches finite differences", () => {
  const V = 6, C = 3;
  const ids = new Int32Array([2, 0, 2, 5, 7, -1, 2]);
  const w = randn(V * C, 10);
  const p = probe(ids.length * C);
  const loss = (x: Float64Array) => embeddingCpu(x, ids, V, C).reduce((s, y, i) => s + y * p[i], 0);
  assertClose(embeddingBackwardCpu(p, ids, V, C), finiteDiff(loss, w), { atol: 1e-6 });
});
