import assert from "node:assert/strict";
import { join } from "node:path";
import { gpuTest } from "../core/testing.ts";
import { applyRunOverrides } from "../trainers/config.ts";
import { train } from "../trainers/trainer.ts";
import { buildTinyParts, TINY_STUDY, tinyRun, type TinyStudy } from "../examples/asvr_tiny.ts";

gpuTest(
  "the embedded default, shortened: builds and caches its parts, trains both stages, evaluates every category",
  async (e) => {
    const root = await Deno.makeTempDir();
    try {
      const study: TinyStudy = {
        ...TINY_STUDY,
        shapes: { ...TINY_STUDY.shapes, stage1Images: 64, stage2Images: 64, evalImages: 6 },
        encoder: { ...TINY_STUDY.encoder, pretrain: { steps: 30, batch: 16, lr: 3e-3, seed: 0 } },
        llm: { pretrain: { steps: 30, batch: 16, lr: 3e-3, seed: 0 } },
        codebooks: { layer: 2, depths: 2, codebookSize: 16, iters: 2, seed: 0 },
      };
      const lines: string[] = [];
      const parts = await buildTinyParts(join(root, "cache"), study, (l) => lines.push(l), e);
      for (
        const what of [
          "building the data",
          "tokenizer",
          "pretraining the vision encoder",
          "pretraining the LLM",
          "fitting RQ codebooks",
        ]
      ) {
        assert.ok(lines.some((l) => l.includes(what)), `${what} in:\n${lines.join("\n")}`);
      }
      // Built once: a second call finds every part.
      const again: string[] = [];
      assert.deepEqual(await buildTinyParts(join(root, "cache"), study, (l) => again.push(l), e), parts);
      assert.deepEqual(again.filter((l) => /building|training|pretraining|fitting/.test(l)), []);

      const cfg = applyRunOverrides(tinyRun(parts, study), [
        "train.stages[0].maxSteps=4",
        "train.stages[1].maxSteps=4",
        "train.stages[0].batchSize=8",
        "train.stages[1].batchSize=8",
        "train.evalMaxNewTokens=2",
      ], "test");
      const r = await train(e, cfg, { runDir: join(root, "run"), print: () => {} });
      const s1 = r.history.filter((h) => h.stage === "pretrain"),
        s2 = r.history.filter((h) => h.stage === "finetune");
      assert.equal(s1.length, 4);
      assert.equal(s2.length, 4);
      assert.ok(
        s1[3].losses.loss_total < s1[0].losses.loss_total,
        `stage 1: ${s1.map((h) => h.losses.loss_total)}`,
      );
      assert.ok(
        s2[3].losses.loss_visual_semantic < s2[0].losses.loss_visual_semantic,
        `stage 2 visual: ${s2.map((h) => h.losses.loss_visual_semantic)}`,
      );
      const cats = r.eval!.summary.byCategory;
      assert.deepEqual(Object.keys(cats).sort(), ["color", "count", "existence", "position", "shape"]);
      for (const [c, g] of Object.entries(cats)) assert.ok(g.n > 0 && Number.isFinite(g.accuracy), c);
      assert.ok(r.eval!.summary.byType.yesno?.pope, "POPE figures");
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  },
);
