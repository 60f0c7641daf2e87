import assert from "node:assert/strict";
import type { Engine } from "../core/engine.ts";
import type { DType } from "../core/dtype.ts";
import type { Tensor } from "../core/tensor.ts";
import { assertClose, gpuTest, randn } from "../core/testing.ts";
import { sha256File } from "../io/sha256.ts";
import { DataParallel } from "./data_parallel.ts";
import { type FakeComm, Rendezvous } from "./testdata/fake_collectives.ts";
import type { Accumulated } from "./step.ts";

/** Two data-parallel ranks over one rendezvous, and their endpoints. */
function pair(bucketBytes?: number): { dps: DataParallel[]; comms: FakeComm[] } {
  const comms = new Rendezvous(2).endpoints();
  return { dps: comms.map((c) => new DataParallel(c, { bucketBytes })), comms };
}

/** Sets `p.grad` to `values` (a new untracked tensor of p's dtype), as autograd leaves it. */
function setGrad(e: Engine, p: Tensor, values: Float32Array | null): void {
  p.grad?.dispose();
  p.grad = null;
  if (!values) return;
  const g = e.empty(p.shape, p.dtype);
  e.untrack(g);
  e.write(g, values);
  p.grad = g;
}

function disposeAll(params: Tensor[]): void {
  for (const p of params) {
    p.grad?.dispose();
    p.grad = null;
    p.dispose();
  }
}

const ulp16 = { atol: 2e-3, rtol: 2e-3 }; // f16 rounding of the inputs and of the mean

Deno.test("the fake collectives themselves: sums in place, gathers in rank order, broadcasts", async () => {
  const [a, b] = new Rendezvous(2).endpoints();
  const x = Float32Array.from([1, 2, 3]), y = Float32Array.from([10, 20, 30]);
  await Promise.all([a.allReduce(x), b.allReduce(y)]);
  assert.deepEqual([...x], [11, 22, 33]);
  assert.deepEqual([...y], [11, 22, 33]);
  const [g0, g1] = await Promise.all([
    a.allGather(Uint8Array.from([1, 2])),
    b.allGather(Uint8Array.from([3, 4])),
  ]);
  assert.deepEqual([...g0], [1, 2, 3, 4]);
  assert.deepEqual([...g1], [1, 2, 3, 4]);
  const p = Uint8Array.from([0, 0]), q = Uint8Array.from([7, 8]);
  await Promise.all([a.broadcast(p, 1), b.broadcast(q, 1), a.barrier(), b.barrier()]);
  assert.deepEqual([...p], [7, 8]);
  await assert.rejects(
    Promise.all([a.barrier(), b.allReduce(new Float32Array(1))]),
    /rank 1 called allReduce/,
  );
});

Deno.test("DataParallel: rank and size come from the collectives; bucketBytes under 4 is refused", () => {
  const { dps } = pair();
  assert.deepEqual(dps.map((d) => [d.rank, d.size]), [[0, 2], [1, 2]]);
  assert.equal(dps[1].comm.rank, 1);
  assert.throws(
    () => new DataParallel(new Rendezvous(1).endpoints()[0], { bucketBytes: 3 }),
    /bucketBytes 3/,
  );
  assert.throws(
    () => new DataParallel(new Rendezvous(1).endpoints()[0], { bucketBytes: NaN }),
    /bucketBytes/,
  );
});

