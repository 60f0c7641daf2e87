/**
 * Data-parallel training end to end, as a user runs it: `mpirun -np 2 deno run -A cli/train.ts run.ts` on
 * the tiny two-stage run against one process with the same global batch (2 ranks x 1 micro-batch of 1 row
 * vs 1 process x 2 micro-batches), in f32 and f16, with the optimizer state replicated and sharded; a rank
 * killed mid-run ends the job, and `--resume` (on 2 ranks, or on 1 from a sharded checkpoint) continues to
 * the uninterrupted run's losses and weights; SIGTERM to one rank stops all after a step with a
 * checkpoint; an error on one rank ends the job with that rank's message.
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { SafetensorsFile } from "../io/safetensors.ts";
import { loadCheckpoint } from "../trainers/checkpoint.ts";
import { readMetrics } from "../trainers/metrics.ts";
import type { KernelChoices } from "../trainers/kernel_choices.ts";
import { findLaunchers, launchCommand, type Launcher } from "../dist/testdata/launchers.ts";
import { writeTinyRunFile } from "./tiny_run.ts";
import { runCli } from "./run_cli.ts";

const CLI = fileURLToPath(new URL("../cli/train.ts", import.meta.url));
const launcher: Launcher | undefined =
  findLaunchers().sort((a) => a.implementation === "openmpi" ? -1 : 1)[0];

/** The CLI on 2 ranks; resolves to its exit code and output. */
async function trainOnTwo(args: string[]): Promise<{ code: number; out: string }> {
  const child = spawnOnTwo(args);
  const r = await child.output();
  const dec = new TextDecoder();
  return { code: r.code, out: dec.decode(r.stdout) + dec.decode(r.stderr) };
}

function spawnOnTwo(args: string[]): Deno.ChildProcess {
  const env = Deno.env.toObject();
  delete env.ASVR_MPI_LIB; // the launcher's own library
  return launchCommand(launcher!, 2, [Deno.execPath(), "run", "-A", CLI, ...args], env, {
    timeoutMs: 600_000,
  })
    .spawn();
}

/** Each step's losses from a run's metrics.jsonl, by step. */
async function losses(runDir: string): Promise<Map<number, Record<string, number>>> {
  const out = new Map<number, Record<string, number>>();
  for (const r of await readMetrics(runDir)) {
    if (typeof r.loss_total !== "number") continue;
    out.set(r.step, Object.fromEntries(Object.entries(r).filter(([k]) => k.startsWith("loss_"))) as never);
  }
  return out;
}

function assertClose(got: number, want: number, rtol: number, what: string): void {
  assert.ok(Math.abs(got - want) <= rtol * Math.max(1, Math.abs(want)), `${what}: ${got} vs ${want}`);
}

/** The same steps with the same losses (relative tolerance `rtol`). */
async function assertSameLosses(runDir: string, refDir: string, rtol: number): Promise<void> {
  const [got, want] = [await losses(runDir), await losses(refDir)];
  assert.deepEqual([...got.keys()], [...want.keys()], `${runDir}: steps`);
  for (const [step, w] of want) {
    for (const [k, v] of Object.entries(w)) {
      assertClose(got.get(step)![k], v, rtol, `${runDir} step ${step} ${k}`);
    }
  }
}

/** The weights of two runs' last checkpoints agree within `atol`. */
async function assertSameWeights(runDir: string, refDir: string, atol: number): Promise<void> {
  const open = async (d: string) =>
    SafetensorsFile.open(join((await loadCheckpoint(d)).dir, "model.safetensors"));
  const [a, b] = [await open(runDir), await open(refDir)];
  try {
    assert.deepEqual(a.names().sort(), b.names().sort());
    for (const name of a.names()) {
      const [x, y] = [await a.read(name), await b.read(name)];
      let worst = 0;
      for (let i = 0; i < x.length; i++) worst = Math.max(worst, Math.abs(x[i] - y[i]));
      assert.ok(worst <= atol, `${runDir}: ${name} differs by ${worst} from ${refDir}`);
    }
  } finally {
    a.close();
    b.close();
  }
}

