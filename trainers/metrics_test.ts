import assert from "node:assert/strict";
import { METRICS_FILE, MetricsWriter, parseMetrics, readMetrics } from "./metrics.ts";

async function inTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "asvr_metrics_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("records land in the file one line each, as they are written", async () => {
  await inTempDir(async (root) => {
    const run = `${root}/run`;
    const log = await MetricsWriter.open(run);
    log.write({ step: 1, loss_text: 2.5, lr: 1e-3, stage: 1 });
    // visible before close: each record is written through at once
    assert.equal(
      await Deno.readTextFile(`${run}/${METRICS_FILE}`),
      '{"step":1,"loss_text":2.5,"lr":0.001,"stage":1}\n',
    );
    log.write({ step: 2, loss_text: NaN, loss_visual_semantic: Infinity, note: "eval" });
    assert.throws(() => log.write({ step: NaN }), /needs a finite "step"/);
    log.close();
    log.close();
    assert.throws(() => log.write({ step: 3 }), /write after close/);
    assert.deepEqual(await readMetrics(run), [
      { step: 1, loss_text: 2.5, lr: 1e-3, stage: 1 },
      { step: 2, loss_text: null, loss_visual_semantic: null, note: "eval" },
    ]);
    // reopening appends
    const again = await MetricsWriter.open(run);
    again.write({ step: 3, loss_text: 2 });
    again.close();
    assert.deepEqual((await readMetrics(`${run}/${METRICS_FILE}`)).map((r) => r.step), [1, 2, 3]);
  });
});

Deno.test("resume drops the steps after the checkpoint; a torn last line is dropped", async () => {
  await inTempDir(async (run) => {
    const path = `${run}/${METRICS_FILE}`;
    await Deno.writeTextFile(path, '{"step":1,"a":1}\n{"step":2,"a":2}\n{"step":3,"a":3}\n{"step":4,"a"');
    assert.deepEqual((await readMetrics(run)).map((r) => r.step), [1, 2, 3]);
    const log = await MetricsWriter.open(run, { resumeStep: 2 });
    log.write({ step: 3, a: 30 });
    log.close();
    assert.deepEqual(await readMetrics(run), [{ step: 1, a: 1 }, { step: 2, a: 2 }, { step: 3, a: 30 }]);
    // without resumeStep, a torn line is cut before appending
    await Deno.writeTextFile(path, '{"step":1}\n{"st');
    const log2 = await MetricsWriter.open(run);
    log2.write({ step: 2 });
    log2.close();
    assert.equal(await Deno.readTextFile(path), '{"step":1}\n{"step":2}\n');
  });
});

Deno.test("a missing log reads as empty; bad lines name the file and the line", async () => {
  await inTempDir(async (run) => {
    assert.deepEqual(await readMetrics(run), []);
  });
  assert.throws(
    () => parseMetrics('{"step":1}\nnot json\n{"step":2}\n', "m.jsonl"),
    /m\.jsonl:2: not a JSON line/,
  );
  assert.throws(
    () => parseMetrics('{"step":1}\n[1]\n', "m.jsonl"),
    /m\.jsonl:2: a metrics line must be a JSON object/,
  );
  assert.throws(
    () => parseMetrics('\n{"loss":1}\n', "m.jsonl"),
    /m\.jsonl:2: the record has no numeric "step"/,
  );
});
