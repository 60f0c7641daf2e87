import assert from "node:assert/strict";
import { configChanges } from "./config_changes.ts";

Deno.test("configChanges: the differing fields, by path, old -> new", () => {
  const a = {
    name: "r",
    train: { stages: [{ lr: 1e-3, batchSize: 2 }, { lr: 2e-5 }] },
    data: { shuffle: true },
  };
  const b = {
    name: "r",
    train: { stages: [{ lr: 1e-3, batchSize: 4 }, { lr: 1e-5 }] },
    data: {},
    extra: [1],
  };
  assert.deepEqual(configChanges(a, a), []);
  assert.deepEqual(configChanges(a, b), [
    "train.stages[0].batchSize: 2 -> 4",
    "train.stages[1].lr: 0.00002 -> 0.00001",
    "data.shuffle: true -> (absent)",
    "extra: (absent) -> [1]",
  ]);
  assert.deepEqual(configChanges({ x: [1, 2] }, { x: [1] }), ["x: [1,2] -> [1]"]);
});
