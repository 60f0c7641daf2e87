import assert from "node:assert/strict";
import { LossScaler, NonFiniteGuard } from "./loss_scaler.ts";

Deno.test("loss scaler: halves on overflow, doubles after the growth interval, clamps", () => {
  const s = new LossScaler();
  assert.equal(s.scale, 65536);
  assert.deepEqual(s.update(false), { skip: true });
  assert.equal(s.scale, 32768);
  for (let i = 0; i < 1999; i++) assert.deepEqual(s.update(true), { skip: false });
  assert.equal(s.scale, 32768);
  s.update(true); // the 2000th finite step in a row
  assert.equal(s.scale, 65536);

  const t = new LossScaler({ initScale: 4, growthInterval: 3, maxScale: 16 });
  t.update(true);
  t.update(true);
  t.update(false); // an overflow resets the run of good steps
  assert.equal(t.scale, 2);
  t.update(true);
  t.update(true);
  assert.equal(t.scale, 2);
  t.update(true);
  assert.equal(t.scale, 4);
  for (let i = 0; i < 30; i++) t.update(true);
  assert.equal(t.scale, 16, "capped at maxScale");
  for (let i = 0; i < 10; i++) assert.equal(t.update(false).skip, true);
  assert.equal(t.scale, 1, "floored at minScale 1");
});

Deno.test("loss scaler: state round trip and option checks", () => {
  const a = new LossScaler({ initScale: 8, growthInterval: 5 });
  a.update(true);
  a.update(true);
  assert.deepEqual(a.state(), { scale: 8, goodSteps: 2 });
  const b = new LossScaler({ growthInterval: 5 });
  b.loadState(a.state());
  b.update(true);
  b.update(true);
  b.update(true);
  assert.equal(b.scale, 16);
  assert.throws(() => b.loadState({ scale: -1, goodSteps: 0 }), /loadState: expected/);
  assert.throws(
    () => new LossScaler({ growthInterval: 0 }),
    /LossScaler: options\.growthInterval: Too small: expected number to be >=1 \(got 0\)/,
  );
  assert.throws(
    () => new LossScaler({ backoffFactor: 2 }),
    /LossScaler: options\.backoffFactor: Too big: expected number to be <=1 \(got 2\)/,
  );
  assert.throws(
    () => new LossScaler({ initScale: 0.5 }),
    /LossScaler: options: need minScale <= initScale <= maxScale, got 1, 0\.5, 16777216/,
  );
  assert.throws(
    () => new LossScaler({ initscale: 8 } as never),
    /LossScaler: options\.initscale: unknown field; allowed fields: initScale, growthInterval, /,
  );
});

Deno.test("non-finite guard: throws after maxConsecutive skips in a row, naming what to try", () => {
  const g = new NonFiniteGuard({ maxConsecutive: 3 });
  g.record(true);
  g.record(true);
  g.record(false); // a good step resets the run
  assert.equal(g.consecutive, 0);
  g.record(true);
  g.record(true);
  assert.equal(g.consecutive, 2);
  assert.equal(g.total, 4);
  assert.throws(() => g.record(true, { step: 41, scale: 1 }), (err: Error) => {
    assert.match(err.message, /^3 training steps in a row had non-finite/);
    assert.match(err.message, /at step 41/);
    assert.match(err.message, /loss scale is down to 1/);
    assert.match(err.message, /lower learning rate/);
    assert.match(err.message, /f32/);
    assert.match(err.message, /checking the data/);
    return true;
  });
  const d = new NonFiniteGuard();
  for (let i = 0; i < 19; i++) d.record(true);
  assert.throws(() => d.record(true), /20 training steps in a row/);
  assert.throws(
    () => new NonFiniteGuard({ maxConsecutive: 0 }),
    /NonFiniteGuard: options\.maxConsecutive: Too small: expected number to be >=1 \(got 0\)/,
  );
});
