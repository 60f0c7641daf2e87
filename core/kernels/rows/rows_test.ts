import assert from "node:assert/strict";
import { backward } from "../../autograd.ts";
import { type DType, roundToF16 } from "../../dtype.ts";
import type { Engine } from "../../engine.ts";
import type { Tensor } from "../../tensor.ts";
import { assertClose, finiteDiff, gpuTest, probe, randInt, randn } from "../../testing.ts";
import { concat, copyElements, gatherRows, scatterRows, slice } from "./rows.ts";
import {
  concatBackwardCpu,
  concatCpu,
  gatherRowsBackwardCpu,
  gatherRowsCpu,
  scatterRowsBackwardCpu,
  scatterRowsCpu,
  sliceBackwardCpu,
  sliceCpu,
} from "./rows_cpu.ts";

interface Run {
  /** The op's output values. */
  out: Float32Array;
  /** The output gradient that was back-propagated. */
  g: Float32Array;
  /** The inputs' gradients (null for frozen inputs). */
  grads: (Float32Array | null)[];
}

/** Random (f16-rounded for f16) input data of the given shapes. */
function inputs(shapes: number[][], dtype: DType, seed: number): Float32Array[] {
  return shapes.map((s, i) => {
    const x = randn(s.reduce((a, b) => a * b, 1), seed + i);
    return dtype === "f16" ? roundToF16(x) : x;
  });
}

/** Runs `op` on parameters holding `xs` (those in `frozen` without gradient) and back-propagates a random g. */
async function run(
  e: Engine,
  dtype: DType,
  xs: Float32Array[],
  shapes: number[][],
  op: (ts: Tensor[]) => Tensor,
  frozen: number[] = [],
): Promise<Run> {
  const params = xs.map((x, i) => e.param(x, shapes[i], { dtype }));
  for (const i of frozen) params[i].requiresGrad = false;
  const result = await e.tidy(async () => {
    const y = op(params);
    assert.equal(y.dtype, dtype);
    let g = randn(y.size, 77);
    if (dtype === "f16") g = roundToF16(g);
    backward(y, e.tensor(g, y.shape, dtype));
    const out = (await y.read()) as Float32Array;
    const grads = await Promise.all(
      params.map(async (p) => p.grad ? (await p.grad.read()) as Float32Array : null),
    );
    return { out, g, grads };
  });
  for (const p of params) p.dispose();
  return result;
}

const dtypes = (e: Engine): DType[] => (e.hasF16 ? ["f32", "f16"] : ["f32"]);

gpuTest("concat: each axis, forward and backward vs CPU, one input frozen", async (e) => {
  const cases: { shapes: number[][]; axis: number }[] = [
    { shapes: [[1, 5, 7], [4, 5, 7], [2, 5, 7]], axis: 0 },
    { shapes: [[3, 1, 7], [3, 6, 7]], axis: 1 },
    { shapes: [[3, 5, 1], [3, 5, 33], [3, 5, 2]], axis: -1 },
    { shapes: [[129], [1]], axis: 0 },
  ];
  for (const dtype of dtypes(e)) {
    for (const { shapes, axis } of cases) {
      const a = axis < 0 ? axis + shapes[0].length : axis;
      const xs = inputs(shapes, dtype, 1);
      const r = await run(e, dtype, xs, shapes, (ts) => concat(ts, axis), [1]);
      const label = `concat ${JSON.stringify(shapes)} axis ${axis} ${dtype}`;
      assertClose(r.out, concatCpu(xs, shapes, a), { atol: 0, rtol: 0, label });
      const want = concatBackwardCpu(r.g, shapes, a);
      assert.equal(r.grads[1], null);
      for (const i of [0, 2].filter((i) => i < shapes.length)) {
        assertClose(r.grads[i]!, want[i], { atol: 0, rtol: 0, label: `${label} d${i}` });
      }
    }
  }
});

gpuTest("concat: i32 ids along the sequence", async (e) => {
  const a = e.tensor([1, 2, 3, 4], [2, 2], "i32"), b = e.tensor([5, 6], [2, 1], "i32");
  const y = concat([a, b], 1);
  assert.deepEqual([...await y.read()], [1, 2, 5, 3, 4, 6]);
  for (const t of [a, b, y]) t.dispose();
});

gpuTest("slice: each axis, forward and backward vs CPU", async (e) => {
  const shape = [3, 5, 33];
  const cases = [[0, 1, 3], [1, 0, 1], [1, 2, 5], [-1, 7, 30], [2, 0, 33]];
  for (const dtype of dtypes(e)) {
    for (const [axis, start, end] of cases) {
      const a = axis < 0 ? axis + 3 : axis;
      const xs = inputs([shape], dtype, 2);
      const r = await run(e, dtype, xs, [shape], ([x]) => slice(x, axis, start, end));
      const label = `slice axis ${axis} ${start}..${end} ${dtype}`;
      assertClose(r.out, sliceCpu(xs[0], shape, a, start, end), { atol: 0, rtol: 0, label });
      assertClose(r.grads[0]!, sliceBackwardCpu(r.g, shape, a, start, end), { atol: 0, rtol: 0, label });
    }
  }
  const x = e.tensor([1, 2, 3], [3]);
  assert.throws(() => slice(x, 0, 2, 4), /out of bounds/);
  assert.throws(() => slice(x, 1, 0, 1), /axis 1 out of range/);
  x.dispose();
});

