import assert from "node:assert/strict";
import { backward } from "../../autograd.ts";
import { type DType, roundToF16 } from "../../dtype.ts";
import type { Engine } from "../../engine.ts";
import { assertClose, finiteDiff, gpuTest, probe, randn } from "../../testing.ts";
import { matmul, matmulInto, type MatmulKernel, setPackedF16 } from "./matmul.ts";
import { matmulBackwardCpu, matmulCpu, type MatmulDims } from "./matmul_cpu.ts";

const COMBOS = [[false, false], [true, false], [false, true], [true, true]] as const;

// ---------------------------------------------------------------- CPU reference

Deno.test("matmulCpu: a 2x2 product worked by hand, and its transposed layouts", () => {
  // [[1, 2], [3, 4]] @ [[5, 6], [7, 8]] = [[19, 22], [43, 50]], + bias [1, -1]
  const d = { M: 2, N: 2, K: 2 };
  assert.deepEqual([...matmulCpu([1, 2, 3, 4], [5, 6, 7, 8], d, [1, -1])], [20, 21, 44, 49]);
  assert.deepEqual([...matmulCpu([1, 3, 2, 4], [5, 7, 6, 8], { ...d, transA: true, transB: true })], [
    19,
    22,
    43,
    50,
  ]);
});

Deno.test("matmulBackwardCpu matches finite differences (every layout, shared b)", () => {
  for (const [transA, transB] of COMBOS) {
    const d: MatmulDims = { batch: 2, M: 3, N: 4, K: 5, transA, transB, broadcastB: true };
    const a = randn(2 * 3 * 5, 1), b = randn(5 * 4, 2), bias = randn(4, 3), w = probe(2 * 3 * 4);
    // loss = sum(out * w), so d loss / d out = w.
    const loss = (x: ArrayLike<number>, y: ArrayLike<number>, z: ArrayLike<number>) =>
      matmulCpu(x, y, d, z).reduce((s, v, i) => s + v * w[i], 0);
    const { da, db, dbias } = matmulBackwardCpu(a, b, w, d);
    const tol = { atol: 1e-6, rtol: 1e-6, label: `transA ${transA} transB ${transB}` };
    assertClose(da, finiteDiff((x) => loss(x, b, bias), a), tol);
    assertClose(db, finiteDiff((y) => loss(a, y, bias), b), tol);
    assertClose(dbias, finiteDiff((z) => loss(a, b, z), bias), tol);
  }
});

// ---------------------------------------------------------------- GPU vs CPU reference

/** A case beside its dims M, N, K; every field has a default. */
interface Case {
  /** Leading (batch) dims of a and of the output (default none). */
  lead?: number[];
  transA?: boolean;
  transB?: boolean;
  /** b is 2-D, shared by the batch (default true). */
  shared?: boolean;
  /** With a bias (default true). */
  bias?: boolean;
  dtype?: DType;
  kernel?: MatmulKernel;
  /** MatmulOptions.packedF16 (default false). */
  packedF16?: boolean;
  /** MatmulOptions.splitK (default: the kernel's choice). */
  splitK?: number;
  /** Which inputs are trainable (default both). */
  trainA?: boolean;
  trainB?: boolean;
}

