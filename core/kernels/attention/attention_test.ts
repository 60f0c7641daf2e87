import assert from "node:assert/strict";
import { backward } from "../../autograd.ts";
import { Engine } from "../../engine.ts";
import { sizeClass } from "../../pool.ts";
import { assertClose, finiteDiff, gpuTest, maxAbsDiff, randn } from "../../testing.ts";
import {
  attention,
  attentionForward,
  type AttentionKernel,
  attentionKernel,
  type AttentionOptions,
  setAttentionKernel,
} from "./attention.ts";
import { attentionInputs } from "./testdata/inputs.ts";
import { groupsPerChunk, matmulAttentionWorkspace, scoreBudget } from "./attention_matmul.ts";
import { attends, attentionBackwardCpu, attentionCpu, type AttentionDims } from "./attention_cpu.ts";

/** sum(out * w): a scalar loss of the CPU forward, for finite differences. */
function lossCpu(
  q: Float64Array,
  k: Float64Array,
  v: Float64Array,
  w: Float64Array,
  d: AttentionDims,
  o: AttentionOptions,
) {
  const { out } = attentionCpu(q, k, v, d, o);
  let s = 0;
  for (let i = 0; i < out.length; i++) s += out[i] * w[i];
  return s;
}

for (
  const [name, opts] of [
    ["causal", {}],
    ["non-causal", { causal: false }],
    ["window 2", { window: 2 }],
    ["non-causal window 3, scale 0.7", { causal: false, window: 3, scale: 0.7 }],
  ] as [string, AttentionOptions][]
) {
  Deno.test(`attention cpu: backward matches finite differences (${name})`, () => {
    const d = { B: 2, NH: 4, NKV: 2, T: 5, HS: 3 };
    const nq = d.B * d.NH * d.T * d.HS, nk = d.B * d.NKV * d.T * d.HS;
    const q = Float64Array.from(randn(nq, 1)), k = Float64Array.from(randn(nk, 2));
    const v = Float64Array.from(randn(nk, 3)), w = Float64Array.from(randn(nq, 4));
    const g = attentionBackwardCpu(q, k, v, w, d, opts);
    assertClose(g.dq, finiteDiff((x) => lossCpu(x, k, v, w, d, opts), q), {
      atol: 1e-7,
      rtol: 1e-6,
      label: "dq",
    });
    assertClose(g.dk, finiteDiff((x) => lossCpu(q, x, v, w, d, opts), k), {
      atol: 1e-7,
      rtol: 1e-6,
      label: "dk",
    });
    assertClose(g.dv, finiteDiff((x) => lossCpu(q, k, x, w, d, opts), v), {
      atol: 1e-7,
      rtol: 1e-6,
      label: "dv",
    });
  });
}

Deno.test("attention cpu: masking rule", () => {
  assert.ok(attends(3, 3) && attends(3, 0) && !attends(3, 4));
  assert.ok(attends(3, 4, { causal: false }));
  assert.ok(attends(3, 2, { window: 2 }) && !attends(3, 1, { window: 2 }));
  assert.ok(attends(0, 9, { causal: false, window: 2 }) && !attends(9, 0, { causal: false, window: 2 }));
});

/**
 * Runs attention forward + backward on the GPU through autograd and compares out, dq, dk, dv with the
 * CPU reference.
 */
