import assert from "node:assert/strict";
import {
  formatBytes,
  formatDuration,
  formatLoss,
  formatLr,
  formatMicroBatch,
  formatProgress,
  ProgressLine,
} from "./progress.ts";

Deno.test("the full line, field by field", () => {
  const line = formatProgress({
    stage: { index: 1, count: 2 },
    step: 120,
    totalSteps: 5000,
    losses: { loss_text: 2.3141, loss_visual: 5.12 },
    lr: 1e-3,
    tokensPerSec: 1234.4,
    gpuBytes: 3.2 * 2 ** 30,
    etaSeconds: 3725,
  });
  assert.equal(
    line,
    "stage 1/2 step 120/5000 loss_text 2.314 loss_visual 5.120 lr 1.0e-3 1234 tok/s gpu 3.2 GiB eta 1h02m",
  );
  assert.equal(formatProgress({ step: 0, totalSteps: 10 }), "step 0/10");
});

Deno.test("durations, bytes, rates and losses", () => {
  assert.equal(formatDuration(0), "0s");
  assert.equal(formatDuration(59.4), "59s");
  assert.equal(formatDuration(185), "3m05s");
  assert.equal(formatDuration(3600), "1h00m");
  assert.equal(formatDuration(2 * 86400 + 3 * 3600 + 59), "2d03h");
  assert.equal(formatDuration(NaN), "?");
  assert.equal(formatBytes(512), "512 B");
  assert.equal(formatBytes(12 * 1024), "12.0 KiB");
  assert.equal(formatBytes(1536 * 2 ** 20), "1.5 GiB");
  assert.equal(formatLr(2e-5), "2.0e-5");
  assert.equal(formatLr(0.00025), "2.5e-4");
  assert.equal(formatLoss(NaN), "nan");
  assert.equal(formatLoss(-Infinity), "-inf");
  assert.equal(formatLoss(0.0005), "0.001");
});

function fakeLine(isTty: boolean) {
  let t = 0;
  const out: string[] = [];
  const p = new ProgressLine({
    isTty,
    intervalSec: 10,
    smoothing: 0.5,
    write: (s) => out.push(s),
    now: () => t,
  });
  return { p, out, tick: (ms: number) => (t += ms) };
}

Deno.test("ETA from the smoothed step time", () => {
  const { p, out, tick } = fakeLine(true);
  p.update({ step: 0, totalSteps: 100 });
  assert.equal(out[0], "\rstep 0/100\x1b[K"); // no ETA before a step time is known
  tick(2000);
  p.update({ step: 1, totalSteps: 100 }); // 2 s/step -> 99 * 2 = 198 s
  assert.equal(p.secondsPerStep, 2);
  assert.equal(out[1], "\rstep 1/100 eta 3m18s\x1b[K");
  tick(8000);
  p.update({ step: 3, totalSteps: 100 }); // 4 s/step -> 0.5 * 4 + 0.5 * 2 = 3 s/step; 97 * 3 = 291 s
  assert.equal(p.secondsPerStep, 3);
  assert.equal(out[2], "\rstep 3/100 eta 4m51s\x1b[K");
  p.message("saved checkpoint step-00000003");
  assert.equal(out[3], "\r\x1b[Ksaved checkpoint step-00000003\nstep 3/100 eta 4m51s");
  p.done();
  assert.equal(out[4], "\n");
});

Deno.test("not a terminal: plain lines every interval, and the last step", () => {
  const { p, out, tick } = fakeLine(false);
  p.update({ step: 0, totalSteps: 4 });
  tick(3000);
  p.update({ step: 1, totalSteps: 4 }); // 3 s after the last print: not printed
  tick(7000);
  p.update({ step: 2, totalSteps: 4 }); // 10 s: printed; 0.5 * 7 + 0.5 * 3 = 5 s/step, 2 left
  tick(1000);
  p.update({ step: 4, totalSteps: 4 }); // the end: printed
  p.done();
  assert.deepEqual(out, ["step 0/4\n", "step 2/4 eta 10s\n", "step 4/4 eta 0s\n"]);
  assert.ok(out.every((s) => !s.includes("\r")));
  p.message("done");
  assert.equal(out.at(-1), "done\n");
});

Deno.test("bad options are named", () => {
  assert.throws(
    () => new ProgressLine({ smoothing: 0 }),
    /ProgressLine: options\.smoothing: Too small: expected number to be >0 \(got 0\)/,
  );
  assert.throws(
    () => new ProgressLine({ intervalSec: -1 }),
    /ProgressLine: options\.intervalSec: Too small: expected number to be >=0 \(got -1\)/,
  );
  assert.throws(
    () => new ProgressLine({ write: "stdout" } as never),
    /ProgressLine: options\.write: must be a function/,
  );
});

Deno.test("a step under way: its micro-batches, in place on a terminal, else as a line", () => {
  const fields = { stage: { index: 1, count: 2 }, step: 121, totalSteps: 5000, done: 17, count: 64 };
  assert.equal(formatMicroBatch(fields), "stage 1/2 step 121/5000: micro-batch 17/64");
  assert.equal(
    formatMicroBatch({ ...fields, stage: undefined, seconds: 85 }),
    "step 121/5000: micro-batch 17/64 (1m25s into the step)",
  );
  const tty = fakeLine(true);
  tty.p.status("step 2/9: micro-batch 1/4");
  tty.p.message("note");
  assert.deepEqual(tty.out, ["\rstep 2/9: micro-batch 1/4\x1b[K", "\r\x1b[Knote\nstep 2/9: micro-batch 1/4"]);
  const plain = fakeLine(false);
  plain.p.status("step 2/9: micro-batch 1/4");
  assert.deepEqual(plain.out, ["step 2/9: micro-batch 1/4\n"]);
});