/** Forward and backward of one case against the CPU reference on the same (f16-rounded) values. */
async function check(e: Engine, M: number, N: number, K: number, c: Case = {}): Promise<void> {
  const { lead = [], transA = false, transB = false, shared = true, dtype = "f32", kernel = "auto" } = c;
  const { bias: withBias = true, trainA = true, trainB = true, packedF16 = false, splitK } = c;
  const batch = lead.reduce((x, y) => x * y, 1);
  const host = (x: Float32Array) => dtype === "f16" ? roundToF16(x) : x;
  const as = host(randn(batch * M * K, 1)), bs = host(randn((shared ? 1 : batch) * K * N, 2));
  const biasv = host(randn(N, 3)), gs = host(randn(batch * M * N, 4));
  const a = e.param(as, [...lead, ...(transA ? [K, M] : [M, K])], { dtype });
  const b = e.param(bs, [...(shared ? [] : lead), ...(transB ? [N, K] : [K, N])], { dtype });
  const bias = e.param(biasv, [N], { dtype });
  a.requiresGrad = trainA;
  b.requiresGrad = trainB;
  const d: MatmulDims = { batch, M, N, K, transA, transB, broadcastB: shared };
  const label = `${dtype} ${kernel} [${lead}] M ${M} N ${N} K ${K} transA ${transA} transB ${transB}` +
    ` shared ${shared} bias ${withBias} splitK ${splitK}`;
  // f16: one rounding of each f32-accumulated output, up to an ulp apart from the f64 reference; with
  // packed f16 products, also the f16 rounding of each step's partial sums (see the bound below).
  const tol = dtype === "f32"
    ? { atol: 1e-4, rtol: 1e-4 }
    : packedF16
    ? { atol: 0.05, rtol: 0.01 }
    : { atol: 2e-3, rtol: 2e-3 };

  const out = e.tidy(() => {
    const y = matmul(a, b, { transA, transB, bias: withBias ? bias : undefined, kernel, packedF16, splitK });
    assert.deepEqual(y.shape, [...lead, M, N]);
    backward(y, e.tensor(gs, y.shape, dtype));
    return y;
  });
  assertClose(await out.read(), matmulCpu(as, bs, d, withBias ? biasv : null), {
    ...tol,
    label: `out ${label}`,
  });
  const want = matmulBackwardCpu(as, bs, gs, d);
  if (trainA) assertClose(await a.grad!.read(), want.da, { ...tol, label: `dA ${label}` });
  else assert.equal(a.grad, null);
  if (trainB) assertClose(await b.grad!.read(), want.db, { ...tol, label: `dB ${label}` });
  else assert.equal(b.grad, null);
  if (withBias) assertClose(await bias.grad!.read(), want.dbias, { ...tol, label: `dbias ${label}` });
  else assert.equal(bias.grad, null);
  for (const t of [out, a, b, bias]) t.dispose();
}

function dtypes(e: Engine): DType[] {
  return e.hasF16 ? ["f32", "f16"] : ["f32"];
}

gpuTest("matmul: odd shapes, every layout (forward, dA, dB, dbias)", async (e) => {
  for (const dtype of dtypes(e)) {
    for (const [transA, transB] of COMBOS) {
      for (const [M, N, K] of [[1, 1, 1], [7, 33, 129], [33, 7, 65]]) {
        await check(e, M, N, K, { transA, transB, dtype });
      }
    }
  }
});

gpuTest("matmul: batched, with a shared 2-D b (dB summed over the batch) and a batched b", async (e) => {
  for (const dtype of dtypes(e)) {
    for (const [transA, transB] of COMBOS) {
      await check(e, 7, 9, 5, { lead: [3], transA, transB, dtype });
      await check(e, 7, 9, 5, { lead: [2, 3], transA, transB, shared: false, bias: false, dtype });
    }
  }
});

gpuTest("matmul: every kernel on every layout, shapes the texture kernel takes", async (e) => {
  for (const kernel of ["tiled", "tiled128", "texture"] as const) {
    for (const dtype of dtypes(e)) {
      for (const [transA, transB] of COMBOS) {
        await check(e, 36, 20, 44, { lead: [3], transA, transB, dtype, kernel });
      }
    }
  }
  // Large enough for 16 x 16 outputs per thread (and a batched b), with clamped edge tiles.
  await check(e, 68, 100, 12, { lead: [2], transA: true, shared: false, kernel: "texture" });
  await check(e, 100, 68, 132, { transB: true, kernel: "texture" });
});

