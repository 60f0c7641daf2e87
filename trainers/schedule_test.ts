import assert from "node:assert/strict";
import { lrAt, parseLrSchedule, warmupSteps } from "./schedule.ts";

function close(a: number, b: number, label: string): void {
  assert.ok(Math.abs(a - b) <= 1e-12 + 1e-9 * Math.abs(b), `${label}: got ${a}, want ${b}`);
}

Deno.test("cosine with warmup: values worked by hand", () => {
  // 13 steps, ratio 0.2 -> ceil(2.6) = 3 warmup steps, then 10 decay steps.
  const o = { lr: 1e-3, totalSteps: 13, warmupRatio: 0.2, schedule: "cosine" } as const;
  assert.equal(warmupSteps(o), 3);
  close(lrAt(0, o), 0, "step 0");
  close(lrAt(1, o), 1e-3 / 3, "step 1");
  close(lrAt(2, o), 2e-3 / 3, "step 2");
  close(lrAt(3, o), 1e-3, "step 3 (peak)");
  // progress 0.1: 0.5 * (1 + cos(0.1 pi)) = 0.5 * (1 + 0.9510565163) = 0.97552825815
  close(lrAt(4, o), 1e-3 * 0.97552825815, "step 4");
  close(lrAt(8, o), 5e-4, "step 8 (half way)");
  // progress 0.9: 0.5 * (1 - 0.9510565163)
  close(lrAt(12, o), 1e-3 * 0.02447174185, "step 12");
  close(lrAt(13, o), 0, "step 13 (end)");
  close(lrAt(20, o), 0, "past the end stays at the floor");
});

Deno.test("the recipe's 3% warmup rounds up as the Hugging Face trainer", () => {
  assert.equal(warmupSteps({ lr: 1e-3, totalSteps: 2181, warmupRatio: 0.03 }), 66); // 65.43 -> 66
  assert.equal(warmupSteps({ lr: 1e-3, totalSteps: 100, warmupRatio: 0.03 }), 3);
  assert.equal(warmupSteps({ lr: 1e-3, totalSteps: 100 }), 0);
  const o = { lr: 2e-5, totalSteps: 2181, warmupRatio: 0.03 };
  close(lrAt(33, o), 2e-5 * 33 / 66, "mid warmup");
  close(lrAt(66, o), 2e-5, "peak");
});

Deno.test("no warmup starts at the peak", () => {
  const o = { lr: 0.1, totalSteps: 4 };
  close(lrAt(0, o), 0.1, "step 0");
  close(lrAt(2, o), 0.05, "step 2 of 4");
});

Deno.test("linear and constant", () => {
  const lin = { lr: 1e-3, totalSteps: 13, warmupRatio: 0.2, schedule: "linear" } as const;
  close(lrAt(1, lin), 1e-3 / 3, "warmup");
  close(lrAt(3, lin), 1e-3, "peak");
  close(lrAt(8, lin), 5e-4, "half");
  close(lrAt(10, lin), 3e-4, "7/10 done");
  close(lrAt(13, lin), 0, "end");
  const con = { lr: 1e-3, totalSteps: 10, warmupRatio: 0.5, schedule: "constant" } as const;
  close(lrAt(0, con), 0, "warmup start");
  close(lrAt(4, con), 8e-4, "warmup 4/5");
  close(lrAt(5, con), 1e-3, "after warmup");
  close(lrAt(10, con), 1e-3, "end");
});

Deno.test("minLr is the floor of the decay, not of the warmup", () => {
  const o = { lr: 1e-3, totalSteps: 13, warmupRatio: 0.2, minLr: 1e-4 };
  close(lrAt(0, o), 0, "warmup starts at 0");
  close(lrAt(3, o), 1e-3, "peak");
  close(lrAt(8, o), 1e-4 + 0.9e-3 * 0.5, "half way");
  close(lrAt(13, o), 1e-4, "end");
  close(lrAt(8, { ...o, schedule: "linear" }), 5.5e-4, "linear half way");
});

Deno.test("bad options and steps name the field, the value and the rule", () => {
  assert.throws(
    () => lrAt(0, { lr: 0, totalSteps: 5 }),
    /schedule\.lr: Too small: expected number to be >0 \(got 0\)/,
  );
  assert.throws(
    () => lrAt(0, { lr: 1, totalSteps: 2.5 }),
    /schedule\.totalSteps: .*expected int.*\(got 2\.5\)/,
  );
  assert.throws(
    () => lrAt(0, { lr: 1, totalSteps: 5, warmupRatio: 1.5 }),
    /schedule\.warmupRatio: Too big: expected number to be <=1 \(got 1\.5\)/,
  );
  assert.throws(
    // deno-lint-ignore no-explicit-any
    () => lrAt(0, { lr: 1, totalSteps: 5, schedule: "step" as any }),
    /schedule\.schedule: .*expected one of "cosine"\|"constant"\|"linear" \(got "step"\)/,
  );
  assert.throws(
    () => lrAt(0, { lr: 1e-3, totalSteps: 5, minLr: 1e-2 }),
    /schedule\.minLr: 0\.01 is above lr 0\.001; set it to at most lr/,
  );
  assert.throws(
    () => parseLrSchedule({ lr: 1, totalSteps: 5, warmup: 0.1 }, "trainer"),
    /trainer\.warmup: unknown field; allowed fields: lr, totalSteps, warmupRatio, schedule, minLr/,
  );
  assert.throws(() => lrAt(-1, { lr: 1, totalSteps: 5 }), /step must be an integer >= 0/);
  assert.throws(() => lrAt(1.5, { lr: 1, totalSteps: 5 }), /step must be an integer >= 0/);
});
