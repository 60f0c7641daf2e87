import assert from "node:assert/strict";
import { tinyConfig } from "../models/testing.ts";
import { applyRunOverrides, parseRunConfig, type RunConfigInput } from "./config.ts";

const SRC = "run.ts";
const run = (over: Partial<RunConfigInput> = {}): RunConfigInput => ({
  ...tinyConfig("cb.safetensors"),
  train: {
    stages: [{ data: "pretrain.json" }, { data: "finetune.json", name: "ft", trainable: { llm: true } }],
  },
  ...over,
});

function fails(value: unknown, pattern: RegExp): void {
  assert.throws(() => parseRunConfig(value, SRC), (err: Error) => {
    assert.match(err.message, pattern);
    return true;
  });
}

Deno.test("parseRunConfig fills every default; stages are named stage<n> unless named", () => {
  const cfg = parseRunConfig(run(), SRC);
  assert.equal(cfg.name, "run");
  assert.deepEqual(cfg.data, {
    tokenizer: null,
    imageSize: null,
    maxLength: 2048,
    onError: "error",
    maxSkipShare: 0.01,
    maxImageBytes: 64 * 2 ** 20,
    followSymlinks: false,
    prefetch: 2,
    shuffle: true,
    groupByLength: false,
  });
  const { stages, ...train } = cfg.train;
  assert.deepEqual(train, {
    seed: 0,
    dtype: "f32",
    lossScale: "dynamic",
    maxGradNorm: 1,
    checkpointLayers: true,
    maxNonFinite: 10,
    saveEvery: 0,
    keepLast: 2,
    evalEvery: 0,
    evalData: null,
    evalImageRoot: null,
    evalMaxNewTokens: 32,
    out: "runs",
    distributed: { keepGlobalBatch: true, shardOptimizer: false, bucketMiB: 128 },
  });
  assert.deepEqual(stages[0], {
    name: "stage1",
    data: "pretrain.json",
    imageRoot: null,
    template: "plain",
    imageMode: "resize",
    trainable: { projector: true, llm: false, head: true },
    batchSize: 1,
    gradAccum: 1,
    lr: 1e-3,
    warmupRatio: 0.03,
    schedule: "cosine",
    weightDecay: 0,
    epochs: 1,
    maxSteps: null,
    visualWeight: null,
  });
  assert.equal(stages[1].name, "ft");
  assert.deepEqual(stages[1].trainable, { projector: true, llm: true, head: true });
  // A head that learns no tokenizer's codes does not train.
  const noHead = parseRunConfig(run({ head: { kind: "none" } }), SRC);
  assert.deepEqual(noHead.train.stages.map((s) => s.trainable.head), [false, false]);
});

Deno.test("parseRunConfig: errors name the source, the full path, the value and what to do", () => {
  const stages = (...s: object[]) => ({ train: { stages: s as { data: string }[] } });
  fails(
    run(stages({ data: "a.json", lr: "fast" })),
    /^run\.ts: train\.stages\[0\]\.lr: .*expected number.*\(got "fast"\)/,
  );
  fails(
    run(stages({ data: "a.json", name: "a" }, { data: "b.json", name: "a" })),
    /^run\.ts: train\.stages\[1\]\.name: "a" is used twice$/,
  );
  fails(
    run(stages({ data: "a.json", trainable: { projector: false, head: false } })),
    /^run\.ts: train\.stages\[0\]\.trainable: nothing trains; set projector, llm or head to true$/,
  );
  fails(run(stages()), /^run\.ts: train\.stages: give at least one stage \(got \[\]\)$/);
  fails(run(stages({ data: "a.json", lrr: 1 })), /^run\.ts: train\.stages\[0\]\.lrr: unknown field/);
  fails(run({ name: "my run" }), /^run\.ts: name: must be a folder name of .* \(got "my run"\)$/);
  fails(
    run({ data: { maxLen: 10 } as never }),
    /^run\.ts: data\.maxLen: unknown field; allowed fields: tokenizer, imageSize, maxLength, /,
  );
  fails(
    run({ train: { stages: [{ data: "a.json" }], dtype: "bf16" as never } }),
    /^run\.ts: train\.dtype: .*expected one of "f32"\|"f16" \(got "bf16"\)$/,
  );
  fails({ ...run(), train: undefined }, /^run\.ts: train: missing; give a train object with stages/);
  fails(
    { ...run(), trainer: {} },
    /^run\.ts: trainer: unknown field; the fields are encoder, .*, name, data, train$/,
  );
  assert.throws(
    () => applyRunOverrides(run(), ["train.stages[0].batchSize=0"]),
    /^Error: --set \(train\.stages\[0\]\.batchSize=0\): train\.stages\[0\]\.batchSize: .*>0 \(got 0\)$/,
  );
});

Deno.test("train.distributed: a bad field is named with its path", () => {
  const withDist = (distributed: Record<string, unknown>) =>
    run({ train: { stages: [{ data: "x.json" }], distributed } });
  fails(withDist({ bucketMiB: 0 }), /train: distributed\.bucketMiB|train\.distributed\.bucketMiB/);
  fails(withDist({ shard: true }), /shard/);
  assert.equal(
    parseRunConfig(withDist({ shardOptimizer: true }), SRC).train.distributed.shardOptimizer,
    true,
  );
});
