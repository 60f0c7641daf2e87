import assert from "node:assert/strict";
import { roundToF16 } from "../../dtype.ts";
import type { Engine } from "../../engine.ts";
import type { Tensor } from "../../tensor.ts";
import { assertClose, gpuTest, randn } from "../../testing.ts";
import { AdamW } from "./adamw.ts";
import { type AdamWHyper, adamwStepCpu } from "./adamw_cpu.ts";

/** Sets (or with null removes) a parameter's gradient. */
function setGrad(e: Engine, p: Tensor, g: Float32Array | null): void {
  p.grad?.dispose();
  p.grad = null;
  if (!g) return;
  p.grad = e.tensor(g, p.shape, p.dtype);
  e.untrack(p.grad);
}

gpuTest(
  "AdamW: several f32 steps vs CPU, weight decay, a parameter skipped on some steps, lr override",
  async (e) => {
    const h: AdamWHyper = { lr: 1e-2, beta1: 0.8, beta2: 0.95, eps: 1e-6, weightDecay: 0.1 };
    const sizes = [[129], [7, 3], [1]];
    const host = sizes.map((s, i) => randn(s.reduce((a, b) => a * b, 1), i + 1));
    const params = host.map((x, i) => e.param(x, sizes[i]));
    const opt = new AdamW(params, h);
    const cpu = host.map((x) => ({
      p: Float32Array.from(x),
      m: new Float32Array(x.length),
      v: new Float32Array(x.length),
      t: 0,
    }));
    for (let step = 1; step <= 5; step++) {
      const lr = step === 4 ? 3e-3 : h.lr;
      params.forEach((p, i) => {
        const skip = i === 1 && (step === 2 || step === 5); // no gradient: not updated, its step count stays
        const g = skip ? null : randn(p.size, 100 * step + i, step === 3 ? 1e-3 : 1);
        setGrad(e, p, g);
        if (g) adamwStepCpu(cpu[i].p, g, cpu[i].m, cpu[i].v, ++cpu[i].t, { ...h, lr });
      });
      if (step === 4) opt.step(lr);
      else opt.step();
    }
    for (let i = 0; i < params.length; i++) {
      assertClose(await params[i].read(), cpu[i].p, { atol: 1e-6, rtol: 1e-5, label: `param ${i}` });
    }
    const st = await opt.state();
    assert.equal(st.step, 5);
    assert.deepEqual(st.params.map((s) => s!.step), [5, 3, 5]);
    st.params.forEach((s, i) => {
      assertClose(s!.m, cpu[i].m, { atol: 1e-7, rtol: 1e-5, label: `m ${i}` });
      assertClose(s!.v, cpu[i].v, { atol: 1e-9, rtol: 1e-5, label: `v ${i}` });
      assert.equal(s!.master, undefined);
    });
    opt.dispose();
    for (const p of params) p.dispose();
  },
);

gpuTest("AdamW: f16 parameter keeps an f32 master copy", async (e) => {
  if (!e.hasF16) return;
  // Small steps on values near 1: each is below half an f16 ulp (2^-11), so only the master sees them.
  const h: AdamWHyper = { lr: 1e-4, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01 };
  const n = 33;
  const init = roundToF16(randn(n, 7, 0.1).map((x) => 1 + x));
  const p = e.param(init, [n], { dtype: "f16" });
  const opt = new AdamW([p], h);
  const master = Float32Array.from(init), m = new Float32Array(n), v = new Float32Array(n);
  for (let t = 1; t <= 6; t++) {
    const g = roundToF16(randn(n, 200 + t));
    setGrad(e, p, g);
    opt.step();
    adamwStepCpu(master, g, m, v, t, h);
  }
  const st = await opt.state();
  assertClose(st.params[0]!.master!, master, { atol: 1e-6, rtol: 1e-6, label: "master" });
  assertClose(st.params[0]!.m, m, { atol: 1e-7, rtol: 1e-5, label: "m" });
  // The parameter is the master rounded to f16 (either neighbour: WGSL leaves the rounding mode open).
  assertClose(await p.read(), roundToF16(Float32Array.from(master)), {
    atol: 0,
    rtol: 2 ** -10,
    label: "param",
  });
  assert.ok(master.some((x, i) => Math.abs(x - init[i]) > 1e-4), "the steps moved the master weights");
  opt.dispose();
  p.dispose();
});

gpuTest("AdamW: state() / loadState() resume gives the same trajectory", async (e) => {
  const h = { lr: 5e-2, weightDecay: 0.05 };
  const dtypes = e.hasF16 ? (["f32", "f16"] as const) : (["f32"] as const);
  for (const dtype of dtypes) {
    const x0 = roundToF16(randn(7, 11));
    const a = e.param(x0, [7], { dtype });
    const optA = new AdamW([a], h);
    for (let t = 1; t <= 2; t++) {
      setGrad(e, a, roundToF16(randn(7, 300 + t)));
      optA.step();
    }
    const saved = await optA.state();
    assert.equal(saved.params[0]!.master !== undefined, dtype === "f16");
    // A fresh optimizer on a copy of the parameter, restored from the saved state.
    const b = e.param(await a.read(), [7], { dtype });
    const optB = new AdamW([b], h);
    optB.loadState(saved);
    assert.equal(optB.stepCount, 2);
    const g = roundToF16(randn(7, 400));
    setGrad(e, a, g);
    setGrad(e, b, g);
    optA.step();
    optB.step();
    assertClose(await b.read(), await a.read(), { atol: 0, rtol: 0, label: dtype });
    assert.throws(() => optB.loadState({ step: 1, params: [] }), /0 entries for 1 parameters/);
    for (const t of [a, b]) t.dispose();
    optA.dispose();
    optB.dispose();
  }
});

gpuTest("AdamW: defaults, and a parameter without gradient is untouched", async (e) => {
  const p = e.param([1, 2, 3], [3]);
  const opt = new AdamW([p], { lr: 0.1 });
  assert.deepEqual([opt.beta1, opt.beta2, opt.eps, opt.weightDecay], [0.9, 0.999, 1e-8, 0]);
  opt.step();
  assertClose(await p.read(), [1, 2, 3], { atol: 0 });
  assert.deepEqual((await opt.state()).params, [null]);
  // The first AdamW step moves each weight by lr * sign(g) (m / bc1 = g, sqrt(v / bc2) = |g|).
  setGrad(e, p, new Float32Array([0.5, -2, 1e-3]));
  opt.step();
  assertClose(await p.read(), [0.9, 2.1, 2.9], { atol: 1e-5 });
  opt.dispose();
  p.dispose();
});