gpuTest("reduce: each gradient becomes the mean over the ranks, bucket by bucket; sums add up", async (e) => {
  // Sizes 12, 5, 40 (larger than a bucket), 6, 7, 3; buckets of 16 values (64 bytes).
  const shapes: { shape: number[]; dtype: DType }[] = [
    { shape: [3, 4], dtype: "f32" },
    { shape: [5], dtype: "f32" },
    { shape: [40], dtype: "f32" },
    { shape: [2, 3], dtype: "f32" },
    { shape: [7], dtype: "f32" }, // no gradient on rank 1
    { shape: [3], dtype: "f32" }, // no gradient on either rank
  ];
  if (e.hasF16) shapes.push({ shape: [9], dtype: "f16" }, { shape: [2, 2], dtype: "f16" });
  const sizes = shapes.map((s) => s.shape.reduce((a, b) => a * b, 1));
  const ranks = [0, 1].map(() =>
    shapes.map((s, i) => e.param(randn(sizes[i], 100 + i), s.shape, { dtype: s.dtype }))
  );
  const grads = [0, 1].map((r) =>
    sizes.map((n, i) => {
      if (i === 5 || (i === 4 && r === 1)) return null;
      return randn(n, 10 * r + i + 1);
    })
  );
  ranks.forEach((params, r) => params.forEach((p, i) => setGrad(e, p, grads[r][i])));
  // What the GPU holds (f16 rounds), then the expected means.
  const held = await Promise.all(
    ranks.map((params) =>
      Promise.all(params.map((p) => p.grad ? p.grad.read() as Promise<Float32Array> : null))
    ),
  );
  const expected = sizes.map((n, i) => {
    const out = new Float32Array(n);
    for (const r of [0, 1]) {
      const g = held[r][i];
      if (g) { for (let k = 0; k < n; k++) out[k] += g[k]; }
    }
    return out.map((v) => v / 2);
  });

  const pendingTerm = e.tensor(Float32Array.from([0.25]), [1]);
  const accs: Accumulated[] = [
    { count: 2, sums: { text: 1.5, total: 3 }, tokens: 100, pending: [{ text: pendingTerm }] },
    { count: 3, sums: { text: 2, total: 4, visual_image: 0.5 }, tokens: 70 },
  ];
  const { dps, comms } = pair(64);
  const out = await Promise.all(dps.map((dp, r) => dp.reduce(ranks[r], accs[r])));

  for (const r of [0, 1]) {
    assert.deepEqual(out[r], { count: 5, sums: { text: 3.75, total: 7, visual_image: 0.5 }, tokens: 170 });
    for (const [i, p] of ranks[r].entries()) {
      assert.ok(p.grad, `rank ${r} param ${i}: a gradient is created`);
      assert.equal(p.grad.dtype, p.dtype);
      assert.deepEqual(p.grad.shape, p.shape);
      const got = await p.grad.read();
      const tol = p.dtype === "f16" ? ulp16 : { atol: 1e-6, rtol: 1e-6 };
      assertClose(got, expected[i], { ...tol, label: `rank ${r} param ${i} (${p.dtype})` });
    }
  }
  // The pending term was read into rank 0's sums and freed.
  assert.deepEqual(accs[0].pending, []);
  assert.equal(accs[0].sums.text, 1.75);
  // Several all-reduces, each at most 16 values unless it is one tensor alone; every value once.
  for (const c of comms) {
    const reduces = c.calls.filter((k) => k.op === "allReduce").map((k) => k.length);
    assert.ok(reduces.length >= 4, `all-reduces of ${reduces}`);
    for (const n of reduces) assert.ok(n <= 16 || sizes.includes(n), `an all-reduce of ${n} values`);
    assert.ok(reduces.includes(40), "the 40-value tensor goes alone");
    assert.equal(reduces.reduce((a, b) => a + b, 0), sizes.reduce((a, b) => a + b, 0));
  }
  assert.deepEqual(comms[0].calls, comms[1].calls);
  for (const params of ranks) disposeAll(params);
});

gpuTest("reduce: one bucket for everything by default; no parameters still sums the records", async (e) => {
  const { dps, comms } = pair();
  const ranks = [0, 1].map(
    () => [e.param(Float32Array.from([1, 2]), [2]), e.param(new Float32Array(3), [3])],
  );
  ranks.forEach((params, r) => {
    setGrad(e, params[0], Float32Array.from([r, 2 * r]));
    setGrad(e, params[1], Float32Array.from([1, 2, 3]));
  });
  await Promise.all(dps.map((dp, r) => dp.reduce(ranks[r], { count: 1, sums: {}, tokens: 0 })));
  assert.deepEqual(comms[0].calls.filter((c) => c.op === "allReduce").map((c) => c.length), [5]);
  for (const params of ranks) {
    assert.deepEqual([...await params[0].grad!.read()], [0.5, 1]);
    assert.deepEqual([...await params[1].grad!.read()], [1, 2, 3]);
  }
  for (const params of ranks) disposeAll(params);
  const empty = await Promise.all(
    dps.map((dp, r) => dp.reduce([], { count: 1, sums: { text: r + 1 }, tokens: 4 })),
  );
  assert.deepEqual(empty[1], { count: 2, sums: { text: 3 }, tokens: 8 });
});

