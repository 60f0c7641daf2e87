import assert from "node:assert/strict";
import type { MetricsRecord, MetricsWriter } from "./metrics.ts";
import type { StepRecord } from "./step_log.ts";
import { StepLogger, type StepLoggerOptions } from "./step_log.ts";

/** A logger of a 5000-step stage on a fake clock, its lines collected. */
function fakeLogger(over: Partial<StepLoggerOptions> = {}) {
  let t = 0;
  const lines: string[] = [], written: MetricsRecord[] = [];
  const log = new StepLogger({
    metrics: { write: (r: MetricsRecord) => written.push(r) } as unknown as MetricsWriter,
    records: [],
    history: [] as StepRecord[],
    stage: { name: "finetune", index: 2, count: 2 },
    totalSteps: 5000,
    write: (text) => lines.push(text.replace(/\n$/, "")),
    now: () => t,
    ...over,
  });
  return { log, lines, written, tick: (s: number) => (t += s * 1000) };
}

const RESULT = { losses: { text: 2.5, total: 2.5 }, gradNorm: 1, skipped: false, tokens: 1000, seconds: 2 };

Deno.test("a long step says how far it is every 30 s; a short one prints only its step line", () => {
  const { log, lines, tick } = fakeLogger();
  for (let m = 1; m <= 64; m++) {
    tick(5); // 5 s per micro-batch: 320 s for the step
    log.microBatch(121, m, 64);
  }
  // At 30 s, 60 s, ... 300 s: micro-batches 6, 12, ..., 60; the last micro-batch draws nothing.
  assert.equal(lines.length, 10);
  assert.equal(lines[0], "stage 2/2 step 121/5000: micro-batch 6/64 (30s into the step)");
  assert.equal(lines[9], "stage 2/2 step 121/5000: micro-batch 60/64 (5m00s into the step)");
  log.step({ step: 1121, stageStep: 121, lr: 1e-3, result: RESULT, gpuBytes: 0 });
  assert.match(lines[10], /^stage 2\/2 step 121\/5000 loss_text 2\.500/);
  // The next step's clock starts at the step line: 4 fast micro-batches draw nothing.
  for (let m = 1; m <= 4; m++) {
    tick(1);
    log.microBatch(122, m, 4);
  }
  assert.equal(lines.length, 11);
});

Deno.test("micro-batch lines every N micro-batches too, whichever comes first; bad options named", () => {
  const { log, lines, tick } = fakeLogger({ microBatchEvery: 16, microBatchSec: 30 });
  for (let m = 1; m <= 64; m++) {
    tick(m <= 32 ? 0.1 : 10);
    log.microBatch(7, m, 64);
  }
  assert.deepEqual(
    lines.map((l) => l.match(/micro-batch (\d+)/)![1]).map(Number),
    [16, 32, 35, 38, 41, 44, 47, 48, 51, 54, 57, 60, 63],
  );
  assert.throws(
    () => fakeLogger({ microBatchSec: -1 }),
    /StepLogger: microBatchSec must be a number >= 0, got -1/,
  );
});