async function checkAgainstCpu(
  e: Engine,
  d: AttentionDims,
  opts: AttentionOptions,
  dtype: "f32" | "f16",
  tol: { atol: number; rtol: number },
): Promise<void> {
  const x = attentionInputs(d, 10 * d.T + d.HS, dtype === "f16");
  const qShape = [d.B, d.NH, d.T, d.HS], kShape = [d.B, d.NKV, d.T, d.HS];
  const q = e.param(x.q, qShape, { dtype }),
    k = e.param(x.k, kShape, { dtype }),
    v = e.param(x.v, kShape, { dtype });
  const out = await e.tidy(async () => {
    const o = attention(q, k, v, opts);
    backward(o, e.tensor(x.g, qShape, dtype));
    return await o.read();
  });
  const ref = attentionCpu(x.q, x.k, x.v, d, opts);
  const grad = attentionBackwardCpu(x.q, x.k, x.v, x.g, d, opts);
  const label = `${dtype} [${d.B},${d.NH}/${d.NKV},${d.T},${d.HS}] ${JSON.stringify(opts)}`;
  assertClose(out, ref.out, { ...tol, label: `${label} out` });
  assertClose(await q.grad!.read(), grad.dq, { ...tol, label: `${label} dq` });
  assertClose(await k.grad!.read(), grad.dk, { ...tol, label: `${label} dk` });
  assertClose(await v.grad!.read(), grad.dv, { ...tol, label: `${label} dv` });
  for (const t of [q, k, v]) t.dispose();
}

const F32 = { atol: 2e-5, rtol: 1e-4 };
// f16 storage: inputs are exact f16 values; outputs and gradients are rounded to f16 (relative 2^-11)
// after f32 math, so allow a few f16 ulps.
const F16 = { atol: 4e-3, rtol: 4e-3 };

// Few distinct head sizes: each one compiles its own pipelines (seconds each on lavapipe).
const SHAPES: [AttentionDims, AttentionOptions][] = [
  [{ B: 1, NH: 1, NKV: 1, T: 1, HS: 8 }, {}],
  [{ B: 2, NH: 4, NKV: 2, T: 33, HS: 24 }, {}],
  [{ B: 1, NH: 4, NKV: 1, T: 129, HS: 64 }, {}],
  [{ B: 2, NH: 4, NKV: 2, T: 33, HS: 24 }, { causal: false }],
  [{ B: 1, NH: 2, NKV: 2, T: 70, HS: 8 }, { window: 9 }],
  [{ B: 1, NH: 3, NKV: 1, T: 40, HS: 7 }, { causal: false, window: 5, scale: 0.3 }],
  [{ B: 1, NH: 2, NKV: 1, T: 20, HS: 128 }, {}],
];

for (const kernel of ["fused", "matmul"] as const) {
  for (const [d, opts] of SHAPES) {
    gpuTest(
      `attention gpu f32 ${kernel}: [${d.B},${d.NH}/${d.NKV},${d.T},${d.HS}] ${JSON.stringify(opts)}`,
      async (e) => {
        await checkAgainstCpu(e, d, { ...opts, kernel }, "f32", F32);
      },
    );
  }

  gpuTest(
    `attention gpu f16 ${kernel}: forward and backward against the CPU on f16-rounded inputs`,
    async (e) => {
      if (!e.hasF16) return;
      for (const i of [0, 1, 5]) {
        await checkAgainstCpu(e, SHAPES[i][0], { ...SHAPES[i][1], kernel }, "f16", F16);
      }
    },
  );
}

gpuTest("attention gpu: which implementation runs", (e) => {
  const d = { B: 2, NH: 4, NKV: 2, T: 32, HS: 16 };
  assert.equal(attentionKernel(e, d, "f32", { kernel: "fused" }), "fused");
  assert.equal(attentionKernel(e, d, "f32"), "matmul");
  // On a software adapter the matmul path needs T and HS divisible by 4 to be the faster one.
  const odd = { ...d, T: 33 };
  assert.equal(attentionKernel(e, odd, "f32"), e.info.isFallbackAdapter ? "flash" : "matmul");
  assert.equal(attentionKernel(e, odd, "f32", { kernel: "matmul" }), "matmul");
  // ... and f32: its f16 products with a transposed first operand are slow there.
  assert.equal(attentionKernel(e, d, "f16"), e.info.isFallbackAdapter ? "flash" : "matmul");
});

/** Runs `fn` on a device whose storage bindings hold `bytes` bytes, then destroys it. */
async function withBindingLimit(bytes: number, fn: (s: Engine) => Promise<void> | void): Promise<void> {
  const s = await Engine.create({ limitOverrides: { maxStorageBufferBindingSize: bytes } });
  try {
    await fn(s);
  } finally {
    await s.close();
  }
}

