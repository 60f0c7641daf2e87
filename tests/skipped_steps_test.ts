/**
 * Steps skipped for a non-finite loss are reported: counted per stage in the result and on the stage's
 * summary line, and too many in a row stop the run naming the config key that allows more.
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { gpuTest } from "../core/testing.ts";
import { parseRunConfig } from "../trainers/config.ts";
import { train } from "../trainers/trainer.ts";
import { writeTinyRun } from "./tiny_run.ts";

gpuTest(
  "train: skipped steps are counted on the stage's line; too many in a row name train.maxNonFinite",
  async (e) => {
    const dir = await Deno.makeTempDir();
    try {
      // An absurd learning rate: the first update blows the weights up, so later losses are not finite.
      const input = await writeTinyRun(dir, { steps: 4, stage: { lr: 1e30, warmupRatio: 0 } });
      const cfg = parseRunConfig(input, "tiny");
      cfg.train.evalData = null;
      cfg.train.stages = cfg.train.stages.slice(0, 1);
      const lines: string[] = [];
      const r = await train(e, cfg, { runDir: join(dir, "a"), print: (l) => lines.push(l) });
      const skipped = r.history.filter((h) => h.skipped).length;
      assert.ok(skipped >= 1 && skipped < 4, `skips: ${r.history.map((h) => h.skipped)}`);
      assert.deepEqual(r.skippedSteps, { pretrain: skipped });
      const summary = new RegExp(`^stage 1/1 pretrain: 4 steps, ${skipped} skipped \\(non-finite loss`);
      assert.ok(lines.some((l) => summary.test(l)), lines.join("\n"));

      cfg.train.maxNonFinite = 1;
      await assert.rejects(
        () => train(e, cfg, { runDir: join(dir, "b"), print: () => {} }),
        /allow more skips with train\.maxNonFinite \(now 1\)/,
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);
