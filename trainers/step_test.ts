import assert from "node:assert/strict";
import type { Engine } from "../core/engine.ts";
import type { Tensor } from "../core/tensor.ts";
import { AdamW } from "../core/kernels/adamw/adamw.ts";
import { assertClose, gpuTest } from "../core/testing.ts";
import { type AsvrBatch, AsvrModel } from "../models/asvr_model.ts";
import { tinyBatch, tinyConfig, writeTinyCodebooks } from "../models/testing.ts";
import { LossScaler, NonFiniteGuard } from "./loss_scaler.ts";
import { type MicroBatches, type StepSetup, trainStep } from "./step.ts";

const dir = await Deno.makeTempDir({ prefix: "asvr_step_test_" });
const CODEBOOKS = await writeTinyCodebooks(dir);
globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));

/** A tiny model (seed 5, every part but the encoder training) and a step setup on it. */
async function tinySetup(
  e: Engine,
  over: Partial<StepSetup> = {},
): Promise<{ model: AsvrModel; setup: StepSetup }> {
  const model = await AsvrModel.build(e, tinyConfig(CODEBOOKS), { seed: 5 });
  model.setTrainable({ projector: true, llm: true, head: true });
  const params = model.trainableParams();
  // eps 1: the first update lr * g / (|g| + 1) follows the gradient smoothly (not its sign alone), so
  // parameters that match after the step mean gradients that match.
  const setup: StepSetup = {
    engine: e,
    model,
    params,
    opt: new AdamW(params, { lr: 0.1, eps: 1 }),
    lossWeights: { textWeight: 1, visualWeight: 1 },
    maxGradNorm: 1e6, // measures the norm; never clips
    scaler: null,
    guard: new NonFiniteGuard(),
    ...over,
  };
  return { model, setup };
}

/** Micro-batches served from a list. */
function fromList(batches: (AsvrBatch | null)[]): MicroBatches {
  let i = 0;
  return { count: batches.length, next: () => Promise.resolve(batches[i++]) };
}

/** Rows of `a` then rows of `b` (same T). */
function stack(a: AsvrBatch, b: AsvrBatch): AsvrBatch {
  const cat = <T extends Int32Array | Float32Array>(x: T, y: T): T => {
    const out = new (x.constructor as { new (n: number): T })(x.length + y.length);
    out.set(x);
    out.set(y, x.length);
    return out;
  };
  return {
    inputIds: cat(a.inputIds, b.inputIds),
    labels: cat(a.labels, b.labels),
    imagePositions: [...a.imagePositions, ...b.imagePositions],
    pixels: cat(a.pixels!, b.pixels!),
    hasImage: [...a.hasImage, ...b.hasImage],
  };
}

/** Every parameter's values by name. */
async function readAll(params: Map<string, Tensor>): Promise<Map<string, Float32Array>> {
  const out = new Map<string, Float32Array>();
  for (const [n, t] of params) out.set(n, Float32Array.from(await t.read()));
  return out;
}

/** Asserts two readings of the weights are bit for bit the same (naming the first that differs). */
function assertSameWeights(a: Map<string, Float32Array>, b: Map<string, Float32Array>, why: string): void {
  assert.deepEqual([...a.keys()], [...b.keys()]);
  for (const [name, x] of a) {
    const bx = new Uint32Array(x.buffer), by = new Uint32Array(b.get(name)!.buffer);
    const i = bx.findIndex((v, j) => v !== by[j]);
    assert.equal(i, -1, `${why}: ${name}[${i}] is ${x[i]} vs ${b.get(name)![i]}`);
  }
}

/** Asserts every gradient of `params` is absent or all zeros. */
async function assertZeroGrads(params: Tensor[]): Promise<void> {
  for (const p of params) {
    if (p.grad) assert.ok((await p.grad.read()).every((v) => v === 0), `${p}: gradient not zeroed`);
  }
}

gpuTest("trainStep: 2 accumulated micro-batches of B rows step as one micro-batch of 2B rows", async (e) => {
  // Each micro-batch has one image row and one text-only row: as many supervised tokens and image
  // rows, so the mean over the 2B rows is the mean of the two micro-batches' means.
  const a = tinyBatch([true, false], 1), b = tinyBatch([true, false], 2);
  const accum = await tinySetup(e), whole = await tinySetup(e);
  const before = await readAll(accum.model.params());
  assertSameWeights(await readAll(whole.model.params()), before, "the same initial weights");

  const r2 = await trainStep(accum.setup, fromList([a, b]), 0.1, 1);
  const r1 = await trainStep(whole.setup, fromList([stack(a, b)]), 0.1, 1);
  assert.deepEqual(Object.keys(r2.losses), ["text", "visual_semantic", "total"]);
  for (const k of Object.keys(r1.losses)) {
    assertClose([r2.losses[k]], [r1.losses[k]], { rtol: 1e-5, label: k });
  }
  assert.ok(r1.gradNorm > 0.1, `grad norm ${r1.gradNorm}`);
  assertClose([r2.gradNorm], [r1.gradNorm], { rtol: 1e-4, label: "grad norm" });
  assert.equal(r2.tokens, r1.tokens);
  assert.equal(r2.skipped || r1.skipped, false);

  const after2 = await readAll(accum.model.params()), after1 = await readAll(whole.model.params());
  let moved = 0;
  for (const [name, p] of accum.model.params()) {
    if (!p.requiresGrad) continue;
    assertClose(after2.get(name)!, after1.get(name)!, { atol: 2e-6, rtol: 1e-5, label: name });
    for (const [i, v] of after1.get(name)!.entries()) {
      moved = Math.max(moved, Math.abs(v - before.get(name)![i]));
    }
  }
  assert.ok(moved > 1e-3, `the step moved the weights (largest change ${moved})`);
  await assertZeroGrads(accum.setup.params);
  for (const s of [accum, whole]) {
    s.setup.opt.dispose();
    await s.model.dispose();
  }
});

