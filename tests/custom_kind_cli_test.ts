// A user's head kind, defined in a module outside the framework's folders
// (tests/fixtures/custom_kind/first_depth_head.ts), goes through every shipped command: --plan counts
// it as the built head has it, train records the run file, and eval, export and resume import it
// again; a run moved away from its modules names them and takes --import.
import assert from "node:assert/strict";
import { join } from "node:path";
import { gpuTest } from "../core/testing.ts";
import { buildHead, parseHeadConfig } from "../heads/mod.ts";
import { SafetensorsFile } from "../io/safetensors.ts";
import { readMetrics } from "../trainers/metrics.ts";
import { loadCheckpoint } from "../trainers/checkpoint.ts";
import { countKernelChoices, type KernelChoices } from "../trainers/kernel_choices.ts";
import { writeTinyRun } from "./tiny_run.ts";
import { TINY } from "../models/testing.ts";
import { runCli } from "./run_cli.ts";

const HEAD_MODULE = new URL("./fixtures/custom_kind/first_depth_head.ts", import.meta.url);

gpuTest("a custom head kind plans, trains, evaluates, exports and resumes through the CLI", async (e) => {
  await import(HEAD_MODULE.href);
  const dir = await Deno.makeTempDir();
  try {
    const input = await writeTinyRun(dir, { steps: 1 });
    const head = { kind: "first_depth_mlp", target: "semantic", width: 20, codebookSize: TINY.codes };
    const cfg = { ...input, head, train: { ...input.train, evalData: null } };
    const runFile = join(dir, "run.ts");
    await Deno.writeTextFile(
      runFile,
      `import ${JSON.stringify(HEAD_MODULE.href)};\nexport default ${JSON.stringify(cfg, null, 1)};\n`,
    );

    // --plan counts the head from the shapes its kind declares: the built head's parameters.
    const built = buildHead(e, parseHeadConfig(head, "head"), { llmWidth: TINY.llmWidth });
    const count = [...built.params().values()].reduce((n, t) => n + t.size, 0);
    for (const t of built.params().values()) t.dispose();
    let r = await runCli("train.ts", [runFile, "--plan"]);
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, new RegExp(`\\n  head\\s+${count}  \\(run file\\)`), r.out);

    // Train: the run folder records the run file.
    const runDir = join(dir, "run");
    r = await runCli("train.ts", [runFile, "--out", runDir]);
    assert.equal(r.code, 0, r.out);
    const imports = JSON.parse(await Deno.readTextFile(join(runDir, "imports.json")));
    assert.ok(imports.modules.some((m: string) => m.endsWith("/run.ts")), JSON.stringify(imports));
    const steps = await readMetrics(runDir);
    assert.equal(steps.length, 2);
    assert.ok(steps.every((s) => Number.isFinite(s.loss_visual_first)), JSON.stringify(steps));

    // Eval and export import the recorded run file, so the kind parses and builds.
    const questions = join(dir, "images", "eval.json");
    r = await runCli("eval.ts", [runDir, questions, "--max-new-tokens", "2", "--out", join(dir, "ev.json")]);
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /overall/);
    const exported = join(dir, "export");
    r = await runCli("export.ts", [runDir, "--out", exported]);
    assert.equal(r.code, 0, r.out);
    const f = await SafetensorsFile.open(join(exported, "model.safetensors"));
    assert.ok(f.names().includes("visual_head.fc2.weight"), f.names().join(", "));
    f.close();

    // Resume with the run's own config: one more step of stage 2, with the flash attention kernels and
    // packed f16 products (the tiny run is f32: accepted, no effect); --tune then leaves attention alone.
    r = await runCli("train.ts", [
      "--resume",
      runDir,
      "--set",
      "train.stages[1].maxSteps=2",
      "--attention",
      "flash",
      "--packed-f16",
      "--tune",
    ]);
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /attention: flash\n/);
    assert.match(r.out, /attention: flash is set, so its choice is not measured/); // --tune measures the rest
    assert.doesNotMatch(r.out, /attention measured at/);
    assert.match(r.out, /matmul: f16 products summed in packed f16/);
    // The matmul kernels of the products the first step ran, measured after it.
    const products = [...r.out.matchAll(/^matmul (\S.*) f32: (.*) -> (\S+)$/gm)];
    assert.ok(products.length >= 3, r.out); // at least a layer's forward, its input's and weight's gradients
    for (const m of products) assert.match(m[2], new RegExp(`(^|, )${m[3]} [\\d.]+ ms`));
    assert.match(r.out, new RegExp(`matmul kernels measured for ${products.length} products in [\\d.]+ s`));
    assert.deepEqual((await readMetrics(runDir)).map((s) => s.step), [1, 2, 3]);

    // One more: the choices measured are kept; attention is measured at the run's shapes, and the
    // products not measured yet.
    r = await runCli("train.ts", ["--resume", runDir, "--set", "train.stages[1].maxSteps=3", "--tune"]);
    assert.equal(r.code, 0, r.out);
    assert.match(
      r.out,
      new RegExp(`kernel choices measured earlier in this run, kept: ${products.length} matmul products`),
    );
    const tuned = [
      ...r.out.matchAll(/attention measured at B\d+ NH\d+\/\d+ T(\d+) HS\d+ f32: (.*) -> (\w+)/g),
    ];
    // data.maxLength and a quarter of it, each also less one
    assert.deepEqual(tuned.map((m) => Number(m[1])), [128, 127, 32, 31], r.out);
    for (const m of tuned) assert.match(m[2], new RegExp(`${m[3]} [\\d.]+ ms`));
    const more = [...r.out.matchAll(/^matmul (\S.*) f32: (.*) -> (\S+)$/gm)];
    assert.match(r.out, new RegExp(`matmul kernels measured for ${more.length} products in [\\d.]+ s`));
    assert.deepEqual((await readMetrics(runDir)).map((s) => s.step), [1, 2, 3, 4]);
    // The checkpoint keeps the choices: the next resume runs the same kernels, measuring no attention again.
    const kept = (await loadCheckpoint(runDir)).trainerState.kernelChoices as KernelChoices;
    assert.deepEqual(
      kept.attention.map((c) => `${c.size} ${c.choice}`).sort(),
      tuned.map((m) => `${m[1]} ${m[3]}`).sort(),
    );
    assert.equal(kept.matmul.length, products.length + more.length);
    assert.match(kept.adapter ?? "", /\S/, "the choices name the adapter they were measured on");
    r = await runCli("train.ts", ["--resume", runDir, "--set", "train.stages[1].maxSteps=4", "--tune"]);
    assert.equal(r.code, 0, r.out);
    assert.match(
      r.out,
      new RegExp(`kernel choices measured earlier in this run, kept: ${countKernelChoices(kept)}`),
    );
    assert.doesNotMatch(r.out, /attention measured at/);

    // Moved away from its run file: the error names the module and the fix; --import covers it.
    await Deno.rename(runFile, join(dir, "elsewhere.ts"));
    r = await runCli("eval.ts", [runDir, questions, "--max-new-tokens", "1", "--out", join(dir, "ev2.json")]);
    assert.equal(r.code, 1, r.out);
    assert.match(r.out, /unknown head kind "first_depth_mlp"/);
    assert.match(
      r.out,
      /the run records module\(s\) not found here: file:\/\/.*\/run\.ts; .*--import <module>/,
    );
    r = await runCli("eval.ts", [
      runDir,
      questions,
      "--max-new-tokens",
      "1",
      "--out",
      join(dir, "ev2.json"),
      "--import",
      HEAD_MODULE.pathname,
    ]);
    assert.equal(r.code, 0, r.out);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
