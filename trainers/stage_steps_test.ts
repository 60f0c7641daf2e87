import assert from "node:assert/strict";
import { stageSteps, stageStepWarnings } from "./stage_steps.ts";

const STAGE = { batchSize: 16, gradAccum: 8, epochs: 1, maxSteps: null, lr: 1e-3, warmupRatio: 0.03 };

Deno.test("a stage's steps: floor(rows / (batch x accum)) per epoch, x epochs, or maxSteps", () => {
  assert.deepEqual(stageSteps(STAGE, 665_298), {
    rowsPerStep: 128,
    stepsPerEpoch: 5197,
    total: 5197,
    warmup: 156,
  });
  assert.equal(stageSteps({ ...STAGE, epochs: 3 }, 1000).total, 21);
  assert.equal(stageSteps({ ...STAGE, maxSteps: 50 }, 1000).total, 50);
  assert.deepEqual(stageStepWarnings(STAGE, 665_298), []);
});

Deno.test("small data: an epoch shorter than a step, and a stage that is all warmup, are warned of", () => {
  const small = { ...STAGE, batchSize: 1, gradAccum: 32 };
  assert.deepEqual(stageSteps(small, 24), { rowsPerStep: 32, stepsPerEpoch: 1, total: 1, warmup: 1 });
  const [short, warm] = stageStepWarnings(small, 24);
  assert.match(
    short,
    /an epoch \(24 rows\) is shorter than one optimizer step \(batchSize 1 x gradAccum 32 = 32/,
  );
  assert.match(
    warm,
    /one step is a warmup step \(warmupRatio 0\.03\), so it runs at lr 0 .*set warmupRatio: 0/,
  );
  // Two steps, both warmup (ratio > 0.5); and no warmup at all is fine.
  assert.match(stageStepWarnings({ ...STAGE, warmupRatio: 0.6 }, 256)[0], /all 2 steps are warmup steps/);
  assert.deepEqual(stageStepWarnings({ ...STAGE, warmupRatio: 0 }, 128), []);
});