gpuTest("gatherRows: duplicates and out-of-range rows, forward and backward vs CPU", async (e) => {
  for (const dtype of dtypes(e)) {
    for (const [N, C, M] of [[33, 7, 129], [1, 1, 7], [129, 33, 1]]) {
      const idx = randInt(M, N, 3);
      if (M > 2) [idx[0], idx[1], idx[2]] = [idx[2], -1, N]; // a duplicate and two out-of-range
      const xs = inputs([[N, C]], dtype, 4);
      const r = await run(e, dtype, xs, [[N, C]], ([x]) => gatherRows(x, e.tensor(idx, [M], "i32")));
      const label = `gatherRows N=${N} C=${C} M=${M} ${dtype}`;
      // f16: the sums of duplicates are f32, then rounded once to f16.
      const tol = dtype === "f16" ? { atol: 1e-3, rtol: 2e-3 } : { atol: 1e-5, rtol: 1e-5 };
      assertClose(r.out, gatherRowsCpu(xs[0], idx, N, C), { atol: 0, rtol: 0, label });
      assertClose(r.grads[0]!, gatherRowsBackwardCpu(r.g, idx, N, C), { ...tol, label });
    }
  }
});

gpuTest("scatterRows: forward and backward vs CPU, frozen base", async (e) => {
  for (const dtype of dtypes(e)) {
    for (const [N, C, M] of [[33, 7, 7], [5, 1, 5], [129, 33, 1]]) {
      // M unique rows: a shuffled prefix of 0..N-1.
      const perm = Array.from({ length: N }, (_, i) => i);
      const r01 = randn(N, 5);
      perm.sort((a, b) => r01[a] - r01[b]);
      const idx = Int32Array.from(perm.slice(0, M));
      const shapes = [[N, C], [M, C]];
      const xs = inputs(shapes, dtype, 6);
      for (const frozen of [[], [0]]) {
        const r = await run(
          e,
          dtype,
          xs,
          shapes,
          ([b, s]) => scatterRows(b, e.tensor(idx, [M], "i32"), s),
          frozen,
        );
        const label = `scatterRows N=${N} C=${C} M=${M} ${dtype} frozen=[${frozen}]`;
        assertClose(r.out, scatterRowsCpu(xs[0], idx, xs[1], C), { atol: 0, rtol: 0, label });
        const want = scatterRowsBackwardCpu(r.g, idx, C);
        if (frozen.length) assert.equal(r.grads[0], null);
        else assertClose(r.grads[0]!, want.dbase, { atol: 0, rtol: 0, label: `${label} dbase` });
        assertClose(r.grads[1]!, want.dsrc, { atol: 0, rtol: 0, label: `${label} dsrc` });
      }
    }
  }
});

gpuTest("scatterRows: out-of-range rows are skipped", async (e) => {
  const base = e.tensor([1, 2, 3, 4], [2, 2]);
  const y = scatterRows(base, e.tensor([5, 1, -1], [3], "i32"), e.tensor([9, 9, 7, 8, 9, 9], [3, 2]));
  assertClose(await y.read(), [1, 2, 7, 8], { atol: 0 });
  base.dispose();
});

/** The loss sum(out * probe) of a CPU op, for finite differences. */
function lossOf(out: Float64Array): number {
  const p = probe(out.length);
  return out.reduce((s, y, i) => s + y * p[i], 0);
}

Deno.test("rows CPU backward matches finite differences", () => {
  const tol = { atol: 1e-6 };
  // concat on the middle axis
  const shapes = [[2, 1, 3], [2, 3, 3]];
  const [a, b] = inputs(shapes, "f32", 8);
  const gCat = concatBackwardCpu(probe(2 * 4 * 3), shapes, 1);
  assertClose(gCat[0], finiteDiff((x) => lossOf(concatCpu([x, b], shapes, 1)), a), tol);
  assertClose(gCat[1], finiteDiff((x) => lossOf(concatCpu([a, x], shapes, 1)), b), tol);
  // slice
  const sh = [3, 4, 2];
  const x = randn(24, 9);
  assertClose(
    sliceBackwardCpu(probe(3 * 2 * 2), sh, 1, 1, 3),
    finiteDiff((v) => lossOf(sliceCpu(v, sh, 1, 1, 3)), x),
    tol,
  );
  // gather with duplicates and an out-of-range index
  const idx = new Int32Array([2, 0, 2, 4, -1]);
  const N = 4, C = 3;
  const xr = randn(N * C, 10);
  assertClose(
    gatherRowsBackwardCpu(probe(idx.length * C), idx, N, C),
    finiteDiff((v) => lossOf(gatherRowsCpu(v, idx, N, C)), xr),
    tol,
  );
  // scatter
  const sidx = new Int32Array([3, 0]);
  const base = randn(N * C, 11), src = randn(2 * C, 12);
  const g = scatterRowsBackwardCpu(probe(N * C), sidx, C);
  assertClose(g.dbase, finiteDiff((v) => lossOf(scatterRowsCpu(v, sidx, src, C)), base), tol);
  assertClose(g.dsrc, finiteDiff((v) => lossOf(scatterRowsCpu(base, sidx, v, C)), src), tol);
});

gpuTest(
  "copyElements: a run of elements between offsets, the rest untouched; out-of-range runs refused",
  async (e) => {
    for (const dtype of (e.hasF16 ? ["f32", "f16"] : ["f32"]) as DType[]) {
      const src = e.tensor([1, 2, 3, 4, 5, 6, 7], [7], dtype), dst = e.tensor([0, 0, 0, 0, 0], [5], dtype);
      copyElements(src, 3, dst, 1, 3);
      assert.deepEqual([...await dst.read()], [0, 4, 5, 6, 0], dtype);
      assert.throws(() => copyElements(src, 5, dst, 0, 3), /copyElements: 3 elements from/);
      assert.throws(() => copyElements(src, 0, dst, 3, 3), /copyElements: 3 elements from/);
      src.dispose();
      dst.dispose();
    }
  },
);
