import assert from "node:assert/strict";
import { join } from "node:path";
import type { Engine } from "../core/engine.ts";
import { saveCheckpoint } from "./checkpoint.ts";
import type { RunConfig } from "./config.ts";
import { loadRunModel } from "./run_model.ts";

/** A run folder with checkpoints of steps 1 and 2 (one 1000-value parameter each). */
async function runWithCheckpoints(run: string): Promise<string[]> {
  const dirs: string[] = [];
  for (const step of [1, 2]) {
    dirs.push(
      await saveCheckpoint(run, {
        step,
        params: new Map([["w", { data: new Float32Array(1000).fill(step), shape: [1000] }]]),
        optimizer: { names: [], state: { step: 0, params: [] } },
        trainerState: {},
      }),
    );
  }
  return dirs;
}

Deno.test("loadRunModel refuses a damaged checkpoint before building the model", async () => {
  const run = await Deno.makeTempDir({ prefix: "asvr_run_" });
  try {
    const [older, dir] = await runWithCheckpoints(run);
    const model = join(dir, "model.safetensors");
    const bytes = await Deno.readFile(model);
    for (let i = bytes.length - 1000; i < bytes.length; i++) bytes[i] ^= 0xff;
    await Deno.writeFile(model, bytes);
    // Neither the engine nor the config is touched: the checksum fails first.
    const info = { runDir: run, checkpoint: dir, cfg: {} as RunConfig, tokenizerDir: run };
    await assert.rejects(loadRunModel({} as Engine, info), (err: Error) => {
      assert.match(err.message, /step-00000002\/model\.safetensors: its SHA-256 .* differs/);
      assert.ok(err.message.includes(older), err.message);
      return true;
    });
  } finally {
    await Deno.remove(run, { recursive: true });
  }
});
