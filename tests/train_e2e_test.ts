import assert from "node:assert/strict";
import { join } from "node:path";
import { gpuTest } from "../core/testing.ts";
import { SafetensorsFile } from "../io/safetensors.ts";
import { parseRunConfig } from "../trainers/config.ts";
import { train } from "../trainers/trainer.ts";
import { readMetrics } from "../trainers/metrics.ts";
import { writeTinyRun } from "./tiny_run.ts";

gpuTest(
  "train: both stages on generated data; stopped and resumed, the losses equal the uninterrupted run's",
  async (e) => {
    const dir = await Deno.makeTempDir();
    try {
      const cfg = parseRunConfig(await writeTinyRun(dir, { steps: 3 }), "tiny");
      const quiet = () => {};
      const full = await train(e, cfg, { runDir: join(dir, "full"), print: quiet });
      assert.equal(full.history.length, 6);
      assert.deepEqual(full.history.map((h) => h.stage), [
        "pretrain",
        "pretrain",
        "pretrain",
        "finetune",
        "finetune",
        "finetune",
      ]);
      for (const h of full.history) {
        assert.ok(
          Number.isFinite(h.losses.loss_text) && Number.isFinite(h.losses.loss_visual_semantic),
          JSON.stringify(h),
        );
        assert.equal(h.skipped, false);
      }
      // Stage 1 trains projector + head: the text loss starts near ln 32000 and falls.
      assert.ok(full.history[2].losses.loss_total < full.history[0].losses.loss_total, "stage 1 loss falls");

      const part = await train(e, cfg, { runDir: join(dir, "resumed"), print: quiet, stopAfter: 2 });
      assert.equal(part.stopped, true);
      assert.equal(part.history.length, 2);
      const rest = await train(e, cfg, { runDir: join(dir, "resumed"), print: quiet, resume: true });
      assert.deepEqual(rest.history.map((h) => h.step), [3, 4, 5, 6]);
      for (const [i, h] of rest.history.entries()) {
        const want = full.history[i + 2];
        for (const k of Object.keys(want.losses)) {
          assert.equal(
            h.losses[k],
            want.losses[k],
            `step ${h.step} ${k}: resumed ${h.losses[k]} vs ${want.losses[k]}`,
          );
        }
      }
      // The final evaluation scored every question type.
      for (const r of [full, rest]) {
        const ev = r.eval!;
        assert.equal(ev.answers.length, 16);
        assert.deepEqual(Object.keys(ev.summary.byType).sort(), ["choice", "open", "yesno"]);
        assert.ok(ev.summary.byType.yesno!.pope, "POPE figures for the yes/no questions");
      }
      assert.deepEqual(
        rest.eval!.answers.map((a) => a.prediction),
        full.eval!.answers.map((a) => a.prediction),
      );

      // The log holds each step once, and the curves exist.
      const log = await readMetrics(join(dir, "resumed"));
      assert.deepEqual(log.map((r) => r.step), [1, 2, 3, 4, 5, 6]);
      for (const f of ["loss.svg", "lr.svg", "config.json", "eval.json"]) {
        await Deno.stat(join(dir, "resumed", f));
      }

      // The checkpoint's parameters carry Hugging Face names, readable as plain safetensors.
      const ck = await SafetensorsFile.open(join(rest.checkpoint!, "model.safetensors"));
      const names = ck.names();
      assert.ok(names.includes("model.embed_tokens.weight") && names.includes("lm_head.weight"));
      assert.ok(
        names.some((n) => n.startsWith("model.mm_projector.")) &&
          names.some((n) => n.startsWith("visual_head.")),
      );
      ck.close();
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);
