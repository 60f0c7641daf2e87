import assert from "node:assert/strict";
import { backward } from "../../autograd.ts";
import { Engine } from "../../engine.ts";
import { assertClose, gpuTest, gpuTestSubgroups, maxAbsDiff } from "../../testing.ts";
import { attention, attentionBackward, attentionForward, type AttentionOptions } from "./attention.ts";
import { attentionInputs } from "./testdata/inputs.ts";
import { attentionBackwardCpu, attentionCpu, type AttentionDims } from "./attention_cpu.ts";
import { flashTiles } from "./attention_flash.ts";

const F32 = { atol: 2e-5, rtol: 1e-4 };
// f16 storage: inputs are exact f16 values; outputs and gradients are rounded to f16 (relative 2^-11)
// after f32 math, so allow a few f16 ulps.
const F16 = { atol: 4e-3, rtol: 4e-3 };

/**
 * Runs the flash forward and backward kernels (attentionForward / attentionBackward, no autograd) and
 * compares out, lse, dq, dk, dv with the CPU reference.
 */
async function check(
  e: Engine,
  d: AttentionDims,
  opts: AttentionOptions,
  dtype: "f32" | "f16" = "f32",
): Promise<void> {
  const tol = dtype === "f16" ? F16 : F32;
  const x = attentionInputs(d, 7 * d.T + d.HS, dtype === "f16");
  const qShape = [d.B, d.NH, d.T, d.HS], kShape = [d.B, d.NKV, d.T, d.HS];
  const o = { ...opts, kernel: "flash" } as const;
  const got = await e.tidy(async () => {
    const q = e.tensor(x.q, qShape, dtype),
      k = e.tensor(x.k, kShape, dtype),
      v = e.tensor(x.v, kShape, dtype);
    const { out, lse } = attentionForward(q, k, v, o);
    const g = attentionBackward(q, k, v, out, lse, e.tensor(x.g, qShape, dtype), o);
    return {
      out: await out.read(),
      lse: await lse.read(),
      dq: await g.dq!.read(),
      dk: await g.dk!.read(),
      dv: await g.dv!.read(),
    };
  });
  const ref = attentionCpu(x.q, x.k, x.v, d, opts);
  const grad = attentionBackwardCpu(x.q, x.k, x.v, x.g, d, opts);
  const label = `${dtype} [${d.B},${d.NH}/${d.NKV},${d.T},${d.HS}] ${JSON.stringify(opts)}`;
  assertClose(got.out, ref.out, { ...tol, label: `${label} out` });
  assertClose(got.lse, ref.lse, { ...F32, label: `${label} lse` });
  assertClose(got.dq, grad.dq, { ...tol, label: `${label} dq` });
  assertClose(got.dk, grad.dk, { ...tol, label: `${label} dk` });
  assertClose(got.dv, grad.dv, { ...tol, label: `${label} dv` });
}

// Few distinct head sizes: each compiles its own pipelines. Causal, non-causal, windows, a custom scale;
// GQA with 2 and 4 query heads per kv head; T of 1, below a tile, unaligned, and spanning several
// blocks and tiles; HS not a multiple of 4 (3, 36).
const CASES: [AttentionDims, AttentionOptions][] = [
  [{ B: 1, NH: 1, NKV: 1, T: 1, HS: 8 }, {}],
  [{ B: 2, NH: 4, NKV: 2, T: 5, HS: 3 }, {}],
  [{ B: 1, NH: 4, NKV: 2, T: 37, HS: 32 }, {}],
  // T 95: the last tile of 4, 8 or 16 rows ends one row past T (clamped rows that must stay masked).
  [{ B: 1, NH: 4, NKV: 1, T: 95, HS: 32 }, { causal: false }],
  [{ B: 1, NH: 2, NKV: 2, T: 70, HS: 36 }, { window: 9 }],
  [{ B: 1, NH: 4, NKV: 1, T: 40, HS: 3 }, { causal: false, window: 5, scale: 0.3 }],
  [{ B: 1, NH: 2, NKV: 1, T: 130, HS: 64 }, {}],
  [{ B: 1, NH: 2, NKV: 1, T: 20, HS: 128 }, { scale: 0.05 }],
];

for (const [d, opts] of CASES) {
  gpuTestSubgroups(
    `attention flash f32: [${d.B},${d.NH}/${d.NKV},${d.T},${d.HS}] ${JSON.stringify(opts)}`,
    async (e) => await check(e, d, opts),
  );
}

gpuTestSubgroups(
  "attention flash f16: forward and backward against the CPU on f16-rounded inputs",
  async (e) => {
    if (!e.hasF16) return;
    await check(e, { B: 2, NH: 4, NKV: 2, T: 5, HS: 3 }, {}, "f16");
    await check(e, { B: 1, NH: 4, NKV: 2, T: 37, HS: 32 }, { causal: false, window: 6 }, "f16");
  },
);

gpuTest("attention flash: through autograd, the same as the kernels and the CPU", async (e) => {
  const d = { B: 2, NH: 4, NKV: 2, T: 37, HS: 32 };
  const x = attentionInputs(d, 3, false);
  const qShape = [d.B, d.NH, d.T, d.HS], kShape = [d.B, d.NKV, d.T, d.HS];
  const q = e.param(x.q, qShape), k = e.param(x.k, kShape), v = e.param(x.v, kShape);
  const out = await e.tidy(async () => {
    const o = attention(q, k, v, { kernel: "flash" });
    const { out } = attentionForward(q, k, v, { kernel: "flash" });
    assert.equal(maxAbsDiff(await o.read(), await out.read()), 0);
    backward(o, e.tensor(x.g, qShape));
    return await o.read();
  });
  const grad = attentionBackwardCpu(x.q, x.k, x.v, x.g, d);
  assertClose(out, attentionCpu(x.q, x.k, x.v, d).out, { ...F32, label: "out" });
  assertClose(await q.grad!.read(), grad.dq, { ...F32, label: "dq" });
  assertClose(await k.grad!.read(), grad.dk, { ...F32, label: "dk" });
  assertClose(await v.grad!.read(), grad.dv, { ...F32, label: "dv" });
  for (const t of [q, k, v]) t.dispose();
});

gpuTest("attention flash: tiles shrink to fit 16 KiB of workgroup memory and stay right", async () => {
  const s = await Engine.create({ limitOverrides: { maxComputeWorkgroupStorageSize: 16384 } });
  try {
    const d = { B: 1, NH: 2, NKV: 1, T: 21, HS: 128 };
    // 8 lanes in the forward too where subgroups hold 8 (lavapipe: 8) or the engine does not use them.
    const fwdLanes = !s.hasSubgroups || s.info.subgroupMinSize >= 8 ? 8 : 4;
    assert.deepEqual(flashTiles(s, "fwd", d), { own: 8, other: 8, lanes: fwdLanes });
    assert.deepEqual(flashTiles(s, "dq", d), { own: 8, other: 4, lanes: 4 });
    assert.deepEqual(flashTiles(s, "dkdv", d), { own: 8, other: 4, lanes: 4 });
    // Short sequences get small blocks; long ones the largest that fit.
    assert.deepEqual(flashTiles(s, "fwd", { ...d, T: 3, HS: 8 }), { own: 4, other: 4, lanes: 4 });
    assert.deepEqual(flashTiles(s, "fwd", { ...d, T: 300, HS: 8 }), { own: 64, other: 16, lanes: 4 });
    await check(s, d, { causal: false, window: 11 });
  } finally {
    await s.close();
  }
});