Deno.test("any: true on every rank when one says true; sum adds each key over the ranks", async () => {
  const { dps } = pair();
  assert.deepEqual(await Promise.all([dps[0].any(false), dps[1].any(true)]), [true, true]);
  assert.deepEqual(await Promise.all([dps[0].any(true), dps[1].any(false)]), [true, true]);
  assert.deepEqual(await Promise.all([dps[0].any(false), dps[1].any(false)]), [false, false]);
  assert.deepEqual(await Promise.all([dps[0].any(true), dps[1].any(true)]), [true, true]);
  const sums = await Promise.all([dps[0].sum({ a: 1, b: 2 }), dps[1].sum({ b: 3, c: 4.5 })]);
  assert.deepEqual(sums[0], { a: 1, b: 5, c: 4.5 });
  assert.deepEqual(sums[1], sums[0]);
  assert.deepEqual(await Promise.all([dps[0].sum({}), dps[1].sum({})]), [{}, {}]);
});

Deno.test("shareFromRoot: every rank gets rank 0's value, whatever its own", async () => {
  const { dps, comms } = pair();
  const value = { attention: [{ class: "f32 4/4 16", size: 255, choice: "flash" }], text: "é ∑" };
  const got = await Promise.all([dps[0].shareFromRoot(value), dps[1].shareFromRoot({ other: 1 })]);
  assert.deepEqual(got, [value, value]);
  assert.deepEqual(comms[1].calls.map((c) => c.op), ["broadcast from 0", "broadcast from 0"]);
  assert.deepEqual(await Promise.all([dps[0].shareFromRoot(null), dps[1].shareFromRoot(7)]), [null, null]);
});

gpuTest("shareOwned: every rank ends with each owner's values", async (e) => {
  const start = [Float32Array.from([1, 2, 3]), Float32Array.from([4, 5]), Float32Array.from([6, 7, 8, 9])];
  const shapes = [[3], [2], [2, 2]];
  const dtypes: DType[] = ["f32", "f32", e.hasF16 ? "f16" : "f32"];
  const ranks = [0, 1].map(() => start.map((v, i) => e.param(v, shapes[i], { dtype: dtypes[i] })));
  const owners = [0, 1, 0];
  // Each rank "updates" what it owns; what it does not own it holds stale (different) values of.
  const updated = [
    Float32Array.from([-1, -2, -3]),
    Float32Array.from([0.5, 0.25]),
    Float32Array.from([10, 11, 12, 13]),
  ];
  ranks.forEach((params, r) =>
    params.forEach((p, i) => e.write(p, owners[i] === r ? updated[i] : start[i].map((x) => x * 100 + r)))
  );
  const { dps, comms } = pair();
  await Promise.all(dps.map((dp, r) => dp.shareOwned(ranks[r], owners)));
  for (const [r, params] of ranks.entries()) {
    for (const [i, p] of params.entries()) {
      assert.deepEqual([...await p.read()], [...updated[i]], `rank ${r} param ${i}`);
    }
  }
  assert.deepEqual(
    comms[0].calls.map((c) => c.op),
    ["broadcast from 0", "broadcast from 1", "broadcast from 0"],
  );
  await Promise.all(dps.map((dp) => dp.shareOwned([], [])));
  for (const params of ranks) disposeAll(params);
});

Deno.test("writeEach: rank 0's folder reaches every rank; each learns every file's SHA-256", async () => {
  const dir = await Deno.makeTempDir({ prefix: "asvr_dp_" });
  try {
    const { dps } = pair();
    const seen: string[] = [];
    const maps = await Promise.all(
      dps.map((dp) =>
        dp.writeEach(dp.rank === 0 ? dir : null, async (shared) => {
          seen[dp.rank] = shared;
          const file = `part-${dp.rank}.txt`;
          await Deno.writeTextFile(`${shared}/${file}`, `rank ${dp.rank}\n`.repeat(dp.rank + 1));
          return { file, sha256: await sha256File(`${shared}/${file}`) };
        })
      ),
    );
    assert.deepEqual(seen, [dir, dir]);
    const want = new Map([
      ["part-0.txt", await sha256File(`${dir}/part-0.txt`)],
      ["part-1.txt", await sha256File(`${dir}/part-1.txt`)],
    ]);
    assert.notEqual(want.get("part-0.txt"), want.get("part-1.txt"));
    assert.deepEqual(maps[0], want);
    assert.deepEqual(maps[1], want);
    // Rank 0 must name the folder.
    await assert.rejects(
      dps[0].writeEach(null, () => Promise.reject(new Error("not called"))),
      /rank 0 names/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
