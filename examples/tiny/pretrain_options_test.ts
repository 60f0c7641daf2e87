import assert from "node:assert/strict";
import { parseOptions, PRETRAIN_WANT, pretrainSchema } from "./pretrain_options.ts";

Deno.test("parseOptions: defaults filled; errors name the function, the option, the value and the rule", () => {
  const o = parseOptions(pretrainSchema, { steps: 5 }, "pretrainLlm", PRETRAIN_WANT);
  assert.deepEqual(o, {
    steps: 5,
    batch: 16,
    lr: 3e-3,
    warmupRatio: 0.05,
    weightDecay: 0.01,
    maxGradNorm: 1,
    seed: 0,
    readEvery: 25,
  });
  const bad = (value: Record<string, unknown>, re: RegExp) =>
    assert.throws(() => parseOptions(pretrainSchema, value, "pretrainLlm", PRETRAIN_WANT), re);
  bad({ lr: -1 }, /^Error: pretrainLlm: option lr is -1; it must be a finite number > 0$/);
  bad({ lr: Infinity }, /option lr is Infinity; it must be a finite number > 0/);
  bad(
    { batch: 2.5, seed: "x" },
    /option batch is 2\.5; it must be an integer >= 1\n.*option seed is "x"; it must be an integer >= 0/,
  );
  bad({ stepz: 3 }, /pretrainLlm: unknown option stepz; the options are steps, batch, lr, /);
});