gpuTest(
  "trainStep: a non-finite loss skips the step and leaves the weights and optimizer as they were",
  async (e) => {
    const { model, setup } = await tinySetup(e, { guard: new NonFiniteGuard({ maxConsecutive: 2 }) });
    const bad = tinyBatch([true, true], 3);
    bad.pixels!.fill(NaN); // a corrupt image: the features, hence the losses, are NaN
    const before = await readAll(model.params());

    const r = await trainStep(setup, fromList([tinyBatch([true, true], 4), bad]), 0.1, 7);
    assert.equal(r.skipped, true);
    assert.ok(Number.isNaN(r.losses.total), `total ${r.losses.total}`);
    assert.ok(!Number.isFinite(r.gradNorm), `grad norm ${r.gradNorm}`);
    assertSameWeights(await readAll(model.params()), before, "no parameter moved");
    assert.equal(setup.opt.stepCount, 0);
    await assertZeroGrads(setup.params); // no NaN left to leak into the next step
    // The guard counts it: a second skip in a row stops the run, naming the step.
    await assert.rejects(trainStep(setup, fromList([bad]), 0.1, 8), /2 training steps in a row .*at step 8/);

    // With a loss scaler: a skip backs the scale off; a finite step undoes the scale exactly enough that
    // its losses and norm are those of the same step without one.
    const scaled = await tinySetup(e, { scaler: new LossScaler({ initScale: 8 }) });
    const plain = await tinySetup(e);
    assert.equal((await trainStep(scaled.setup, fromList([bad]), 0.1, 1)).skipped, true);
    assert.equal(scaled.setup.scaler!.scale, 4);
    const good = tinyBatch([true, false], 5);
    const rs = await trainStep(scaled.setup, fromList([good]), 0.1, 2);
    const rp = await trainStep(plain.setup, fromList([good]), 0.1, 1);
    assert.equal(rs.skipped, false);
    assert.deepEqual(rs.losses, rp.losses);
    assertClose([rs.gradNorm], [rp.gradNorm], { rtol: 1e-6, label: "grad norm" });
    for (const s of [{ model, setup }, scaled, plain]) {
      s.setup.opt.dispose();
      await s.model.dispose();
    }
  },
);

gpuTest("trainStep: told after each micro-batch, one that loads as null included", async (e) => {
  const { model, setup } = await tinySetup(e);
  const told: [number, number][] = [];
  const r = await trainStep(
    setup,
    fromList([tinyBatch([true, false], 6), null, tinyBatch([false, true], 7)]),
    0.1,
    1,
    (done, count) => told.push([done, count]),
  );
  assert.deepEqual(told, [[1, 3], [2, 3], [3, 3]]);
  assert.equal(r.skipped, false);
  setup.opt.dispose();
  await model.dispose();
});

gpuTest(
  "trainStep: a step of 4 micro-batches waits for the GPU once (loss terms and norm together)",
  async (e) => {
    const { model, setup } = await tinySetup(e);
    const batches = [0, 1, 2, 3].map((i) => tinyBatch([i % 2 === 0, true], 4));
    await trainStep(setup, fromList(batches), 0.1, 1); // warm: pipelines compiled
    const before = e.stats.waits;
    const r = await trainStep(setup, fromList(batches), 0.1, 2);
    assert.equal(e.stats.waits - before, 1, "one wait per optimizer step");
    assert.ok(r.gradNorm > 0 && Number.isFinite(r.losses.total), JSON.stringify(r));
    // Without clipping there is no norm to read, and the loss terms still come back in one wait.
    setup.maxGradNorm = 0;
    const at = e.stats.waits;
    const r0 = await trainStep(setup, fromList(batches), 0.1, 3);
    assert.equal(e.stats.waits - at, 1);
    assert.equal(Object.keys(r0.losses).length, Object.keys(r.losses).length);
    setup.opt.dispose();
    await model.dispose();
  },
);

gpuTest(
  "trainStep: without clipping the norm is still measured, and an overflowed gradient skips the step",
  async (e) => {
    const { model, setup } = await tinySetup(e, { maxGradNorm: 0 });
    const batch = tinyBatch([true, true], 4);
    const r = await trainStep(setup, fromList([batch]), 0.1, 1);
    assert.ok(r.gradNorm > 0 && Number.isFinite(r.gradNorm), `grad norm ${r.gradNorm}`);
    assert.equal(r.skipped, false);
    // A loss scale of 1e38 overflows the gradients while the loss stays finite.
    const huge = new LossScaler({ initScale: 1e38, maxScale: 1e38 });
    const { model: m2, setup: s2 } = await tinySetup(e, { maxGradNorm: 0, scaler: huge });
    const before = await s2.params[0].read();
    const r2 = await trainStep(s2, fromList([batch]), 0.1, 1);
    assert.ok(Number.isFinite(r2.losses.total), "the loss is finite");
    assert.ok(!Number.isFinite(r2.gradNorm), `grad norm ${r2.gradNorm}`);
    assert.equal(r2.skipped, true);
    assert.deepEqual(await s2.params[0].read(), before, "no update");
    for (const st of [setup, s2]) st.opt.dispose();
    await model.dispose();
    await m2.dispose();
  },
);
