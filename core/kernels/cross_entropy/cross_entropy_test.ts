import assert from "node:assert/strict";
import { backward } from "../../autograd.ts";
import { type DType, roundToF16 } from "../../dtype.ts";
import type { Engine } from "../../engine.ts";
import { assertClose, finiteDiff, gpuTest, gpuTestSubgroups, probe, randInt, randn } from "../../testing.ts";
import { crossEntropy, type CrossEntropyOptions } from "./cross_entropy.ts";
import { crossEntropyBackwardCpu, crossEntropyForwardCpu } from "./cross_entropy_cpu.ts";

const ROWS = [1, 7, 33];
// Widths span every row layout (rowThreads: a thread per row up to 256, then 64, 128, 256 threads).
const WIDTHS = [1, 3, 7, 37, 129, 300, 1000, 2500];

// Losses are f32 sums over V; f16 logits are rounded before the CPU reference runs. Gradient entries
// are probabilities (down to ~1e-5 here), so the absolute tolerances stay far below them.
const TOL: Record<string, { loss: { atol: number; rtol: number }; grad: { atol: number; rtol: number } }> = {
  f32: { loss: { atol: 1e-5, rtol: 1e-5 }, grad: { atol: 1e-9, rtol: 1e-4 } },
  f16: { loss: { atol: 1e-5, rtol: 1e-5 }, grad: { atol: 1e-7, rtol: 2e-3 } },
};

interface Case {
  R: number;
  V: number;
  dtype: DType;
  opts?: CrossEntropyOptions;
  /** Target of each row (default: random classes, every third row from the second on ignored). */
  targets?: number[];
  seed: number;
  scale?: number;
}

async function checkCrossEntropy(e: Engine, k: Case): Promise<void> {
  const { R, V, dtype } = k;
  const opts = k.opts ?? {};
  const round = (a: Float32Array) => dtype === "f16" ? roundToF16(a) : a;
  const zs = round(randn(R * V, k.seed, k.scale ?? 3));
  const ts = k.targets ? Int32Array.from(k.targets) : randInt(R, V, k.seed + 1);
  if (!k.targets) { for (let r = 1; r < R; r += 3) ts[r] = opts.ignoreIndex ?? -100; }
  const none = opts.reduction === "none";
  const gs = none ? probe(R, k.seed + 2) : Float32Array.of(0.7);
  const logits = e.param(zs, [R, V], { dtype });
  const loss = (await e.tidy(async () => {
    const out = crossEntropy(logits, e.tensor(ts, [R], "i32"), opts);
    assert.deepEqual(out.shape, none ? [R] : []);
    assert.equal(out.dtype, "f32");
    backward(out, e.tensor(gs, out.shape));
    return await out.read();
  })) as Float32Array;
  const label = `${dtype} [${R}, ${V}] ${opts.reduction ?? "mean"} ignore ${opts.ignoreIndex ?? -100}`;
  assertClose(loss, crossEntropyForwardCpu(zs, ts, V, opts), { ...TOL[dtype].loss, label: `loss ${label}` });
  const dl = await logits.grad!.read();
  assert.equal(logits.grad!.dtype, dtype);
  assertClose(dl, crossEntropyBackwardCpu(zs, ts, V, gs, opts), {
    ...TOL[dtype].grad,
    label: `dlogits ${label}`,
  });
  logits.dispose();
}

for (const dtype of ["f32", "f16"] as const) {
  gpuTestSubgroups(`crossEntropy ${dtype}: forward and backward vs CPU, with ignored rows`, async (e) => {
    if (dtype === "f16" && !e.hasF16) return;
    let seed = 1;
    for (const R of ROWS) {
      for (const V of WIDTHS) await checkCrossEntropy(e, { R, V, dtype, seed: seed += 10 });
    }
    for (const reduction of ["sum", "none"] as const) {
      await checkCrossEntropy(e, { R: 33, V: 129, dtype, opts: { reduction }, seed: seed += 10 });
      await checkCrossEntropy(e, { R: 7, V: 1000, dtype, opts: { reduction }, seed: seed += 10 });
    }
    // More rows than the loss reduction's 256 threads, so it loops and reduces across the workgroup.
    await checkCrossEntropy(e, { R: 601, V: 37, dtype, seed: seed += 10 });
  });
}

gpuTestSubgroups("crossEntropy: V = 32000 (f32 and f16)", async (e) => {
  await checkCrossEntropy(e, { R: 3, V: 32000, dtype: "f32", seed: 7 });
  if (e.hasF16) {
    await checkCrossEntropy(e, { R: 2, V: 32000, dtype: "f16", opts: { reduction: "none" }, seed: 8 });
  }
});

gpuTest("crossEntropy: all rows ignored gives 0 and zero gradients", async (e) => {
  for (const reduction of ["mean", "sum", "none"] as const) {
    await checkCrossEntropy(e, {
      R: 7,
      V: 33,
      dtype: "f32",
      opts: { reduction },
      targets: Array(7).fill(-100),
      seed: 9,
    });
  }
  const loss = await e.tidy(() =>
    crossEntropy(e.tensor(randn(14, 1), [2, 7]), e.tensor([-100, -100], [2], "i32")).read()
  );
  assert.deepEqual([...loss], [0]);
});

gpuTest("crossEntropy: in-range ignore index, out-of-range targets, large logits", async (e) => {
  // Target 0 is the ignore index; -1 and V are outside [0, V) and count for nothing either.
  const targets = [0, 3, -1, 7, 6, 0, 2];
  await checkCrossEntropy(e, { R: 7, V: 7, dtype: "f32", opts: { ignoreIndex: 0 }, targets, seed: 10 });
  // exp(z) overflows f32 for these logits without the running maximum.
  await checkCrossEntropy(e, { R: 7, V: 129, dtype: "f32", seed: 11, scale: 200 });
});

gpuTest("crossEntropy: without gradients no tape entry and no leftover buffers", async (e) => {
  const zs = randn(3 * 10, 12);
  const before = e.pool.bytesInUse;
  // Outside a tidy scope: only the saved log-sum-exp and count could leak.
  const logits = e.tensor(zs, [3, 10]);
  logits.requiresGrad = true;
  const targets = e.tensor([1, -100, 9], [3], "i32");
  const loss = e.noGrad(() => crossEntropy(logits, targets));
  assertClose(await loss.read(), crossEntropyForwardCpu(zs, [1, -100, 9], 10), TOL.f32.loss);
  assert.equal(e.tape.length, 0);
  for (const t of [logits, targets, loss]) t.dispose();
  assert.equal(e.pool.bytesInUse, before);
});

Deno.test("crossEntropy CPU backward matches finite differences", () => {
  const R = 5, V = 7;
  const z = randn(R * V, 31, 2);
  const targets = [3, -100, 0, 6, 2];
  for (const reduction of ["mean", "sum", "none"] as const) {
    const opts = { reduction };
    const g = reduction === "none" ? probe(R, 32) : [0.7];
    const loss = (zz: Float64Array) =>
      crossEntropyForwardCpu(zz, targets, V, opts).reduce((a, v, i) => a + v * g[i], 0);
    assertClose(crossEntropyBackwardCpu(z, targets, V, g, opts), finiteDiff(loss, z), {
      atol: 1e-7,
      rtol: 1e-5,
      label: reduction,
    });
  }
});