/** Pids of this job's rank `rank` (its launcher's rank variable), found through /proc. */
async function rankPids(rank: number, marker: string): Promise<number[]> {
  const pids: number[] = [];
  for await (const e of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      const cmd = await Deno.readTextFile(`/proc/${e.name}/cmdline`);
      if (!cmd.includes(marker) || !cmd.includes("train.ts")) continue;
      const env = (await Deno.readTextFile(`/proc/${e.name}/environ`)).split("\0");
      if (env.includes(`OMPI_COMM_WORLD_RANK=${rank}`) || env.includes(`PMI_RANK=${rank}`)) {
        pids.push(Number(e.name));
      }
    } catch {
      // the process ended meanwhile
    }
  }
  return pids;
}

Deno.test({
  name: `data parallel: 2 ranks under ${
    launcher?.command ?? "mpirun"
  } train as 1 process with the same global batch`,
  ignore: !launcher || Deno.build.os !== "linux",
  sanitizeResources: false,
  sanitizeOps: false,
}, async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "asvr-dp-" });
  try {
    // 3 steps per stage of 2 micro-batches of 1 row; a checkpoint after every step, all kept.
    const { file } = await writeTinyRunFile(dir, { steps: 3, stage: { batchSize: 1, gradAccum: 2 } });
    const keep = ["--no-scan", "--set", "train.saveEvery=1", "--set", "train.keepLast=10"];
    const single = join(dir, "single");
    const one = await runCli("train.ts", [file, "--out", single, ...keep]);
    assert.equal(one.code, 0, one.out);

    await t.step("replicated optimizer: the same losses and weights", async () => {
      const run = join(dir, "dp");
      const r = await trainOnTwo([file, "--out", run, ...keep]);
      assert.equal(r.code, 0, r.out);
      assert.match(r.out, /data parallel: 2 ranks/);
      assert.match(r.out, /rank 1 of 2: adapter: /);
      assert.match(r.out, /1 micro-batch\(es\) on each of 2 ranks/);
      assert.equal((r.out.match(/^done in /gm) ?? []).length, 1, "rank 0 alone reports");
      await assertSameLosses(run, single, 1e-5);
      await assertSameWeights(run, single, 1e-5);
    });

    const sharded = join(dir, "sharded");
    await t.step("sharded optimizer: the same, each rank writing its shard", async () => {
      const r = await trainOnTwo([
        file,
        "--out",
        sharded,
        ...keep,
        "--set",
        "train.distributed.shardOptimizer=true",
      ]);
      assert.equal(r.code, 0, r.out);
      await assertSameLosses(sharded, single, 1e-5);
      await assertSameWeights(sharded, single, 1e-5);
      const ck = await loadCheckpoint(sharded);
      const sums = await Deno.readTextFile(join(ck.dir, "checksums.sha256"));
      assert.match(sums, /optimizer-0-of-2\.safetensors/);
      assert.match(sums, /optimizer-1-of-2\.safetensors/);
    });

    await t.step("a sharded checkpoint resumes on 1 process, to the same end", async () => {
      const run = join(dir, "from-sharded");
      const from = join(sharded, "checkpoints", "step-00000004");
      const r = await runCli("train.ts", ["--resume", from, "--out", run, "--no-scan"]);
      assert.equal(r.code, 0, r.out);
      assert.match(r.out, /resumed from .*step-00000004: stage 2, step 4/);
      await assertSameWeights(run, single, 1e-5);
    });

    await t.step("f16 with dynamic loss scaling: the ranks agree with 1 process", async () => {
      const f16 = ["--set", "train.dtype=f16"];
      const ref = join(dir, "single-f16"), run = join(dir, "dp-f16");
      const a = await runCli("train.ts", [file, "--out", ref, ...keep, ...f16]);
      assert.equal(a.code, 0, a.out);
      const b = await trainOnTwo([file, "--out", run, ...keep, ...f16]);
      assert.equal(b.code, 0, b.out);
      await assertSameLosses(run, ref, 2e-3);
      await assertSameWeights(run, ref, 2e-3);
    });

    await t.step("a killed rank ends the job; --resume continues to the same end", async () => {
      const run = join(dir, "killed");
      const { r, seconds } = await signalRankOne([file, "--out", run, ...keep], run, "SIGKILL");
      assert.notEqual(r.code, 0, "the job fails");
      assert.ok(seconds < 30, `the job ended ${seconds.toFixed(1)} s after the kill`);
      const ck = await loadCheckpoint(run); // the last checkpoint is whole
      assert.ok(ck.step >= 1 && ck.step < 6, `checkpoint at step ${ck.step}`);
      const resumed = await trainOnTwo(["--resume", run, "--no-scan"]);
      assert.equal(resumed.code, 0, resumed.out);
      await assertSameLosses(run, single, 1e-5);
      await assertSameWeights(run, single, 1e-5);
    });

    await t.step(
      "SIGTERM to one rank: all stop after the step, save and exit 143 (measuring kernels)",
      async () => {
        const run = join(dir, "stopped");
        const { r } = await signalRankOne([file, "--out", run, ...keep, "--tune"], run, "SIGTERM");
        const out = new TextDecoder().decode(r.stdout) + new TextDecoder().decode(r.stderr);
        assert.equal(r.code, 143, out);
        assert.match(out, /stopped; continue with --resume/);
        const ck = await loadCheckpoint(run);
        const steps = [...(await losses(run)).keys()];
        assert.equal(ck.step, steps.at(-1), "the checkpoint is the last step taken");
        assert.ok(ck.step < 6, `stopped before the end, at step ${ck.step}`);
        // Rank 0 alone measured (each shape once) and the checkpoint keeps its choices.
        const measured = [...out.matchAll(/attention measured at .* T(\d+) /g)].map((m) => Number(m[1]));
        assert.ok(measured.length > 0 && new Set(measured).size === measured.length, out);
        const kept = ck.trainerState.kernelChoices as KernelChoices;
        assert.deepEqual(kept.attention.map((c) => c.size).sort(), measured.sort());
        assert.ok(kept.matmul.length > 0, out);
      },
    );

    await t.step("an error on one rank ends the job, naming the rank and the error", async () => {
      const other = join(dir, "bad");
      const bad = await writeTinyRunFile(other, { steps: 3, stage: { batchSize: 1, gradAccum: 2 } });
      // In file order, rank 1's first micro-batch is row 1 (img1.png), rank 0's row 0.
      await Deno.remove(join(other, "images", "img1.png"));
      const sets = ["--set", "data.shuffle=false", "--set", "data.onError=error"];
      const t0 = performance.now();
      const r = await trainOnTwo([bad.file, "--out", join(other, "run"), "--no-scan", ...sets]);
      assert.equal(r.code, 1, r.out);
      assert.match(r.out, /train: rank 1 of 2: .*img1\.png/);
      assert.ok(performance.now() - t0 < 60_000, "the job ends promptly");
    });
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});

/**
 * Trains `args` on 2 ranks into `run`, sends `signal` to rank 1 once the first checkpoint is written,
 * and waits for the job: its output and the seconds from the signal to its end.
 */
async function signalRankOne(
  args: string[],
  run: string,
  signal: Deno.Signal,
): Promise<{ r: Deno.CommandOutput; seconds: number }> {
  const child = spawnOnTwo(args);
  await waitFor(join(run, "checkpoints", "step-00000001", "checksums.sha256"));
  const pids = await rankPids(1, run);
  assert.equal(pids.length, 1, `rank 1's process: ${pids}`);
  const at = performance.now();
  Deno.kill(pids[0], signal);
  const r = await child.output();
  return { r, seconds: (performance.now() - at) / 1000 };
}

/** Waits (up to 2 minutes) for `path` to exist. */
async function waitFor(path: string): Promise<void> {
  const deadline = Date.now() + 120_000;
  while (Date.now() < deadline) {
    try {
      await Deno.stat(path);
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  throw new Error(`${path} did not appear in 2 minutes`);
}
