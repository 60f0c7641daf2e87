import assert from "node:assert/strict";
import { backward, zeroGrad } from "./autograd.ts";
import { roundToF16 } from "./dtype.ts";
import { Engine } from "./engine.ts";
import { SplitTensor } from "./split_tensor.ts";
import type { Tensor } from "./tensor.ts";
import { assertClose, gpuTest, randInt, randn } from "./testing.ts";
import { add, mul } from "./kernels/elementwise/elementwise.ts";
import { mean } from "./kernels/reduce/reduce.ts";
import { matmul } from "./kernels/matmul/matmul.ts";
import { matmulBackwardCpu, matmulCpu } from "./kernels/matmul/matmul_cpu.ts";
import { embedding } from "./kernels/embedding/embedding.ts";
import { embeddingBackwardCpu, embeddingCpu } from "./kernels/embedding/embedding_cpu.ts";
import { randnGpu } from "./kernels/randn/randn.ts";
import { randnHashCpu } from "./kernels/randn/randn_cpu.ts";
import { AdamW } from "./kernels/adamw/adamw.ts";
import { clipGradNorm } from "./kernels/clip/clip.ts";

/** Bytes one storage binding may hold on the test's small device: 32 f32 rows of 32. */
const BIND = 4096;

/** Runs `fn` on a device whose bindings hold {@linkcode BIND} bytes, then destroys it. */
async function onSmallDevice(fn: (s: Engine) => Promise<void>): Promise<void> {
  const s = await Engine.create({ limitOverrides: { maxStorageBufferBindingSize: BIND } });
  try {
    await fn(s);
  } finally {
    await s.close();
  }
}

/** A split tensor's gradient, its pieces' gradients in row order. */
async function splitGrad(t: Tensor): Promise<Float32Array> {
  const parts: number[] = [];
  for (const p of t.pieces) parts.push(...await p.grad!.read());
  return Float32Array.from(parts);
}

gpuTest(
  "split tensors: rows over pieces sized for f32, read and write whole, kernels refuse them",
  async () => {
    await onSmallDevice(async (s) => {
      const data = randn(40 * 32, 1);
      const w = s.param(data, [40, 32], { name: "w" }); // 5120 bytes: 32 rows fit a binding
      assert.ok(w instanceof SplitTensor);
      assert.deepEqual(w.rowStarts, [0, 32, 40]);
      assert.deepEqual(w.pieces.map((p) => p.shape), [[32, 32], [8, 32]]);
      assert.ok(w.pieces.every((p) => p.isParam && p.requiresGrad));
      assertClose(await w.read(), data, { atol: 0, rtol: 0 });
      w.requiresGrad = false;
      assert.ok(w.pieces.every((p) => !p.requiresGrad));
      // f16 pieces keep f32's rows, so f32 state split the same way fits as well.
      if (s.hasF16) {
        const h = s.param(data, [40, 32], { dtype: "f16" });
        assert.deepEqual((h as SplitTensor).rowStarts, [0, 32, 40]);
        assertClose(await h.read(), roundToF16(Float32Array.from(data)), { atol: 0, rtol: 0 }); // rounds in place
        h.dispose();
      }
      const z = s.zeros([40, 32], "f32", { split: true });
      assertClose(await z.read(), new Float32Array(40 * 32), { atol: 0, rtol: 0 });
      s.copy(w, z);
      assertClose(await z.read(), data, { atol: 0, rtol: 0 });
      s.write(z, new Float32Array(40 * 32).fill(2));
      assertClose(await z.read(), new Float32Array(40 * 32).fill(2), { atol: 0, rtol: 0 });
      assert.equal(s.empty([8, 32], "f32", { split: true }).pieces.length, 1); // fits: not split
      s.tidy(() => assert.throws(() => add(w, w), /w:f32\[40,32\] \(split in 2\) is split over 2 buffers/));
      assert.throws(() => w.view([1280]), /cannot view it/);
      assert.throws(() => w.grad, /lives on its pieces/);
      assert.throws(() => s.empty([2, 2000], "f32", { split: true }), /one row of it is over/);
      w.dispose();
      z.dispose();
      assert.ok(w.disposed);
    });
  },
);

