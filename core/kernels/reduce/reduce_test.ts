import assert from "node:assert/strict";
import { backward } from "../../autograd.ts";
import { type DType, roundToF16 } from "../../dtype.ts";
import type { Engine } from "../../engine.ts";
import type { Tensor } from "../../tensor.ts";
import { assertClose, finiteDiff, gpuTest, gpuTestSubgroups, probe, randn } from "../../testing.ts";
import { broadcastTo, mean, sum, sumTo } from "./reduce.ts";
import {
  broadcastToCpu,
  meanBackwardCpu,
  meanCpu,
  shapeSize,
  sumBackwardCpu,
  sumCpu,
  sumToCpu,
} from "./reduce_cpu.ts";

const dot = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
};

// ------------------------------------------------------------------ CPU references' backward vs finite differences

Deno.test("reduce cpu: sum / mean / sumTo / broadcastTo backward match finite differences", () => {
  const shape = [3, 4, 5];
  const x = randn(60, 1);
  for (const axis of ["all", 0, 1, -1] as const) {
    for (const [fwd, bwd] of [[sumCpu, sumBackwardCpu], [meanCpu, meanBackwardCpu]] as const) {
      const outSize = fwd(x, shape, axis).data.length;
      const p = probe(outSize, 7);
      const fd = finiteDiff((xx) => dot(fwd(xx, shape, axis).data, p), x);
      assertClose(bwd(p, shape, axis), fd, { atol: 1e-7, label: `${fwd.name} axis ${axis}` });
    }
  }
  for (const to of [[5], [4, 1], [3, 1, 5], [1], []]) {
    const p = probe(shapeSize(to), 3);
    const fd = finiteDiff((xx) => dot(sumToCpu(xx, shape, to), p), x);
    assertClose(broadcastToCpu(p, to, shape), fd, { atol: 1e-7, label: `sumTo [${to}]` });
    const y = randn(shapeSize(to), 4), q = probe(60, 5);
    const fd2 = finiteDiff((yy) => dot(broadcastToCpu(yy, to, shape), q), y);
    assertClose(sumToCpu(q, shape, to), fd2, { atol: 1e-7, label: `broadcastTo [${to}]` });
  }
});

Deno.test("reduce cpu: shapes", () => {
  assert.deepEqual(sumCpu([1, 2, 3, 4, 5, 6], [2, 3], -1), { data: Float64Array.from([6, 15]), shape: [2] });
  assert.deepEqual(sumCpu([1, 2, 3, 4, 5, 6], [2, 3], 0, true), {
    data: Float64Array.from([5, 7, 9]),
    shape: [1, 3],
  });
  assert.deepEqual(meanCpu([1, 2, 3, 4, 5, 6], [2, 3]), { data: Float64Array.from([3.5]), shape: [] });
  assert.throws(() => sumCpu([1, 2], [2], 1), /axis 1 out of range/);
  assert.throws(() => sumToCpu([1, 2, 3, 4, 5, 6], [2, 3], [2]), /\[2\] does not broadcast to \[2,3\]/);
});

// ------------------------------------------------------------------ GPU vs CPU

/** Runs `f` on a parameter of `data`, back-propagates `g`; returns the output, its shape and x's gradient. */
async function runGpu(
  e: Engine,
  data: Float32Array,
  shape: number[],
  dtype: DType,
  f: (x: Tensor) => Tensor,
  gData: (n: number) => Float32Array,
): Promise<{ y: Float32Array; yShape: readonly number[]; dx: Float32Array; g: Float32Array }> {
  const x = e.param(data, shape, { dtype });
  const { y, g } = e.tidy(() => {
    const y = f(x);
    const g = gData(y.size);
    backward(y, e.tensor(g, y.shape, dtype));
    return { y, g };
  });
  const out = {
    y: await y.read() as Float32Array,
    yShape: y.shape,
    dx: await x.grad!.read() as Float32Array,
    g,
  };
  y.dispose();
  x.dispose();
  return out;
}

// Reduced lengths below, at and above one workgroup's 1024-element chunk, none a multiple of a subgroup.
const shapes = [[1], [7], [33, 129], [3, 7, 129], [3, 37, 1000], [2, 3001]];