gpuTest("attention gpu matmul: scores in chunks under a small binding limit, workspace bounded", async () => {
  // One kv group's scores: 2 x 64 x 64 f32 = 32 KiB; 64 KiB bindings hold 2 of the 6 groups.
  const d = { B: 3, NH: 4, NKV: 2, T: 64, HS: 8 };
  await withBindingLimit(64 * 1024, async (s) => {
    assert.equal(groupsPerChunk(d, "f32", scoreBudget(s)), 2);
    for (const opts of [{}, { causal: false, window: 7 }] as AttentionOptions[]) {
      await checkAgainstCpu(s, d, { ...opts, kernel: "matmul" }, "f32", F32);
    }
    // Peak memory of forward + backward beyond the inputs: the outputs, lse and D, and the workspace,
    // well under the whole call's two score buffers.
    const x = attentionInputs(d, 3, false);
    const qShape = [d.B, d.NH, d.T, d.HS], kShape = [d.B, d.NKV, d.T, d.HS];
    const q = s.param(x.q, qShape), k = s.param(x.k, kShape), v = s.param(x.v, kShape);
    const g = s.tensor(x.g, qShape);
    await s.sync();
    s.pool.resetPeak();
    const before = s.pool.bytesInUse;
    s.tidy(() => backward(attention(q, k, v, { kernel: "matmul" }), g));
    const extra = s.pool.peakBytesInUse - before;
    const io = [q.size, q.size, k.size, v.size, 2 * d.B * d.NH * d.T].reduce(
      (a, n) => a + sizeClass(4 * n),
      0,
    );
    const workspace = matmulAttentionWorkspace(d, "f32", scoreBudget(s));
    const whole = 2 * d.B * d.NH * d.T * d.T * 4;
    assert.ok(extra <= io + 1.5 * workspace, `peak ${extra} bytes; outputs ${io}, workspace ${workspace}`);
    assert.ok(extra < whole, `peak ${extra} bytes, not under the whole call's scores (${whole})`);
    for (const t of [q, k, v, g]) t.dispose();
  });
});

gpuTest(
  "attention gpu matmul: refused when one group's scores exceed a binding; auto runs fused (flash on CPUs)",
  async () => {
    const d = { B: 1, NH: 2, NKV: 1, T: 64, HS: 8 }; // one group: 2 x 64 x 64 f32 = 32 KiB
    await withBindingLimit(16 * 1024, async (s) => {
      assert.equal(groupsPerChunk(d, "f32", scoreBudget(s)), 0);
      assert.throws(
        () => attentionKernel(s, d, "f32", { kernel: "matmul" }),
        /do not fit a buffer; use kernel "fused"/,
      );
      assert.equal(attentionKernel(s, d, "f32"), s.info.isFallbackAdapter ? "flash" : "fused");
      await checkAgainstCpu(s, d, {}, "f32", F32);
    });
  },
);

gpuTest("attention: setAttentionKernel sets what calls without a kernel use, per engine", async (e) => {
  const d = { B: 1, NH: 2, NKV: 1, T: 64, HS: 8 };
  const builtIn = attentionKernel(e, d, "f32");
  try {
    setAttentionKernel(e, "flash");
    assert.equal(attentionKernel(e, d, "f32"), "flash");
    assert.equal(attentionKernel(e, d, "f32", { kernel: "auto" }), "flash");
    assert.equal(attentionKernel(e, d, "f32", { kernel: "fused" }), "fused", "a call's own kernel wins");
    await withBindingLimit(16 * 1024, (s) => {
      const own = s.info.isFallbackAdapter ? "flash" : "fused";
      assert.equal(attentionKernel(s, d, "f32"), own, "another engine keeps its own choice");
      setAttentionKernel(s, "matmul"); // the scores do not fit here: the built-in choice stays
      assert.equal(attentionKernel(s, d, "f32"), own);
    });
    setAttentionKernel(e, "auto");
    assert.equal(attentionKernel(e, d, "f32"), builtIn);
    assert.throws(
      () => setAttentionKernel(e, "fast" as AttentionKernel),
      /unknown kernel "fast"; use one of/,
    );
  } finally {
    setAttentionKernel(e, "auto");
  }
});

