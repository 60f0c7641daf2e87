import assert from "node:assert/strict";
import { backward } from "../../autograd.ts";
import { roundToF16 } from "../../dtype.ts";
import type { Engine } from "../../engine.ts";
import { assertClose, finiteDiff, gpuTest, randn } from "../../testing.ts";
import { rope, type RopeOptions } from "./rope.ts";
import { ropeBackwardCpu, ropeCpu, type RopeDims } from "./rope_cpu.ts";

Deno.test("rope cpu: backward matches finite differences", () => {
  for (const opts of [{}, { theta: 500, positionOffset: 7 }] as RopeOptions[]) {
    const d = { B: 2, NH: 2, T: 3, HS: 6 };
    const n = d.B * d.NH * d.T * d.HS;
    const x = Float64Array.from(randn(n, 1)), w = Float64Array.from(randn(n, 2));
    const loss = (xx: Float64Array) => ropeCpu(xx, d, opts).reduce((s, y, i) => s + y * w[i], 0);
    assertClose(ropeBackwardCpu(w, d, opts), finiteDiff(loss, x), { atol: 1e-8, rtol: 1e-6 });
  }
});

Deno.test("rope cpu: position 0 is the identity; pair 0 rotates by the position in radians", () => {
  const d = { B: 1, NH: 1, T: 2, HS: 4 };
  const y = ropeCpu(Float64Array.from([1, 2, 3, 4, 1, 0, 0, 0]), d);
  assertClose(y.subarray(0, 4), [1, 2, 3, 4], { atol: 1e-12 });
  // row t = 1, x = e_0: pair (0, 2) rotates by angle 1, so y[0] = cos 1 and y[2] = sin 1.
  assertClose(y.subarray(4), [Math.cos(1), 0, Math.sin(1), 0], { atol: 1e-12 });
});

async function checkAgainstCpu(
  e: Engine,
  d: RopeDims,
  opts: RopeOptions,
  dtype: "f32" | "f16",
  tol: { atol: number; rtol: number },
): Promise<void> {
  const n = d.B * d.NH * d.T * d.HS, shape = [d.B, d.NH, d.T, d.HS];
  const r = (a: Float32Array) => dtype === "f16" ? roundToF16(a) : a;
  const x = r(randn(n, d.T + d.HS)), g = r(randn(n, 3));
  const xt = e.param(x, shape, { dtype });
  const y = await e.tidy(async () => {
    const yt = rope(xt, opts);
    backward(yt, e.tensor(g, shape, dtype));
    return await yt.read();
  });
  const label = `${dtype} [${shape}] ${JSON.stringify(opts)}`;
  assertClose(y, ropeCpu(x, d, opts), { ...tol, label: `${label} y` });
  assertClose(await xt.grad!.read(), ropeBackwardCpu(g, d, opts), { ...tol, label: `${label} dx` });
  xt.dispose();
}

const CASES: [RopeDims, RopeOptions][] = [
  [{ B: 1, NH: 1, T: 1, HS: 8 }, {}],
  [{ B: 2, NH: 3, T: 33, HS: 24 }, { positionOffset: 5 }],
  [{ B: 1, NH: 2, T: 129, HS: 64 }, { theta: 500000 }],
  [{ B: 1, NH: 1, T: 7, HS: 128 }, {}],
];

gpuTest("rope gpu f32: forward and backward against the CPU", async (e) => {
  // Angles are f32 (as in Hugging Face's f32 cache): their error is about position * 1e-7 rad.
  for (const [d, opts] of CASES) await checkAgainstCpu(e, d, opts, "f32", { atol: 5e-5, rtol: 1e-5 });
  await checkAgainstCpu(e, { B: 1, NH: 1, T: 9, HS: 16 }, { positionOffset: 4000 }, "f32", {
    atol: 2e-3,
    rtol: 0,
  });
});

gpuTest("rope gpu f16: forward and backward against the CPU on f16-rounded inputs", async (e) => {
  if (!e.hasF16) return;
  // Results are rounded to f16 after f32 math: a couple of f16 ulps (2^-11 relative).
  for (const [d, opts] of CASES) await checkAgainstCpu(e, d, opts, "f16", { atol: 2e-3, rtol: 2e-3 });
});

gpuTest("rope gpu: rejects an odd head size", (e) => {
  const x = e.zeros([1, 1, 2, 5]);
  assert.throws(() => rope(x), /HS even/);
  x.dispose();
});
