import assert from "node:assert/strict";
import { join } from "node:path";
import { gpuTest } from "../core/testing.ts";
import { parseRunConfig } from "../trainers/config.ts";
import { train } from "../trainers/trainer.ts";
import { writeTinyRun } from "./tiny_run.ts";
import { runCli } from "./run_cli.ts";

const RECIPE = new URL("../examples/asvr_vicuna7b.ts", import.meta.url).pathname;

Deno.test("train --plan: the recipe's sizes and memory per stage, without weights", async () => {
  const r = await runCli("train.ts", [RECIPE, "--plan", "--set", "train.stages[0].batchSize=2"]);
  assert.equal(r.code, 0, r.out);
  assert.match(r.out, /llm\s+6\.74 B/);
  assert.match(r.out, /head\s+736\.6 M/);
  assert.match(r.out, /pretrain\s+758\.0 M/);
  assert.match(r.out, /finetune\s+7\.50 B/);
});

Deno.test("train: a wrong --set key or type, and missing weights, are errors naming the path and the fix", async () => {
  let r = await runCli("train.ts", [RECIPE, "--plan", "--set", "train.stages[0].lr=fast"]);
  assert.equal(r.code, 1);
  assert.match(r.out, /train\.stages\[0\]\.lr/);
  r = await runCli("train.ts", [RECIPE, "--plan", "--set", "trainer.lr=1"]);
  assert.equal(r.code, 1);
  assert.match(r.out, /trainer: unknown field; the fields are .*train/);
  r = await runCli("train.ts", [RECIPE, "--attention", "fastest"]);
  assert.equal(r.code, 1);
  assert.match(r.out, /--attention: one of auto, flash, matmul, fused, got fastest/);
  r = await runCli("train.ts", [RECIPE, "--set", "llm.path=/nonexistent/vicuna-7b-v1.5"]);
  assert.equal(r.code, 1);
  assert.match(r.out, /llm\.path = \/nonexistent\/vicuna-7b-v1\.5\n\s+download lmsys\/vicuna-7b-v1\.5/);
  assert.match(
    r.out,
    /visualTokenizers\[0\]\.codebooks = .*\n\s+fit codebooks with `deno task tokenizer fit`/,
  );
});

gpuTest(
  "eval: a trained run's latest checkpoint answers a questions file; results as JSON and a table",
  async (e) => {
    const dir = await Deno.makeTempDir();
    try {
      const cfg = parseRunConfig(await writeTinyRun(dir, { steps: 1 }), "tiny");
      const runDir = join(dir, "run");
      await train(e, { ...cfg, train: { ...cfg.train, evalData: null } }, { runDir, print: () => {} });
      const out = join(dir, "results.json");
      const r = await runCli("eval.ts", [
        runDir,
        join(dir, "images", "eval.json"),
        "--out",
        out,
        "--max-new-tokens",
        "3",
      ]);
      assert.equal(r.code, 0, r.out);
      assert.match(r.out, /overall/);
      assert.match(r.out, /type yesno/);
      const report = JSON.parse(await Deno.readTextFile(out));
      assert.equal(report.answers.length, 16);
      assert.match(report.meta.checkpoint, /checkpoints\/step-00000002$/);
      const bad = await runCli("eval.ts", [join(dir, "nothing"), join(dir, "images", "eval.json")]);
      assert.equal(bad.code, 1);
      assert.match(bad.out, /no complete checkpoint/);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);