gpuTest("matmul: 128 x 128 tiles with partial edge tiles, K not a multiple of the tile depth", async (e) => {
  for (const [transA, transB] of COMBOS) {
    await check(e, 130, 129, 19, { transA, transB, kernel: "tiled128" });
  }
  await check(e, 9, 131, 21, { lead: [2], transB: true, kernel: "tiled128" }); // dB sums over the batch
});

gpuTest("matmul: vec4 kernel, 64 and 128 tiles, every layout, edge tiles and several K steps", async (e) => {
  for (const kernel of ["vec4", "vec4_128"] as const) {
    for (const dtype of dtypes(e)) {
      for (const [transA, transB] of COMBOS) {
        // M not a multiple of 4 where a is read along K; K spans steps of both depths plus a part.
        const M = transA ? 36 : 37;
        await check(e, M, 20, 44, { lead: [3], transA, transB, dtype, kernel });
      }
    }
    // A batched b, and a shared b whose dB sums over the batch: the sum runs over the step loop.
    await check(e, 12, 8, 4, { lead: [2], transB: true, shared: false, kernel });
    await check(e, 8, 12, 20, { lead: [3], transA: true, kernel });
  }
  // Several tiles each way with partial edge tiles.
  await check(e, 133, 136, 24, { transB: true, kernel: "vec4_128" });
  await check(e, 68, 132, 8, { transA: true, kernel: "vec4" });
});

gpuTest("matmul: vec4 kernel with K split into parts (partial sums added by a second kernel)", async (e) => {
  for (const dtype of dtypes(e)) {
    for (const [transA, transB] of COMBOS) {
      // 3 parts of 16 (64 tiles) or 24 (128 tiles) k; the last part is shorter.
      await check(e, 20, 12, 44, { lead: [2], transA, transB, dtype, kernel: "vec4", splitK: 3 });
    }
  }
  // dB of a shared b sums over the batch inside each part; more parts than steps is capped.
  await check(e, 8, 12, 60, { lead: [3], kernel: "vec4_128", splitK: 2, dtype: "f32" });
  await check(e, 8, 12, 8, { lead: [2], transB: true, kernel: "vec4", splitK: 5 });
});

gpuTest(
  "matmul: packed f16 products stay within f16 summation's error bound, and are really f16",
  async (e) => {
    if (!e.hasF16) return;
    const [M, N, K] = [16, 20, 256];
    const as = roundToF16(randn(M * K, 5)), bs = roundToF16(randn(K * N, 6));
    const a = e.tensor(as, [M, K], "f16"), b = e.tensor(bs, [K, N], "f16");
    const want = matmulCpu(as, bs, { M, N, K });
    const u = 2 ** -11; // f16's unit roundoff
    for (const [kernel, BK] of [["vec4", 16], ["vec4_128", 8]] as const) {
      const err = async (packedF16: boolean) => {
        const got = await e.tidy(() => matmul(a, b, { kernel, packedF16 })).read();
        let over = 0;
        for (let m = 0; m < M; m++) {
          for (let n = 0; n < N; n++) {
            let abs = 0;
            for (let k = 0; k < K; k++) abs += Math.abs(as[m * K + k] * bs[k * N + n]);
            // Each step's BK products summed in f16 (error <= BK u sum |a b|), then the output's rounding.
            const i = m * N + n, d = Math.abs(got[i] - want[i]);
            if (d > BK * u * abs + u * Math.abs(want[i]) + 1e-6) over++;
          }
        }
        return { got, over };
      };
      const packed = await err(true), exact = await err(false);
      assert.equal(packed.over, 0, `${kernel}: ${packed.over} outputs past the bound`);
      assert.equal(exact.over, 0);
      // The f16 partial sums round differently from f32 sums in a good share of the outputs.
      const differ = packed.got.filter((x, i) => x !== exact.got[i]).length;
      assert.ok(differ > M * N / 4, `${kernel}: only ${differ} of ${M * N} outputs differ from f32 sums`);
    }
    await check(e, 36, 20, 44, { lead: [2], transB: true, dtype: "f16", kernel: "vec4", packedF16: true });
    await check(e, 36, 20, 44, { transA: true, dtype: "f16", kernel: "vec4_128", packedF16: true });
    a.dispose();
    b.dispose();
  },
);