gpuTest("attention gpu: lse, and frozen k gets no gradient while q and v do", async (e) => {
  const d = { B: 1, NH: 2, NKV: 1, T: 9, HS: 8 };
  const x = attentionInputs(d, 5, false);
  const q = e.param(x.q, [1, 2, 9, 8]), v = e.param(x.v, [1, 1, 9, 8]);
  const k = e.tensor(x.k, [1, 1, 9, 8]);
  const lse = await e.tidy(async () => {
    const { out, lse } = attentionForward(q, k, v);
    const o = attention(q, k, v);
    assert.ok(maxAbsDiff(await o.read(), await out.read()) === 0);
    backward(o, e.tensor(x.g, [1, 2, 9, 8]));
    return await lse.read();
  });
  assertClose(lse, attentionCpu(x.q, x.k, x.v, d).lse, { ...F32, label: "lse" });
  const grad = attentionBackwardCpu(x.q, x.k, x.v, x.g, d);
  assertClose(await q.grad!.read(), grad.dq, { ...F32, label: "dq" });
  assertClose(await v.grad!.read(), grad.dv, { ...F32, label: "dv" });
  assert.equal(k.grad, null);
  for (const t of [q, k, v]) t.dispose();
});

gpuTest("attention gpu: more than 65535 workgroups (many short sequences)", async (e) => {
  await checkAgainstCpu(e, { B: 2, NH: 33000, NKV: 33000, T: 2, HS: 8 }, {}, "f32", F32);
});

gpuTest("attention gpu: without gradients nothing but the output stays allocated", (e) => {
  const q = e.param(randn(2 * 5 * 8, 1), [1, 2, 5, 8]);
  const before = e.pool.bytesInUse;
  const o = e.noGrad(() => attention(q, q, q));
  assert.equal(e.pool.bytesInUse - before, sizeClass(o.bindSize));
  o.dispose();
  q.dispose();
});

gpuTest("attention gpu fused: T=1024 forward + backward allocates O(T), not T x T", async (e) => {
  const d = { B: 1, NH: 4, NKV: 2, T: 1024, HS: 16 };
  const x = attentionInputs(d, 77, false);
  const q = e.param(x.q, [1, 4, 1024, 16]),
    k = e.param(x.k, [1, 2, 1024, 16]),
    v = e.param(x.v, [1, 2, 1024, 16]);
  const g = e.tensor(x.g, [1, 4, 1024, 16]);
  await e.sync();
  e.pool.resetPeak();
  const before = e.pool.bytesInUse;
  const out = await e.tidy(async () => {
    const o = attention(q, k, v, { kernel: "fused" });
    backward(o, g);
    return await o.read();
  });
  const extra = e.pool.peakBytesInUse - before;
  const tt = d.T * d.T * d.NH * 4;
  assert.ok(extra < tt / 8, `attention used ${extra} bytes beyond its inputs; T*T*NH*4 = ${tt}`);
  const ref = attentionCpu(x.q, x.k, x.v, d);
  const grad = attentionBackwardCpu(x.q, x.k, x.v, x.g, d);
  assertClose(out, ref.out, { ...F32, label: "out" });
  assertClose(await q.grad!.read(), grad.dq, { ...F32, label: "dq" });
  assertClose(await k.grad!.read(), grad.dk, { ...F32, label: "dk" });
  assertClose(await v.grad!.read(), grad.dv, { ...F32, label: "dv" });
  for (const t of [q, k, v, g]) t.dispose();
});

gpuTest("attention gpu: a window that is not a positive integer is refused by every implementation", (e) => {
  const q = e.tensor(randn(2 * 8 * 4, 1), [1, 2, 8, 4]);
  for (const kernel of ["fused", "matmul", "flash"] as const) {
    for (const window of [0, 2.5]) {
      assert.throws(() => attention(q, q, q, { window, kernel }), /window must be an integer >= 1, got/);
    }
  }
  q.dispose();
});
