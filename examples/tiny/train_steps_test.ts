import assert from "node:assert/strict";
import { gpuTest } from "../../core/testing.ts";
import { BatchSampler, trainSteps } from "./train_steps.ts";

gpuTest("trainSteps: every step's loss, in order, read back once per readEvery steps", async (e) => {
  let ran = 0;
  const calls: [number, number, number][] = []; // [step, loss, steps run when reported]
  const losses = await trainSteps(
    e,
    { steps: 10, readEvery: 4, label: "test", onStep: (s, l) => calls.push([s, l, ran]) },
    (i) => {
      ran++;
      return e.tidy(() => e.tensor([i * 0.5], []));
    },
  );
  assert.deepEqual(losses, [0, 0.5, 1, 1.5, 2, 2.5, 3, 3.5, 4, 4.5]);
  assert.deepEqual(calls.map((c) => c[0]), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  assert.deepEqual(calls.map((c) => c[2]), [4, 4, 4, 4, 8, 8, 8, 8, 10, 10]);
});

gpuTest("trainSteps: a non-finite loss stops the run naming the step", async (e) => {
  await assert.rejects(
    trainSteps(e, { steps: 5, readEvery: 2, label: "run" }, (i) => e.tensor([i === 3 ? NaN : 1], [])),
    /run: the loss of step 3 is NaN; lower the learning rate/,
  );
  await assert.rejects(
    trainSteps(e, { steps: 0, readEvery: 2, label: "run" }, () => e.tensor([1], [])),
    /steps/,
  );
});

Deno.test("BatchSampler: each epoch visits every index once, in an order fixed by the seed", () => {
  const a = new BatchSampler(7, 1), b = new BatchSampler(7, 1), c = new BatchSampler(7, 2);
  const first = [...a.next(4), ...a.next(4), ...a.next(6)]; // two epochs of 7
  assert.deepEqual([...first.slice(0, 7)].sort(), [0, 1, 2, 3, 4, 5, 6]);
  assert.deepEqual([...first.slice(7)].sort(), [0, 1, 2, 3, 4, 5, 6]);
  assert.deepEqual(b.next(14), first);
  assert.notDeepEqual(c.next(14), first);
  assert.throws(() => new BatchSampler(0, 1), /at least one example/);
});
