import assert from "node:assert/strict";
import { join } from "node:path";
import { holdsRun, prepareNewRunDir, RunDirInUseError, runFiles } from "./run_dir.ts";

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

Deno.test("run folder: an absent, empty or run-less folder takes a new run", async () => {
  const dir = await Deno.makeTempDir();
  try {
    assert.deepEqual(await prepareNewRunDir(join(dir, "new")), []);
    assert.ok(await exists(join(dir, "new")), "created");
    assert.deepEqual(await prepareNewRunDir(join(dir, "new")), []); // empty
    await Deno.writeTextFile(join(dir, "new", "notes.txt"), "mine");
    await Deno.writeTextFile(join(dir, "new", "imports.json"), "{}");
    assert.equal(await holdsRun(join(dir, "new")), false);
    assert.deepEqual(await prepareNewRunDir(join(dir, "new")), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("run folder: one holding a run is refused, naming it and the ways out; overwrite deletes only its run files", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const run = join(dir, "tiny");
    await Deno.mkdir(join(run, "checkpoints", "step-00000008"), { recursive: true });
    await Deno.mkdir(join(run, "tokenizer"));
    for (const f of ["config.json", "metrics.jsonl", "loss.svg", "eval-step-4.json", "notes.txt"]) {
      await Deno.writeTextFile(join(run, f), "x");
    }
    assert.ok(await holdsRun(run));
    assert.deepEqual(await runFiles(run), [
      "checkpoints/",
      "config.json",
      "eval-step-4.json",
      "loss.svg",
      "metrics.jsonl",
      "tokenizer/",
    ]);
    await assert.rejects(
      () => prepareNewRunDir(run),
      (err: Error) => {
        assert.ok(err instanceof RunDirInUseError);
        assert.match(
          err.message,
          new RegExp(
            `^${run} holds a run already \\(checkpoints/, config\\.json, .*\\); continue it with --resume ${run}, ` +
              `start afresh with --overwrite .*--out DIR`,
          ),
        );
        return true;
      },
    );
    assert.ok(await exists(join(run, "checkpoints", "step-00000008")), "nothing deleted");
    const removed = await prepareNewRunDir(run, { overwrite: true });
    assert.equal(removed.length, 6);
    assert.deepEqual(await runFiles(run), []);
    assert.equal(await Deno.readTextFile(join(run, "notes.txt")), "x", "other files stay");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
