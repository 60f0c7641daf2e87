import assert from "node:assert/strict";
import { type DType, roundToF16 } from "../../dtype.ts";
import { assertClose, gpuTest, randn } from "../../testing.ts";
import { clipGradNorm, globalNorm } from "./clip.ts";
import { clipGradNormCpu, globalNormCpu } from "./clip_cpu.ts";

// Sizes around the workgroup (256) and the per-tensor cap of 256 workgroups (65536 elements).
const sizes = [1, 7, 33 * 9, 257, 70001];

gpuTest("globalNorm: f32 and f16 tensors vs CPU", async (e) => {
  const dtypes: DType[] = e.hasF16 ? ["f32", "f16"] : ["f32"];
  const host = sizes.map((n, i) => {
    const x = randn(n, i + 1, 0.5);
    return dtypes[i % dtypes.length] === "f16" ? roundToF16(x) : x;
  });
  const norm = await e.tidy(() =>
    globalNorm(host.map((x, i) => e.tensor(x, [x.length], dtypes[i % dtypes.length])))
  ).read();
  assert.equal(norm.length, 1);
  assertClose(norm, [globalNormCpu(host)], { atol: 0, rtol: 1e-5 });
  const one = await e.tidy(() => globalNorm([e.tensor([3, -4], [2])])).read();
  assertClose(one, [5], { atol: 0, rtol: 1e-6 });
});

gpuTest("clipGradNorm: scales on the GPU without a readback, returns the pre-clip norm", async (e) => {
  const dtypes: DType[] = e.hasF16 ? ["f32", "f16"] : ["f32"];
  for (const dtype of dtypes) {
    const host = sizes.map((n, i) => {
      const g = randn(n, 10 + i);
      return dtype === "f16" ? roundToF16(g) : g;
    });
    const params = host.map((g) => {
      const p = e.param(new Float32Array(g.length), [g.length], { dtype });
      p.grad = e.tensor(g, [g.length], dtype);
      e.untrack(p.grad);
      return p;
    });
    const frozen = e.param([1, 2], [2]); // no gradient: ignored
    const expectedNorm = globalNormCpu(host);
    for (const maxNorm of [expectedNorm / 3, expectedNorm * 2]) {
      const want = host.map((g) => Float32Array.from(g));
      for (const [i, p] of params.entries()) e.write(p.grad!, host[i]);
      clipGradNormCpu(want, maxNorm);
      const submits = e.stats.submits;
      const norm = clipGradNorm([...params, frozen], maxNorm);
      assert.equal(e.stats.submits, submits, "clipping submitted work (it must not wait)");
      assertClose(await norm.read(), [expectedNorm], { atol: 0, rtol: 1e-5, label: "norm" });
      // f16: the scaled value is rounded once to f16.
      const tol = dtype === "f16" ? { atol: 1e-6, rtol: 2 ** -10 } : { atol: 1e-7, rtol: 1e-5 };
      for (const [i, p] of params.entries()) {
        assertClose(await p.grad!.read(), want[i], {
          ...tol,
          label: `${dtype} grad ${i} maxNorm ${maxNorm}`,
        });
      }
      norm.dispose();
    }
    assert.equal(frozen.grad, null);
    for (const p of [...params, frozen]) p.dispose();
  }
});

gpuTest("clipGradNorm: no gradients gives a zero norm", async (e) => {
  const p = e.param([1, 2], [2]);
  assertClose(await e.tidy(() => clipGradNorm([p], 1)).read(), [0], { atol: 0 });
  p.dispose();
});

Deno.test("clip CPU reference: norm of a 3-4-12 triangle, scaling to maxNorm", () => {
  const g = [new Float64Array([3, 4]), new Float64Array([12])];
  assert.equal(clipGradNormCpu(g, 6.5), 13);
  assertClose([globalNormCpu(g)], [6.5], { rtol: 1e-6 });
  assertClose(g[0], [1.5, 2], { rtol: 1e-6 });
});
