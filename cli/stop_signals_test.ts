import assert from "node:assert/strict";
import { BURST_SECONDS, StopSignals } from "./stop_signals.ts";

/** Stop signals on a clock the test sets, with exits recorded instead of made. */
function fake(termTimeout = 0) {
  const t = { now: 0, lines: [] as string[], exits: [] as number[] };
  const stops = new StopSignals({
    termTimeout,
    note: "resume with --resume runs/x",
    print: (l) => t.lines.push(l),
    now: () => t.now,
    exit: (code) => t.exits.push(code),
  });
  return { stops, t };
}

Deno.test("stop signals: the first stops after the step, its burst is ignored, a later one quits (130)", () => {
  const { stops, t } = fake();
  assert.equal(stops.exitCode, null);
  assert.equal(stops.receive("SIGINT"), "stop");
  assert.ok(stops.signal.aborted);
  assert.match(
    t.lines[0],
    /stopping after this step and saving; press Ctrl-C again to quit without saving .*; resume with --resume runs\/x/,
  );
  t.now = 20; // deno task's forward of the same Ctrl-C
  assert.equal(stops.receive("SIGINT"), "same burst");
  t.now = BURST_SECONDS * 1000 - 1;
  assert.equal(stops.receive("SIGINT"), "same burst");
  assert.deepEqual(t.exits, []);
  t.now = BURST_SECONDS * 1000;
  assert.equal(stops.receive("SIGINT"), "quit");
  assert.deepEqual(t.exits, [130]);
  assert.match(t.lines.at(-1)!, /SIGINT again: quitting without saving/);
  assert.equal(stops.exitCode, 130);
});

Deno.test("stop signals: SIGTERM stops after the step and exits 143; a later signal of either kind quits", () => {
  const { stops, t } = fake();
  assert.equal(stops.receive("SIGTERM"), "stop");
  assert.match(t.lines[0], /SIGTERM: stopping after this step and saving/);
  t.now = 100;
  assert.equal(stops.receive("SIGINT"), "same burst");
  t.now = 5000;
  assert.equal(stops.receive("SIGINT"), "quit");
  assert.deepEqual(t.exits, [143]);
  assert.equal(stops.received, "SIGTERM");
});

Deno.test("stop signals: SIGTERM's timeout quits without saving, 143; close() cancels it", async () => {
  const { stops, t } = fake(0.05);
  stops.receive("SIGTERM");
  assert.match(t.lines[0], /quitting without saving after 0\.05 s or on a signal/);
  await new Promise((r) => setTimeout(r, 150));
  assert.deepEqual(t.exits, [143]);
  assert.match(
    t.lines.at(-1)!,
    /no checkpoint 0\.05 s after SIGTERM: quitting without saving \(--term-timeout/,
  );
  const other = fake(0.05);
  other.stops.receive("SIGTERM");
  other.stops.close();
  await new Promise((r) => setTimeout(r, 150));
  assert.deepEqual(other.t.exits, []);
  // Ctrl-C has no timeout: a person is there to press again.
  const int = fake(0.05);
  int.stops.receive("SIGINT");
  await new Promise((r) => setTimeout(r, 150));
  assert.deepEqual(int.t.exits, []);
});

Deno.test("stop signals: a negative or non-number termTimeout is an error naming it", () => {
  assert.throws(() => new StopSignals({ termTimeout: -1 }), /termTimeout must be a number of seconds >= 0/);
  assert.throws(() => new StopSignals({ termTimeout: NaN }), /termTimeout/);
});
