/**
 * Ctrl-C and SIGTERM lose nothing: `deno task train` stopped by SIGINT to its process group (the
 * terminal's Ctrl-C, which the task runner forwards again), and `cli/train.ts` stopped by SIGTERM, each
 * finish the step, leave a complete checkpoint and exit 130 / 143; resumed, each ends with the same
 * weights, optimizer state and losses as a run that never stopped.
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { readMetrics } from "../trainers/metrics.ts";
import { latestCheckpoint } from "../trainers/checkpoint.ts";
import { writeTinyRunFile } from "./tiny_run.ts";
import { runCli } from "./run_cli.ts";

const ROOT = new URL("..", import.meta.url).pathname;
/** Optimizer steps of each of the tiny run's two stages. */
const STEPS = 2;

/** A CLI process whose output is read as it comes. */
class Child {
  readonly process: Deno.ChildProcess;
  #out = "";
  #done: Promise<void>;

  constructor(cmd: string, args: string[]) {
    this.process = new Deno.Command(cmd, {
      args,
      cwd: ROOT,
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).spawn();
    const read = async (s: ReadableStream<Uint8Array>) => {
      for await (const t of s.pipeThrough(new TextDecoderStream())) this.#out += t;
    };
    this.#done = Promise.all([read(this.process.stdout), read(this.process.stderr)]).then(() => {});
  }

  /** What it printed so far (stdout and stderr as they came). */
  get out(): string {
    return this.#out;
  }

  /** Waits until its output matches `re` (fails after `timeoutMs` or when it exits first). */
  async waitFor(re: RegExp, timeoutMs = 60_000): Promise<void> {
    const t0 = performance.now();
    let exited = false;
    this.process.status.then(() => exited = true);
    while (!re.test(this.#out)) {
      if (exited || performance.now() - t0 > timeoutMs) {
        throw new Error(`no output matching ${re} (${exited ? "it exited" : "timed out"}):\n${this.#out}`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** Its exit code, once its output is all read. */
  async code(): Promise<number> {
    const s = await this.process.status;
    await this.#done;
    return s.code;
  }
}

/** The tiny run's file, and the final checkpoint and losses of an uninterrupted run (made once). */
let shared: Promise<{ dir: string; file: string; checkpoint: string; losses: Loss[] }> | null = null;

type Loss = Record<string, unknown>;

function reference() {
  return shared ??= (async () => {
    const dir = await Deno.makeTempDir({ prefix: "asvr_signals_" });
    globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));
    const { file } = await writeTinyRunFile(dir, { steps: STEPS });
    const out = join(dir, "full");
    const r = await runCli("train.ts", [file, "--out", out]);
    assert.equal(r.code, 0, r.out);
    return { dir, file, checkpoint: (await latestCheckpoint(out))!, losses: await losses(out) };
  })();
}

/** The losses of each step in a run's metrics.jsonl. */
async function losses(runDir: string): Promise<Loss[]> {
  return (await readMetrics(runDir)).map((r) =>
    Object.fromEntries(Object.entries(r).filter(([k]) => k === "step" || k.startsWith("loss_")))
  );
}

/**
 * Asserts that `runDir` was stopped early with a complete checkpoint and nothing half-written (`out`:
 * what the process printed, for the message).
 */
async function assertStoppedCleanly(runDir: string, out: string): Promise<void> {
  const ckDir = join(runDir, "checkpoints");
  const names: string[] = [];
  try {
    for await (const e of Deno.readDir(ckDir)) names.push(e.name);
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  const tmp = names.filter((n) => n.startsWith(".tmp-"));
  assert.deepEqual(tmp, [], `half-written checkpoints: ${names}\n${out}`);
  const latest = await latestCheckpoint(runDir);
  assert.ok(latest, `no complete checkpoint in ${ckDir}: [${names}]\n${out}`);
  const step = Number(/step-(\d+)$/.exec(latest)![1]);
  assert.ok(step >= 1 && step < 2 * STEPS, `stopped early: ${latest}`);
}

/** Resumes `runDir` to the end and asserts it ends where the uninterrupted run does. */
async function assertResumesToReference(runDir: string): Promise<void> {
  const r = await runCli("train.ts", ["--resume", runDir]);
  assert.equal(r.code, 0, r.out);
  await assertEndsAsReference(runDir);
}

/** Asserts that `runDir`'s final checkpoint and losses are the uninterrupted run's, byte for byte. */
async function assertEndsAsReference(runDir: string): Promise<void> {
  const ref = await reference();
  const final = (await latestCheckpoint(runDir))!;
  assert.match(final, new RegExp(`step-0*${2 * STEPS}$`));
  for (const f of ["model.safetensors", "optimizer.safetensors"]) {
    const [got, want] = await Promise.all([
      Deno.readFile(join(final, f)),
      Deno.readFile(join(ref.checkpoint, f)),
    ]);
    assert.ok(got.length === want.length && got.every((b, i) => b === want[i]), `${f} differs`);
  }
  assert.deepEqual(await losses(runDir), ref.losses);
}

Deno.test("the trainer is deterministic: two runs end with the same bytes and losses", async () => {
  const ref = await reference();
  const out = join(ref.dir, "again");
  const r = await runCli("train.ts", [ref.file, "--out", out]);
  assert.equal(r.code, 0, r.out);
  await assertEndsAsReference(out);
});

Deno.test("Ctrl-C to `deno task train`'s process group: the step finishes, a checkpoint is saved, exit 130", async () => {
  const { dir, file } = await reference();
  const runDir = join(dir, "sigint");
  // A checkpoint every step: the process waits on file writes often, when a second delivery of the
  // signal (the task runner's forward) reaches it apart from the first.
  const child = new Child("setsid", [
    Deno.execPath(),
    "task",
    "train",
    file,
    "--out",
    runDir,
    "--set",
    "train.saveEvery=1",
  ]);
  await child.waitFor(/step 1\/\d+/);
  await new Promise((r) => setTimeout(r, 300));
  Deno.kill(-child.process.pid, "SIGINT"); // the whole group, as a terminal's Ctrl-C
  const code = await child.code();
  await assertStoppedCleanly(runDir, child.out);
  assert.equal(code, 130, child.out);
  assert.match(child.out, /stopping after this step and saving; press Ctrl-C again to quit without saving/);
  assert.match(child.out, /stopped; continue with --resume/);
  await assertResumesToReference(runDir);
});

Deno.test("SIGTERM: the step finishes, a checkpoint is saved, exit 143; resumed, it ends as if never stopped", async () => {
  const { dir, file } = await reference();
  const runDir = join(dir, "sigterm");
  const child = new Child(Deno.execPath(), ["run", "-A", join(ROOT, "cli/train.ts"), file, "--out", runDir]);
  await child.waitFor(/step 1\/\d+/);
  child.process.kill("SIGTERM");
  const code = await child.code();
  await assertStoppedCleanly(runDir, child.out);
  assert.equal(code, 143, child.out);
  assert.match(child.out, /SIGTERM: stopping after this step and saving/);
  await assertResumesToReference(runDir);
});
