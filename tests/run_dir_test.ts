/**
 * Rerunning `deno task train` into a run folder that holds a run: refused, naming the folder and the
 * ways out, with nothing of the old run touched; with `--overwrite`, the old run's files go first, so
 * the new run's metrics, checkpoints and config are its own.
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { listCheckpoints } from "../trainers/checkpoint.ts";
import { readMetrics } from "../trainers/metrics.ts";
import { writeTinyRunFile } from "./tiny_run.ts";
import { runCli } from "./run_cli.ts";

Deno.test("train into a folder holding a run: refused without --resume or --overwrite; --overwrite starts afresh", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const { file } = await writeTinyRunFile(dir, { steps: 1 });
    const runDir = join(dir, "runs", "tiny"); // <train.out>/<name>
    // The old run: 3 + 1 steps.
    let r = await runCli("train.ts", [file, "--set", "train.stages[0].maxSteps=3"]);
    assert.equal(r.code, 0, r.out);
    await Deno.writeTextFile(join(runDir, "notes.txt"), "mine");
    const before = await Deno.readTextFile(join(runDir, "metrics.jsonl"));
    const config = await Deno.readTextFile(join(runDir, "config.json"));

    r = await runCli("train.ts", [file]);
    assert.equal(r.code, 1, r.out);
    assert.match(
      r.out,
      new RegExp(
        `train: ${runDir} holds a run already \\(checkpoints/, config\\.json, .*metrics\\.jsonl.*\\); ` +
          `continue it with --resume ${runDir}, start afresh with --overwrite \\(its run files are deleted ` +
          `first\\), or train into another folder \\(--out DIR, or another run name: --set name=NAME\\)`,
      ),
    );
    assert.doesNotMatch(r.out, /adapter:/, "refused before anything loads");
    assert.doesNotMatch(r.out, /^data of stage/m, "refused before the data scan");
    assert.equal(await Deno.readTextFile(join(runDir, "metrics.jsonl")), before, "metrics.jsonl untouched");
    assert.equal(await Deno.readTextFile(join(runDir, "config.json")), config, "config.json untouched");
    assert.deepEqual((await listCheckpoints(runDir)).map((c) => c.step), [3, 4], "checkpoints untouched");

    r = await runCli("train.ts", [file, "--overwrite", "--resume", runDir]);
    assert.equal(r.code, 1, r.out);
    assert.match(r.out, /--overwrite starts a run afresh and --resume .* continues one: give one/);

    r = await runCli("train.ts", [file, "--overwrite"]);
    assert.equal(r.code, 0, r.out);
    assert.match(
      r.out,
      new RegExp(`overwrite: deleted the old run's checkpoints/, config\\.json, .* in ${runDir}`),
    );
    assert.deepEqual((await readMetrics(runDir)).map((m) => m.step), [1, 2]);
    assert.deepEqual((await listCheckpoints(runDir)).map((c) => c.step), [1, 2]);
    assert.equal(
      JSON.parse(await Deno.readTextFile(join(runDir, "config.json"))).train.stages[0].maxSteps,
      1,
    );
    assert.equal(await Deno.readTextFile(join(runDir, "notes.txt")), "mine", "other files stay");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
