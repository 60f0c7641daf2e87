import assert from "node:assert/strict";
import { assertClose, gpuTest } from "./testing.ts";
import { addInPlace, backward, checkpoint, record, reshape, zeroGrad } from "./autograd.ts";
import { sizeClass } from "./pool.ts";
import type { Tensor } from "./tensor.ts";

gpuTest("tensor: write and read back f32, i32, u32, f16", async (e) => {
  const a = e.tensor([1, -2.5, 3e6, 0.1], [2, 2]);
  assertClose(await a.read(), [1, -2.5, 3e6, 0.1]);
  assert.deepEqual([...await e.tensor([-1, 2, 3], [3], "i32").read()], [-1, 2, 3]);
  assert.deepEqual([...await e.tensor([7, 8, 9], [3], "u32").read()], [7, 8, 9]);
  if (e.hasF16) {
    const h = await e.tensor([1, 0.333333, 65504, -2], [4], "f16").read();
    assertClose(h, [1, 0.333251953125, 65504, -2], { atol: 0 });
  }
  assertClose(await e.zeros([5]).read(), [0, 0, 0, 0, 0], { atol: 0 });
  for (const t of [a]) t.dispose();
});

gpuTest("pool: size classes waste at most half and are reused", (e) => {
  for (const b of [1, 17, 300, 1000, 4097, 1 << 20, 3 << 19]) {
    const c = sizeClass(b);
    assert.ok(c >= b && (c <= 256 || c <= b * 1.5), `${b} -> ${c}`);
  }
  const t = e.empty([1000]);
  const buf = t.buffer;
  t.dispose();
  const u = e.empty([999]);
  assert.equal(u.buffer, buf);
  u.dispose();
  assert.throws(() => u.buffer, /disposed/);
});

gpuTest("tidy frees intermediates, keeps results and parameters", (e) => {
  const p = e.param([1, 2], [2]);
  const before = e.pool.bytesInUse;
  const r = e.tidy(() => {
    e.empty([100]);
    const keep = e.empty([10]);
    return { keep, view: e.empty([4]).view([2, 2]) };
  });
  assert.ok(!r.keep.disposed && !r.view.disposed && !p.disposed);
  r.keep.dispose();
  r.view.base!.dispose();
  assert.equal(e.pool.bytesInUse, before);
  p.dispose();
});

gpuTest("autograd: shared inputs sum, params accumulate, frozen params get none", async (e) => {
  const w = e.param([1, 2, 3], [3]);
  const frozen = e.param([5, 5, 5], [3]);
  frozen.requiresGrad = false;
  // y = w + w + frozen through a toy op whose backward passes the gradient on unchanged.
  const addOp = (a: Tensor, b: Tensor) => {
    const out = e.empty(a.shape);
    e.copy(a, out);
    addInPlace(out, b);
    return record(out, [a, b], (g) => [g, g]);
  };
  e.tidy(() => {
    const y = addOp(addOp(w, w), frozen);
    backward(reshape(y, [3, 1]), e.tensor([1, 10, 100], [3, 1]));
  });
  assertClose(await w.grad!.read(), [2, 20, 200]);
  assert.equal(frozen.grad, null);
  e.tidy(() => backward(addOp(w, frozen), e.tensor([1, 1, 1], [3])));
  assertClose(await w.grad!.read(), [3, 21, 201]);
  zeroGrad([w]);
  assertClose(await w.grad!.read(), [0, 0, 0]);
  assert.equal(e.tape.length, 0);
  w.dispose();
  frozen.dispose();
});

gpuTest("checkpoint: same gradients as without, intermediates not kept", async (e) => {
  const w = e.param([1, 2, 3], [3]);
  const addOp = (a: Tensor, b: Tensor) => {
    const out = e.empty(a.shape);
    e.copy(a, out);
    addInPlace(out, b);
    return record(out, [a, b], (g) => [g, g]);
  };
  const block = (x: Tensor) => addOp(addOp(x, w), w);
  const x = e.tensor([0, 0, 0], [3]);
  e.tidy(() => backward(checkpoint(block, x), e.tensor([1, 2, 3], [3])));
  assertClose(await w.grad!.read(), [2, 4, 6]);
  w.dispose();
  x.dispose();
});