gpuTest("matmul: setPackedF16 makes f16 products packed by default; a call's own option wins", async (e) => {
  if (!e.hasF16) return;
  const [M, N, K] = [8, 12, 64];
  const a = e.tensor(randn(M * K, 7), [M, K], "f16"), b = e.tensor(randn(K * N, 8), [K, N], "f16");
  const run = async (opts: { packedF16?: boolean } = {}) =>
    await e.tidy(() => matmul(a, b, { kernel: "vec4", ...opts })).read();
  const [exact, packed] = [await run({ packedF16: false }), await run({ packedF16: true })];
  assert.notDeepEqual(packed, exact);
  try {
    assert.deepEqual(await run(), exact);
    setPackedF16(e, true);
    assert.deepEqual(await run(), packed);
    assert.deepEqual(await run({ packedF16: false }), exact);
  } finally {
    setPackedF16(e, false);
  }
  assert.deepEqual(await run(), exact);
  a.dispose();
  b.dispose();
});

gpuTest("matmul: the vec4 kernel refuses shapes it cannot read 4-wide, auto then takes tiled", async (e) => {
  const a = e.zeros([5, 6]), b = e.zeros([6, 7]);
  assert.throws(() => matmul(a, b, { kernel: "vec4" }), /vec4 kernel/);
  assert.throws(() => matmul(e.zeros([6, 5]), e.zeros([6, 8]), { transA: true, kernel: "vec4" }), /vec4/);
  assert.throws(() => matmul(e.zeros([4, 6]), e.zeros([8, 6]), { transB: true, kernel: "vec4_128" }), /vec4/);
  await check(e, 5, 7, 6, { kernel: "auto" });
});

gpuTest("matmul: a frozen weight gets no gradient, the activation gradient still flows", async (e) => {
  await check(e, 5, 8, 12, { lead: [2], transB: true, trainB: false });
  await check(e, 5, 8, 12, { bias: false, trainA: false });
});

gpuTest("matmul: rejects mismatched shapes and dtypes", (e) => {
  const a = e.zeros([2, 3]), b = e.zeros([4, 5]), i = e.zeros([3, 2], "i32");
  assert.throws(() => matmul(a, b), /K 3 != 4/);
  assert.throws(() => matmul(a, i), /dtypes/);
  assert.throws(() => matmul(a, e.zeros([3, 5]), { bias: e.zeros([4]) }), /bias/);
  assert.throws(() => matmul(e.zeros([2, 2, 3]), e.zeros([3, 3, 5])), /leading dims/);
  assert.throws(() => matmul(a, e.zeros([3, 5]), { kernel: "texture" }), /texture kernel/);
});

gpuTest(
  "matmulInto: batched products into a given tensor, any shapes of the right sizes, every layout",
  async (e) => {
    const d = { batch: 3, M: 5, N: 6, K: 7 };
    for (const [transA, transB] of COMBOS) {
      const as = randn(d.batch * d.M * d.K, 1), bs = randn(d.batch * d.K * d.N, 2);
      const a = e.tensor(as, [as.length]), b = e.tensor(bs, [d.batch, bs.length / d.batch]);
      const out = e.empty([d.batch * d.M * d.N]);
      matmulInto(out, a, b, { ...d, transA, transB });
      assertClose(await out.read(), matmulCpu(as, bs, { ...d, transA, transB }), {
        atol: 1e-5,
        rtol: 1e-5,
        label: `transA ${transA} transB ${transB}`,
      });
      assert.throws(
        () => matmulInto(out, a, b, { ...d, M: 4 }),
        /does not hold 3 products \[4, 7\] @ \[7, 6\]/,
      );
      for (const t of [a, b, out]) t.dispose();
    }
  },
);
