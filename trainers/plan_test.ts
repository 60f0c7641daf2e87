import assert from "node:assert/strict";
import { gpuTest } from "../core/testing.ts";
import { AsvrModel, PARAM_PREFIXES } from "../models/asvr_model.ts";
import { tinyConfig, writeTinyCodebooks } from "../models/testing.ts";
import { modelConfig, parseRunConfig } from "./config.ts";
import { formatPlan, planRun } from "./plan.ts";

gpuTest("planRun: parameter counts equal the built model's, per component and per stage", async (e) => {
  const dir = await Deno.makeTempDir();
  try {
    const books = await writeTinyCodebooks(dir);
    for (
      const head of [{ kind: "asvr_depth" as const }, { kind: "linear" as const, width: 24 }, {
        kind: "none" as const,
      }]
    ) {
      const model = tinyConfig(books);
      const base = model.head as Record<string, unknown>;
      const cfgIn = {
        ...model,
        head: head.kind === "asvr_depth" ? base : head,
        train: {
          stages: [
            { data: "a.json", trainable: { projector: true, head: true, llm: false } },
            { data: "b.json", trainable: { projector: true, head: true, llm: true } },
          ],
        },
      };
      const cfg = parseRunConfig(cfgIn, "test");
      const plan = await planRun(cfg);
      const m = await AsvrModel.build(e, modelConfig(cfg));
      const count = (prefix: string) =>
        [...m.params()].filter(([n]) => n.startsWith(prefix)).reduce((s, [, t]) => s + t.size, 0);
      const got = Object.fromEntries(plan.components.map((c) => [c.name, c.params]));
      const headBuilt = [...m.head.params().values()].filter((t) => t.requiresGrad).reduce(
        (s, t) => s + t.size,
        0,
      );
      assert.equal(got.head, headBuilt, `${head.kind} head`);
      assert.equal(got.projector, count(PARAM_PREFIXES.projector), "projector");
      assert.equal(got.encoder, count(PARAM_PREFIXES.encoder), "encoder");
      assert.equal(got.llm, [...m.llm.params().values()].reduce((s, t) => s + t.size, 0), "llm");
      m.setTrainable(cfg.train.stages[1].trainable);
      const trainable = m.trainableParams().reduce((s, t) => s + t.size, 0);
      assert.equal(plan.stages[1].trainable, trainable, "stage 2 trainable");
      assert.ok(plan.stages[1].total > plan.stages[0].total, "stage 2 trains more, needs more");
      assert.match(formatPlan(plan), /estimated GPU memory per stage/);
      await m.dispose();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("planRun: the recipe's sizes without its folders (known checkpoints), and the head's ~737 M", async () => {
  const { default: recipe } = await import("../examples/asvr_vicuna7b.ts");
  const plan = await planRun(parseRunConfig(recipe, "asvr_vicuna7b.ts"));
  const get = (n: string) => plan.components.find((c) => c.name === n)!;
  assert.equal(get("llm").params, 6_738_415_616); // Vicuna-7B / LLaMA-2-7B
  assert.ok(Math.abs(get("head").params - 737e6) < 1e6, `head ${get("head").params}`);
  assert.match(get("llm").source, /lmsys\/vicuna-7b-v1.5/);
  assert.equal(plan.imageTokens, 729);
});
