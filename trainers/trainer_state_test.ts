import assert from "node:assert/strict";
import { checkTrainerState } from "./trainer_state.ts";

const STAGES = [{ name: "pretrain", maxSteps: 3 }, { name: "finetune", maxSteps: null }];
const FILE = "runs/x/checkpoints/step-00000005/trainer_state.json";

/** A trainer state as the trainer writes it: stage 2, 2 of its steps done, 5 in all. */
function good(): Record<string, unknown> {
  return {
    position: { stage: 1, stageStep: 2, step: 5, epoch: 0, row: 8, scaler: { scale: 65536, goodSteps: 5 } },
    stage: "finetune",
    config: "tiny",
  };
}

function fails(state: unknown, re: RegExp, step: number | null = 5): void {
  assert.throws(() => checkTrainerState(state, FILE, STAGES, step), (err: Error) => {
    assert.ok(err.message.startsWith(`${FILE}: `), err.message);
    assert.match(err.message, re);
    return true;
  });
}

Deno.test("checkTrainerState: a good state passes, unknown fields kept", () => {
  const s = good();
  assert.deepEqual(checkTrainerState(s, FILE, STAGES, 5), s);
  assert.equal(checkTrainerState(s, FILE, STAGES).position.row, 8);
});

Deno.test("checkTrainerState: the schema's errors name the file and the field", () => {
  fails({}, /trainer_state\.json: position: .*\(missing\)/);
  fails([], /trainer_state\.json: .*expected object/);
  const s = good();
  (s.position as Record<string, unknown>).step = "six";
  fails(s, /trainer_state\.json: position\.step: .*expected number.*\(got "six"\)/);
  const t = good();
  (t.position as Record<string, unknown>).row = -1;
  (t.position as Record<string, unknown>).scaler = { scale: 0, goodSteps: 1 };
  fails(t, /position\.row: .*\n.*position\.scaler\.scale: /);
});

Deno.test("checkTrainerState: checked against the run's stages and the folder's step", () => {
  const s = good();
  (s.position as Record<string, unknown>).stage = 7;
  fails(s, /position\.stage is 7, but the run has 2 stage\(s\) \(indices 0 to 1\); resume with the config/);
  const n = good();
  n.stage = "pretrain";
  fails(n, /stage is "pretrain", but stage 1 of the run is "finetune"/);
  const m = good();
  m.stage = "pretrain";
  m.position = { ...(m.position as object), stage: 0, stageStep: 4 };
  fails(m, /position\.stageStep is 4, past the 3 steps \(maxSteps\) of stage "pretrain"/);
  const k = good();
  (k.position as Record<string, unknown>).stageStep = 6;
  fails(k, /position\.stageStep 6 exceeds position\.step 5/, null);
  fails(good(), /position\.step is 5, but the checkpoint folder is of step 6/, 6);
});