gpuTest("matmul with a split weight (transB): forward and backward vs CPU", async () => {
  await onSmallDevice(async (s) => {
    const [B, M, K, N] = [3, 5, 32, 40];
    const [a, b, bias, g] = [randn(B * M * K, 2), randn(N * K, 3), randn(N, 4), randn(B * M * N, 5)];
    const x = s.param(a, [B, M, K]), w = s.param(b, [N, K]), bv = s.param(bias, [N]);
    assert.equal(w.pieces.length, 2);
    const dims = { batch: B * M, M: 1, N, K, transB: true, broadcastB: true };
    await s.tidy(async () => {
      const y = matmul(x, w, { transB: true, bias: bv });
      assert.deepEqual(y.shape, [B, M, N]);
      backward(y, s.tensor(g, y.shape));
      assertClose(await y.read(), matmulCpu(a, b, dims, bias), { atol: 1e-4, label: "out" });
      const ref = matmulBackwardCpu(a, b, g, dims);
      assertClose(await x.grad!.read(), ref.da, { atol: 1e-4, label: "da" });
      assertClose(await splitGrad(w), ref.db, { atol: 1e-4, label: "db (pieces)" });
      assertClose(await bv.grad!.read(), ref.dbias, { atol: 1e-4, label: "dbias" });
      assert.throws(
        () => matmul(s.tensor(randn(5 * 40, 6), [5, 40]), w),
        /only a 2-D weight used with transB/,
      );
    });
    for (const t of [x, w, bv]) t.dispose();
  });
});

gpuTest(
  "embedding with a split table: forward and backward vs CPU, ids in every piece and out of range",
  async () => {
    await onSmallDevice(async (s) => {
      const [V, C] = [70, 32]; // pieces of rows 0-31, 32-63, 64-69
      const ids = Int32Array.from([...randInt(20, V, 7), 31, 32, 63, 64, 69, -1, 70]);
      const [w, g] = [randn(V * C, 8), randn(ids.length * C, 9)];
      const table = s.param(w, [V, C]);
      assert.equal(table.pieces.length, 3);
      await s.tidy(async () => {
        const out = embedding(table, s.tensor(ids, [ids.length], "i32"));
        backward(out, s.tensor(g, out.shape));
        assertClose(await out.read(), embeddingCpu(w, ids, V, C), { atol: 0, rtol: 0, label: "forward" });
        assertClose(await splitGrad(table), embeddingBackwardCpu(g, ids, V, C), {
          atol: 1e-6,
          label: "dweight",
        });
      });
      table.dispose();
    });
  },
);

gpuTest("randnGpu split over pieces gives the unsplit values", async () => {
  await onSmallDevice(async (s) => {
    const t = randnGpu(s, [70, 32], 11, 0.5, "f32", { split: true });
    assert.equal(t.pieces.length, 3);
    assertClose(await t.read(), randnHashCpu(70 * 32, 11, 0.5), { atol: 1e-6 });
    t.dispose();
  });
});

/** Three steps of AdamW after clipping on loss = mean((x w^T)^2); returns the weights and state. */
async function train(e: Engine, dtype: "f32" | "f16") {
  const w = e.param(randn(40 * 32, 12, 0.3), [40, 32], { dtype });
  const opt = new AdamW([w], { lr: 1e-2, weightDecay: 0.1 });
  for (let step = 0; step < 3; step++) {
    e.tidy(() => {
      const y = matmul(e.tensor(randn(6 * 32, 20 + step), [6, 32], dtype), w, { transB: true });
      backward(mean(mul(y, y)));
    });
    clipGradNorm([w], 0.05).dispose();
    opt.step();
    zeroGrad([w]);
  }
  const out = { w: await w.read(), state: await opt.state() };
  opt.loadState(out.state); // the state written back into split moments reads the same
  assertClose((await opt.state()).params[0]!.m, out.state.params[0]!.m, { atol: 0, rtol: 0 });
  opt.dispose();
  w.dispose();
  return out;
}

gpuTest("AdamW, clipping and zeroGrad on a split parameter equal the whole parameter's", async (e) => {
  await onSmallDevice(async (s) => {
    for (const dtype of ["f32", "f16"] as const) {
      if (dtype === "f16" && !(e.hasF16 && s.hasF16)) continue;
      const [split, whole] = [await train(s, dtype), await train(e, dtype)];
      const tol = dtype === "f16" ? { atol: 1e-3, rtol: 1e-3 } : { atol: 1e-6, rtol: 1e-5 };
      assertClose(split.w, whole.w, { ...tol, label: `${dtype} weights` });
      const [a, b] = [split.state.params[0]!, whole.state.params[0]!];
      assert.equal(a.step, 3);
      assertClose(a.v, b.v, { ...tol, label: `${dtype} second moment` });
      if (dtype === "f16") assertClose(a.master!, b.master!, { ...tol, label: "f16 master weights" });
    }
  });
});