for (const dtype of ["f32", "f16"] as const) {
  const tol = dtype === "f32" ? { atol: 1e-5, rtol: 1e-5 } : { atol: 2e-3, rtol: 2e-3 };
  const prep = (a: Float32Array) => (dtype === "f16" ? roundToF16(a) : a);

  gpuTestSubgroups(`reduce ${dtype}: sum and mean, all and per axis, forward and backward`, async (e) => {
    if (dtype === "f16" && !e.hasF16) return;
    for (const shape of shapes) {
      const axes: (number | "all")[] = ["all", -1, ...shape.map((_, k) => k)];
      for (const axis of axes) {
        for (const keepDims of [false, true]) {
          for (
            const [kind, op, fwd, bwd] of [
              ["sum", sum, sumCpu, sumBackwardCpu],
              ["mean", mean, meanCpu, meanBackwardCpu],
            ] as const
          ) {
            const x = prep(randn(shapeSize(shape), 11));
            const r = await runGpu(e, x, shape, dtype, (t) => op(t, axis, keepDims), (n) => prep(probe(n)));
            const ref = fwd(x, shape, axis, keepDims);
            const label = `${kind} [${shape}] axis ${axis} keepDims ${keepDims}`;
            assert.deepEqual(r.yShape, ref.shape, label);
            // f16 sums round once at the end: relative to the magnitude of the summed values.
            const atol = dtype === "f16" ? 2e-3 * Math.sqrt(shapeSize(shape)) : tol.atol;
            assertClose(r.y, ref.data, { ...tol, atol, label });
            assertClose(r.dx, bwd(r.g, shape, axis), { ...tol, label: label + " grad" });
          }
        }
      }
    }
  });

  gpuTestSubgroups(`reduce ${dtype}: sumTo and broadcastTo, forward and backward`, async (e) => {
    if (dtype === "f16" && !e.hasF16) return;
    const cases: [number[], number[]][] = [
      [[3, 7, 129], [129]],
      [[3, 7, 129], [7, 1]],
      [[3, 7, 129], [3, 1, 129]],
      [[3, 7, 129], [3, 7, 1]],
      [[3, 7, 129], [1, 7, 129]],
      [[3, 7, 129], [1]],
      [[3, 7, 129], []],
      [[33, 129], [1, 129]],
      [[33, 129], [33, 1]],
      [[7], [7]],
      [[2, 1, 3], [1, 3]],
    ];
    for (const [big, small] of cases) {
      const x = prep(randn(shapeSize(big), 21));
      const r = await runGpu(e, x, big, dtype, (t) => sumTo(t, small), (n) => prep(probe(n)));
      assert.deepEqual(r.yShape, small);
      const atol = dtype === "f16" ? 2e-3 * Math.sqrt(shapeSize(big) / shapeSize(small)) : tol.atol;
      assertClose(r.y, sumToCpu(x, big, small), { ...tol, atol, label: `sumTo [${big}] -> [${small}]` });
      assertClose(r.dx, broadcastToCpu(r.g, small, big), {
        ...tol,
        label: `sumTo [${big}] -> [${small}] grad`,
      });

      const s = prep(randn(shapeSize(small), 22));
      const b = await runGpu(e, s, small, dtype, (t) => broadcastTo(t, big), (n) => prep(probe(n)));
      assert.deepEqual(b.yShape, big);
      assertClose(b.y, broadcastToCpu(s, small, big), {
        ...tol,
        label: `broadcastTo [${small}] -> [${big}]`,
      });
      const atol2 = dtype === "f16" ? 2e-3 * Math.sqrt(shapeSize(big) / shapeSize(small)) : tol.atol;
      assertClose(b.dx, sumToCpu(b.g, big, small), {
        ...tol,
        atol: atol2,
        label: `broadcastTo grad [${small}]`,
      });
    }
  });
}

gpuTest("reduce: errors name the shapes and dtypes", (e) => {
  const x = e.tensor([1, 2, 3, 4, 5, 6], [2, 3]);
  assert.throws(() => sum(x, 2), /axis 2 out of range for shape \[2,3\]/);
  assert.throws(() => sumTo(x, [2]), /sumTo: shape \[2\] does not broadcast to \[2,3\]/);
  assert.throws(() => broadcastTo(x, [3, 3]), /broadcastTo: shape \[2,3\] does not broadcast to \[3,3\]/);
  const ids = e.tensor([1, 2], [2], "i32");
  assert.throws(() => sum(ids), /i32\[2\] is not f32 or f16/);
  x.dispose();
  ids.dispose();
});

gpuTestSubgroups("reduce: millions of elements, several passes, accurate in f32", async (e) => {
  // 1_100_001 elements: > 1024^2, so the sum takes three passes (1075 partials, then 2, then 1).
  // Values near 1 make a serial f32 loop drift by ~1e-5 relative; the tree stays near 1e-7.
  const n = 1_100_001;
  const data = randn(n, 5);
  for (let i = 0; i < n; i++) data[i] += 1;
  let exact = 0;
  for (let i = 0; i < n; i++) exact += data[i];
  const x = e.tensor(data, [n]);
  const [s, m] = e.tidy(() => [sum(x), mean(x)]);
  const got = (await s.read())[0], gotMean = (await m.read())[0];
  assert.ok(Math.abs(got - exact) <= 2e-6 * Math.abs(exact), `sum ${got} vs ${exact}`);
  assert.ok(Math.abs(gotMean - exact / n) <= 2e-6 * Math.abs(exact / n), `mean ${gotMean} vs ${exact / n}`);
  // Rows of 366_667: each output is reduced in two passes.
  const r = e.tidy(() => sum(x.view([3, 366_667]), -1));
  assertClose(await r.read(), sumCpu(data, [3, 366_667], -1).data, { atol: 0, rtol: 2e-6, label: "rows" });
  // Columns: [4099, 33] summed to [33] (strided reads, five partial sums per column).
  const c = e.tensor(data.subarray(0, 4099 * 33), [4099, 33]);
  const cols = e.tidy(() => sumTo(c, [33]));
  const colsRef = sumToCpu(data.subarray(0, 4099 * 33), [4099, 33], [33]);
  assertClose(await cols.read(), colsRef, { atol: 0, rtol: 2e-6, label: "columns" });
  for (const t of [s, m, r, c, cols, x]) t.dispose();
});