gpuTest("limits: a tensor over the binding limit is refused by name, not by a GPU validation error", (e) => {
  const max = e.info.limits.maxStorageBufferBindingSize;
  const big = e.empty([max / 4 + 1]);
  assert.throws(
    () => addInPlace(big, big),
    /add_inplace: f32\[\d+\] is \d+ bytes, over this adapter's maxStorageBufferBindingSize/,
  );
  big.dispose();
  assert.throws(() => e.empty([e.info.limits.maxBufferSize]), /over this adapter's maxBufferSize/);
});

gpuTest(
  "backward frees each intermediate gradient once consumed: memory holds the frontier only",
  async (e) => {
    const n = 1 << 18; // 1 MiB of f32
    const w = e.param(new Float32Array(n).fill(1), [n]);
    const double = (x: Tensor) => {
      const out = e.empty(x.shape);
      e.copy(x, out);
      addInPlace(out, x); // out = 2x
      return record(out, [x], (g) => {
        const gx = e.empty(g.shape);
        e.copy(g, gx);
        addInPlace(gx, g); // 2g
        return [gx];
      });
    };
    await e.tidy(async () => {
      let y = w;
      for (let i = 0; i < 12; i++) y = double(y);
      const ones = e.full([n], 1);
      await e.sync();
      const afterForward = e.pool.bytesInUse;
      e.pool.resetPeak();
      backward(y, ones);
      const extra = e.pool.peakBytesInUse - afterForward;
      // Two gradients live at a time (the consumed one and the new one) plus the parameter's grad.
      assert.ok(extra <= 3 * 4 * n, `backward held ${extra / 2 ** 20} MiB beyond the activations`);
    });
    assertClose((await w.grad!.read()).subarray(0, 4), [4096, 4096, 4096, 4096]);
    w.dispose();
  },
);

// One thread copies its uniform params into `out`: words [base, n, 0, 0, w0 .. w79], w0 .. w(n-1) copied
// to out[base ..]. 336 bytes of params: more than one 256-byte slot of the params block.
const COPY_PARAMS_BIG = `
@group(0) @binding(0) var<storage, read_write> out: array<u32>;
struct P { base: u32, n: u32, w: array<vec4u, 20> }
@group(0) @binding(1) var<uniform> p: P;
@compute @workgroup_size(1)
fn main() {
  for (var j = 0u; j < p.n; j++) { out[p.base + j] = p.w[j / 4u][j % 4u]; }
}`;
// Words [base, v0, v1, v2]: v0 .. v2 copied to out[base ..].
const COPY_PARAMS_SMALL = `
@group(0) @binding(0) var<storage, read_write> out: array<u32>;
struct P { base: u32, v0: u32, v1: u32, v2: u32 }
@group(0) @binding(1) var<uniform> p: P;
@compute @workgroup_size(1)
fn main() {
  out[p.base] = p.v0; out[p.base + 1u] = p.v1; out[p.base + 2u] = p.v2;
}`;

gpuTest("run: uniform params of many dispatches, small and over one slot, across flushes", async (e) => {
  const prevMax = e.maxPendingDispatches;
  try {
    // Dispatch i writes its own words: 3 small ones, or 1 .. 80 over the large kernel.
    const plan = (count: number, seed: number) => {
      let at = 0;
      return Array.from({ length: count }, (_, i) => {
        const n = i % 2 === 0 ? 3 : 1 + ((i * 37 + seed) % 80);
        const words = Array.from({ length: n }, (_, j) => ((i + 1) * 1000 + j + seed * 7) >>> 0);
        const d = { base: at, words };
        at += n;
        return d;
      });
    };
    const dispatch = (out: Tensor, d: { base: number; words: number[] }) => {
      const small = d.words.length === 3 && COPY_PARAMS_SMALL;
      e.run({
        label: small ? "copy_params_small" : "copy_params_big",
        code: small || COPY_PARAMS_BIG,
        bindings: [out],
        params: small
          ? [d.base, ...d.words]
          : [d.base, d.words.length, 0, 0, ...d.words, ...new Array(80 - d.words.length).fill(0)],
        workgroups: [1],
      });
    };
    const check = async (count: number, seed: number, readEvery: number) => {
      const ds = plan(count, seed);
      const total = ds.reduce((s, d) => s + d.words.length, 0);
      const out = e.zeros([total], "u32");
      const probe = e.tensor([seed], [1], "u32");
      const submits = e.stats.submits;
      for (let i = 0; i < ds.length; i++) {
        dispatch(out, ds[i]);
        // A read submits the encoder mid-way (its params block with it).
        if (i % readEvery === readEvery - 1) assert.deepEqual([...await probe.read()], [seed]);
      }
      const got = await out.read();
      assert.deepEqual([...got], ds.flatMap((d) => d.words));
      const flushes = e.stats.submits - submits;
      out.dispose();
      probe.dispose();
      return flushes;
    };
    e.maxPendingDispatches = 128;
    // 300 dispatches: submits every 128, and at each read.
    assert.ok(await check(300, 1, 101) >= 5);
    // Two slots per dispatch, 3 slots per block: the block fills before 3 dispatches and submits.
    e.maxPendingDispatches = 3;
    assert.ok(await check(40, 2, 1000) >= 20 / 1.5);
    // One encoder holds them all.
    e.maxPendingDispatches = 1000;
    assert.equal(await check(200, 3, 1000), 1);
  } finally {
    e.maxPendingDispatches = prevMax;
  }
});

gpuTest("run: pipelines cached by key compile once and keys are not confused", async (e) => {
  let built = 0;
  const codeOf = (v: number) => () => {
    built++;
    return `@group(0) @binding(0) var<storage, read_write> out: array<u32>;
@compute @workgroup_size(1) fn main() { out[0] = ${v}u; }`;
  };
  const a = e.zeros([1], "u32"), b = e.zeros([1], "u32");
  const before = e.stats.pipelines;
  for (let i = 0; i < 3; i++) {
    e.run({ label: "keyed_a", key: "engine_test_key_a", code: codeOf(11), bindings: [a], workgroups: [1] });
    e.run({ label: "keyed_b", key: "engine_test_key_b", code: codeOf(22), bindings: [b], workgroups: [1] });
  }
  assert.equal(built, 2);
  assert.equal(e.stats.pipelines - before, 2);
  assert.deepEqual([...await a.read()], [11]);
  assert.deepEqual([...await b.read()], [22]);
  // Without a key, a code function is keyed by its text: the same WGSL shares a pipeline.
  e.run({ label: "unkeyed", code: codeOf(33), bindings: [a], workgroups: [1] });
  e.run({ label: "unkeyed", code: codeOf(33)(), bindings: [b], workgroups: [1] });
  assert.equal(e.stats.pipelines - before, 3);
  assert.deepEqual([...await e.readMany([a, b])].map((t) => t[0]), [33, 33]);
  a.dispose();
  b.dispose();
});

gpuTest("run: dispatches share a compute pass; copies and clears between them land in order", async (e) => {
  const add = (t: Tensor, v: number) =>
    e.run({
      label: "add_u32",
      key: "test_add_u32",
      code: `@group(0) @binding(0) var<storage, read_write> x: array<u32>;
struct P { v: u32 }
@group(0) @binding(1) var<uniform> p: P;
@compute @workgroup_size(4)
fn main(@builtin(global_invocation_id) gid: vec3u) { if (gid.x < arrayLength(&x)) { x[gid.x] += p.v; } }`,
      bindings: [t],
      params: [v],
      workgroups: [1],
    });
  const x = e.zeros([4], "u32"), y = e.zeros([4], "u32");
  add(x, 1);
  add(x, 2); // sees the first one's write: 3
  e.copy(x, y); // between two passes: y = 3
  add(x, 4); // 7
  add(y, 10); // 13: after the copy
  e.encoder.clearBuffer(x.buffer); // 0
  add(x, 5); // 5
  assert.deepEqual([...await x.read()], [5, 5, 5, 5]);
  assert.deepEqual([...await y.read()], [13, 13, 13, 13]);
  x.dispose();
  y.dispose();
});
