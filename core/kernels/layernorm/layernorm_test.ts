import assert from "node:assert/strict";
import { backward } from "../../autograd.ts";
import { type DType, roundToF16 } from "../../dtype.ts";
import type { Engine } from "../../engine.ts";
import { assertClose, finiteDiff, gpuTest, gpuTestSubgroups, probe, randn } from "../../testing.ts";
import { layerNorm } from "./layernorm.ts";
import { layerNormBackwardCpu, layerNormForwardCpu } from "./layernorm_cpu.ts";

const ROWS = [1, 7, 33];
// Widths span every row layout (rowThreads: a thread per row up to 256, then 64, 128, 256 threads).
const WIDTHS = [1, 3, 7, 37, 129, 300, 1000, 2500];
// A vocabulary-sized row (256 threads, 125 elements each), not a multiple of any subgroup size.
const WIDE = 32000;
const EPS = 1e-5;

// f16 storage: inputs are rounded to f16 before the CPU reference runs; outputs are f16-rounded too.
const TOL: Record<string, { atol: number; rtol: number }> = {
  f32: { atol: 1e-4, rtol: 1e-4 },
  f16: { atol: 4e-3, rtol: 1e-2 },
};

interface Case {
  R: number;
  C: number;
  xt: DType;
  wt: DType;
  bias: boolean;
  frozenWeight?: boolean;
  seed: number;
}

async function checkLayerNorm(e: Engine, k: Case): Promise<void> {
  const { R, C, xt, wt } = k;
  const r16 = (a: Float32Array, t: DType) => t === "f16" ? roundToF16(a) : a;
  const xs = r16(randn(R * C, k.seed, 2).map((v, i) => v + (i % 3)), xt);
  const ws = r16(randn(C, k.seed + 1, 0.3).map((v) => v + 1), wt);
  const bs = r16(randn(C, k.seed + 2, 0.3), wt);
  const gs = r16(probe(R * C, k.seed + 3), xt);
  const x = e.param(xs, [R, C], { dtype: xt });
  const w = e.param(ws, [C], { dtype: wt });
  const b = k.bias ? e.param(bs, [C], { dtype: wt }) : null;
  if (k.frozenWeight) w.requiresGrad = false;
  const y = (await e.tidy(async () => {
    const out = layerNorm(x, w, b, EPS);
    backward(out, e.tensor(gs, [R, C], xt));
    return await out.read();
  })) as Float32Array;
  const label = `x ${xt}, w ${wt}, [${R}, ${C}]${k.bias ? "" : " no bias"}`;
  const tol = TOL[xt === "f16" || wt === "f16" ? "f16" : "f32"];
  assertClose(y, layerNormForwardCpu(xs, ws, k.bias ? bs : null, C, EPS).y, { ...tol, label: `y ${label}` });
  const ref = layerNormBackwardCpu(xs, ws, gs, C, EPS);
  // Weight gradients sum R rows: the tolerance grows with the row count.
  const sumTol = { atol: tol.atol * Math.sqrt(R), rtol: tol.rtol };
  assertClose(await x.grad!.read(), ref.dx, { ...tol, label: `dx ${label}` });
  if (k.frozenWeight) assert.equal(w.grad, null);
  else assertClose(await w.grad!.read(), ref.dw, { ...sumTol, label: `dw ${label}` });
  if (b) assertClose(await b.grad!.read(), ref.db, { ...sumTol, label: `db ${label}` });
  for (const t of [x, w, b]) t?.dispose();
}

for (const dtype of ["f32", "f16"] as const) {
  gpuTestSubgroups(`layerNorm ${dtype}: forward and backward vs CPU`, async (e) => {
    if (dtype === "f16" && !e.hasF16) return;
    let seed = 1;
    for (const R of ROWS) {
      for (const C of WIDTHS) {
        await checkLayerNorm(e, { R, C, xt: dtype, wt: dtype, bias: true, seed: seed += 10 });
      }
    }
    for (const R of [1, 5]) {
      await checkLayerNorm(e, { R, C: WIDE, xt: dtype, wt: dtype, bias: true, seed: seed += 10 });
    }
  });
}

gpuTest("layerNorm: no bias, many rows (several column chunks), frozen weight", async (e) => {
  await checkLayerNorm(e, { R: 7, C: 129, xt: "f32", wt: "f32", bias: false, seed: 3 });
  await checkLayerNorm(e, { R: 300, C: 7, xt: "f32", wt: "f32", bias: true, seed: 4 });
  await checkLayerNorm(e, { R: 7, C: 33, xt: "f32", wt: "f32", bias: true, frozenWeight: true, seed: 5 });
});

gpuTest("layerNorm: f16 activations with f32 weights", async (e) => {
  if (!e.hasF16) return;
  await checkLayerNorm(e, { R: 33, C: 129, xt: "f16", wt: "f32", bias: true, seed: 6 });
  await checkLayerNorm(e, { R: 7, C: 7, xt: "f32", wt: "f16", bias: false, seed: 7 });
});

gpuTest("layerNorm: leading dims; without gradients no tape entry and no leftover buffers", async (e) => {
  const xs = randn(2 * 3 * 5, 8), ws = randn(5, 9), bs = randn(5, 10);
  const w = e.tensor(ws, [5]), b = e.tensor(bs, [5]);
  w.requiresGrad = true;
  const before = e.pool.bytesInUse;
  // Outside a tidy scope: only the saved statistics could leak.
  const x = e.tensor(xs, [2, 3, 5]);
  const y = e.noGrad(() => layerNorm(x, w, b));
  assert.deepEqual(y.shape, [2, 3, 5]);
  assertClose(await y.read(), layerNormForwardCpu(xs, ws, bs, 5, EPS).y, TOL.f32);
  assert.equal(e.tape.length, 0);
  x.dispose();
  y.dispose();
  assert.equal(e.pool.bytesInUse, before);
  w.dispose();
  b.dispose();
});

Deno.test("layerNorm CPU backward matches finite differences", () => {
  const R = 3, C = 7;
  const x = randn(R * C, 21, 2), w = randn(C, 22), b = randn(C, 23);
  const p = probe(R * C, 24);
  const loss = (xx: Floats, ww: Floats, bb: Floats) =>
    layerNormForwardCpu(xx, ww, bb, C, EPS).y.reduce((a, v, i) => a + v * p[i], 0);
  const ref = layerNormBackwardCpu(x, w, p, C, EPS);
  const tol = { atol: 1e-6, rtol: 1e-5 };
  assertClose(ref.dx, finiteDiff((xx) => loss(xx, w, b), x), { ...tol, label: "dx" });
  assertClose(ref.dw, finiteDiff((ww) => loss(x, ww, b), w), { ...tol, label: "dw" });
  assertClose(ref.db, finiteDiff((bb) => loss(x, w, bb), b), { ...tol, label: "db" });
});

type Floats = Float32Array | Float64Array;
