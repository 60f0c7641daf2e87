import assert from "node:assert/strict";
import { backward } from "../../autograd.ts";
import { type DType, roundToF16 } from "../../dtype.ts";
import type { Engine } from "../../engine.ts";
import { assertClose, finiteDiff, gpuTest, gpuTestSubgroups, probe, randn } from "../../testing.ts";
import { softmax } from "./softmax.ts";
import { softmaxBackwardCpu, softmaxForwardCpu } from "./softmax_cpu.ts";

const ROWS = [1, 7, 33];
// Widths span every row layout (rowThreads: a thread per row up to 256, then 64, 128, 256 threads).
const WIDTHS = [1, 3, 7, 37, 129, 300, 1000, 2500];
// A vocabulary-sized row (256 threads, 125 elements each), not a multiple of any subgroup size.
const WIDE = 32000;

// f16 storage: inputs are rounded to f16 before the CPU reference runs; outputs are f16-rounded too.
const TOL: Record<string, { atol: number; rtol: number }> = {
  f32: { atol: 1e-6, rtol: 1e-4 },
  f16: { atol: 1e-3, rtol: 1e-2 },
};

async function checkSoftmax(e: Engine, R: number, C: number, dtype: DType, seed: number): Promise<void> {
  const round = (a: Float32Array) => dtype === "f16" ? roundToF16(a) : a;
  const xs = round(randn(R * C, seed, 3));
  const gs = round(probe(R * C, seed + 1));
  const x = e.param(xs, [R, C], { dtype });
  let y: Float32Array = new Float32Array();
  await e.tidy(async () => {
    const out = softmax(x);
    backward(out, e.tensor(gs, [R, C], dtype));
    y = (await out.read()) as Float32Array;
  });
  const label = `${dtype} [${R}, ${C}]`;
  const yRef = softmaxForwardCpu(xs, C);
  assertClose(y, yRef, { ...TOL[dtype], label: `softmax ${label}` });
  // The backward runs from the op's own (stored) output, so the reference does too.
  assertClose(await x.grad!.read(), softmaxBackwardCpu(round(Float32Array.from(yRef)), gs, C), {
    ...TOL[dtype],
    label: `softmax backward ${label}`,
  });
  x.dispose();
}

for (const dtype of ["f32", "f16"] as const) {
  gpuTestSubgroups(`softmax ${dtype}: forward and backward vs CPU`, async (e) => {
    if (dtype === "f16" && !e.hasF16) return;
    let seed = 1;
    for (const R of ROWS) for (const C of WIDTHS) await checkSoftmax(e, R, C, dtype, seed++);
    for (const R of [1, 5]) await checkSoftmax(e, R, WIDE, dtype, seed++);
  });
}

gpuTest("softmax: leading dims, large logits stay finite, rows sum to 1", async (e) => {
  const xs = randn(2 * 3 * 50, 5, 1);
  xs[7] = 80; // exp(80) overflows f32 without the max subtraction
  xs[60] = -90;
  const y = (await e.tidy(() => softmax(e.tensor(xs, [2, 3, 50])).read())) as Float32Array;
  assertClose(y, softmaxForwardCpu(xs, 50), { atol: 1e-6, rtol: 1e-4 });
  for (let r = 0; r < 6; r++) {
    const s = y.subarray(r * 50, r * 50 + 50).reduce((a, b) => a + b, 0);
    assert.ok(Math.abs(s - 1) < 1e-5, `row ${r} sums to ${s}`);
  }
});

gpuTest("softmax: no tape entry when nothing needs a gradient", (e) => {
  e.tidy(() => softmax(e.tensor([1, 2, 3], [3])));
  assert.equal(e.tape.length, 0);
});

Deno.test("softmax CPU backward matches finite differences", () => {
  const C = 7, R = 3;
  const x = randn(R * C, 11, 2);
  const w = probe(R * C, 12);
  const loss = (xx: Float64Array) => softmaxForwardCpu(xx, C).reduce((a, v, i) => a + v * w[i], 0);
  const dx = softmaxBackwardCpu(softmaxForwardCpu(x, C), w, C);
  assertClose(dx, finiteDiff(loss, x), { atol: 1e-7, rtol: 1e-6 });
});
