import assert from "node:assert/strict";
import { join } from "node:path";
import { gpuTest } from "../core/testing.ts";
import { SafetensorsFile } from "../io/safetensors.ts";
import { modelConfig, parseRunConfig } from "../trainers/config.ts";
import { AsvrModel } from "../models/asvr_model.ts";
import { train } from "../trainers/trainer.ts";
import { readMetrics } from "../trainers/metrics.ts";
import { writeTinyRun } from "./tiny_run.ts";
import { runCli } from "./run_cli.ts";

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
      // Stage 2's rows keep their answers (supervised tokens in every micro-batch).
      for (const h of full.history.slice(3)) {
        assert.ok(h.losses.loss_text > 1, `step ${h.step}: ${h.losses.loss_text}`);
      }
      // Stage 1 trains projector + head: the text loss starts near ln 32000 and falls.
      assert.ok(full.history[2].losses.loss_total < full.history[0].losses.loss_total, "stage 1 loss falls");

      const part = await train(e, cfg, { runDir: join(dir, "resumed"), print: quiet, stopAfter: 2 });
      assert.equal(part.stopped, true);
      assert.equal(part.history.length, 2);
      const lines: string[] = [];
      const rest = await train(e, cfg, {
        runDir: join(dir, "resumed"),
        print: (l) => lines.push(l),
        resume: true,
      });
      assert.ok(!lines.some((l) => /config differs/.test(l)), "the same config resumes silently");
      // Restoring the checkpoint reports its progress, ending at the total.
      const restored = /^loading checkpoint .*checkpoints\/step-\d+: .* of .* \((\d+)\/\1 tensors\)$/;
      assert.ok(lines.some((l) => restored.test(l)), lines.join("\n"));
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
      // Resuming with a changed config says what changed and keeps the run's config beside the new one.
      const before = await Deno.readTextFile(join(dir, "resumed", "config.json"));
      const changed = structuredClone(cfg);
      changed.train.stages[1].lr = 1e-5;
      const notes: string[] = [];
      await train(e, changed, { runDir: join(dir, "resumed"), print: (l) => notes.push(l), resume: true });
      assert.ok(
        notes.some((l) =>
          /^resume: the config differs from the run's \(kept as config\.1\.json\): train\.stages\[1\]\.lr: [\d.e-]+ -> 0\.00001$/
            .test(l)
        ),
        notes.join("\n"),
      );
      assert.equal(await Deno.readTextFile(join(dir, "resumed", "config.1.json")), before);
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
      for (const f of ["loss.svg", "lr.svg", "config.json", "eval.json", "tokenizer/tokenizer.json"]) {
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

gpuTest(
  "train: bad rows stop the run naming file, row and id, or with onError skip are skipped and counted",
  async (e) => {
    const dir = await Deno.makeTempDir();
    try {
      const input = await writeTinyRun(dir, { steps: 1 });
      const captions = join(dir, "images", "captions.json");
      const rows = JSON.parse(await Deno.readTextFile(captions));
      const caption = (id: string, image: string) => ({
        id,
        image,
        conversations: [{ from: "human", value: "<image>" }, { from: "gpt", value: "a square" }],
      });
      rows.push(caption("gone", "missing.png"), caption("broken", "broken.png"), {
        id: "empty",
        conversations: [],
      });
      await Deno.writeTextFile(join(dir, "images", "broken.png"), "<html>not an image</html>");
      await Deno.writeTextFile(captions, JSON.stringify(rows));
      const cfg = parseRunConfig(input, "tiny");
      cfg.train.evalData = null;
      cfg.train.stages[0].maxSteps = null; // one epoch: every row is loaded
      cfg.data.shuffle = false;
      await assert.rejects(
        () => train(e, cfg, { runDir: join(dir, "strict"), print: () => {} }),
        /captions\.json row 10 \(id "empty"\): .*conversations.*data\.onError: "skip"/,
      );
      cfg.train.stages[0].data = captions;
      rows.pop();
      await Deno.writeTextFile(captions, JSON.stringify(rows));
      await assert.rejects(
        () => train(e, cfg, { runDir: join(dir, "strict2"), print: () => {} }),
        /captions\.json row 8 \(id "gone"\): .*missing\.png: image file not found/,
      );
      rows.push({ id: "empty", conversations: [] });
      await Deno.writeTextFile(captions, JSON.stringify(rows));
      cfg.data.onError = "skip";
      // 3 of 11 rows bad: over the default limit (1%), the stage stops and sums the bad rows up.
      await assert.rejects(
        () => train(e, cfg, { runDir: join(dir, "limit"), print: () => {} }),
        /captions\.json: 1 of 11 rows left out \(9\.1%\), over data\.maxSkipShare 1% \(1 malformed\); first: .*row 10: conversations/,
      );
      cfg.data.maxSkipShare = 0.3;
      const lines: string[] = [];
      const r = await train(e, cfg, { runDir: join(dir, "lenient"), print: (l) => lines.push(l) });
      assert.equal(r.skippedRows.pretrain, 3);
      assert.ok(
        lines.some((l) =>
          /pretrain: 3 of 11 rows skipped \(27%, limit 30%\): 2 image, 1 malformed; first: /.test(l)
        ),
        lines.join("\n"),
      );
      assert.equal(r.history.filter((h) => h.stage === "pretrain").length, 5); // 10 usable rows / 2
      // Every row bad: the run stops instead of saving an untrained model.
      const allBad = rows.map((row: { id: string }) => caption(row.id, "missing.png"));
      await Deno.writeTextFile(captions, JSON.stringify(allBad));
      cfg.data.maxSkipShare = 1;
      await assert.rejects(
        () => train(e, cfg, { runDir: join(dir, "all_bad"), print: () => {} }),
        /captions\.json: no usable rows: every row of epoch 1 was left out \(10 of 11 rows skipped .*: 10 image;/,
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

gpuTest(
  "train: f16 with dynamic loss scaling skips overflowing steps, backs off, then trains like f32",
  async (e) => {
    if (!e.hasF16) return;
    const dir = await Deno.makeTempDir();
    try {
      const input = await writeTinyRun(dir, { steps: 6 });
      const cfg = parseRunConfig(input, "tiny");
      cfg.train.evalData = null;
      cfg.train.stages = cfg.train.stages.slice(0, 1);
      const f32 = await train(e, cfg, { runDir: join(dir, "f32"), print: () => {} });
      const f16 = await train(e, { ...cfg, train: { ...cfg.train, dtype: "f16" } }, {
        runDir: join(dir, "f16"),
        print: () => {},
      });
      // The first forward sees the same weights (rounded to f16): the same loss within f16's precision.
      const [a, b] = [f16.history[0].losses.loss_total, f32.history[0].losses.loss_total];
      assert.ok(Math.abs(a - b) < 0.01 * b, `step 1: f16 ${a} vs f32 ${b}`);
      // The initial scale 2^16 overflows f16 gradients: those steps are skipped (no update) until the
      // scale is small enough; then every step updates and the loss is finite.
      const skipped = f16.history.map((h) => h.skipped);
      const firstUpdate = skipped.indexOf(false);
      assert.ok(firstUpdate >= 0 && firstUpdate <= 4, `skips: ${skipped}`);
      assert.ok(skipped.slice(firstUpdate).every((s) => !s), `no skip after the scale settled: ${skipped}`);
      for (const h of f16.history) assert.ok(Number.isFinite(h.losses.loss_total));
      assert.ok(f16.history.at(-1)!.losses.loss_total < a, "the loss falls once steps update");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

gpuTest(
  "train with LoRA: the adapters train in the LLM's place, its own weights stay; a resumed run matches",
  async (e) => {
    const dir = await Deno.makeTempDir();
    try {
      const input = await writeTinyRun(dir, { steps: 2 });
      const lora = { rank: 2, targets: ["q_proj", "v_proj", "down_proj"] };
      const cfg = parseRunConfig({ ...input, llm: { ...input.llm, lora } }, "tiny");
      const quiet = () => {};
      const lines: string[] = [];
      const full = await train(e, cfg, { runDir: join(dir, "full"), print: (l) => lines.push(l) });
      await train(e, cfg, { runDir: join(dir, "resumed"), print: quiet, stopAfter: 3 });
      const rest = await train(e, cfg, { runDir: join(dir, "resumed"), print: quiet, resume: true });
      assert.deepEqual(rest.history.map((h) => h.losses), full.history.slice(3).map((h) => h.losses));

      const init = await AsvrModel.build(e, modelConfig(cfg), { seed: cfg.train.seed });
      const ck = await SafetensorsFile.open(join(full.checkpoint!, "model.safetensors"));
      try {
        for (
          const name of ["model.layers.0.self_attn.q_proj.weight", "model.layers.1.mlp.down_proj.weight"]
        ) {
          assert.deepEqual(await ck.read(name), await init.params().get(name)!.read(), `${name} stays`);
        }
        const b = "base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight";
        assert.ok((await ck.read(b)).some((v) => v !== 0), `${b} trained (it starts at zero)`);
        assert.ok(
          !ck.has("base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight"),
          "k_proj not adapted",
        );
        // Stage 2 trains projector + head + adapters, not the LLM's own weights (1 M of embeddings alone).
        init.setTrainable(cfg.train.stages[1].trainable);
        const names = [...init.params()].filter(([, t]) => t.requiresGrad).map(([n]) => n);
        assert.ok(
          names.some((n) => n.includes("lora_A")) && !names.some((n) => n.startsWith("model.layers.")),
        );
        const count = init.trainableParams().reduce((n, t) => n + t.size, 0);
        const stage2 = lines.find((l) => l.startsWith("stage 2/2"))!;
        assert.match(stage2, new RegExp(`\\(${(count / 1e6).toFixed(2)} M parameters\\)`));
      } finally {
        ck.close();
        await init.dispose();
      }

      // deno task export: one folder in BF16, the adapters merged into the LLM, with the run's tokenizer.
      const hf = join(dir, "hf");
      const { code, out: text } = await runCli("export.ts", [join(dir, "full"), "--out", hf]);
      assert.equal(code, 0, text);
      assert.match(text, /merging LoRA \(rank 2 on q_proj, v_proj, down_proj\) into the LLM/);
      assert.match(
        text,
        /wrote .*hf in .* s: .* M parameters as F32, .*config\.json, model\.safetensors, tokenizer\.json/,
      );
      const [exported, saved] = await Promise.all([
        SafetensorsFile.open(join(hf, "model.safetensors")),
        SafetensorsFile.open(join(full.checkpoint!, "model.safetensors")),
      ]);
      try {
        assert.ok(!exported.names().some((n) => n.includes("lora_")), "adapters merged, not stored");
        const q = "model.layers.0.self_attn.q_proj.weight"; // the checkpoint holds it unadapted
        const [merged, base] = [await exported.read(q), await saved.read(q)];
        assert.ok(merged.some((v, i) => Math.abs(v - base[i]) > 1e-7), `${q} holds the trained adapter`);
      } finally {
        exported.close();
        saved.close();
      }

      // At f16 (f16 pairs, f32 masters, loss scaling): stage 2 alone trains the adapters too.
      if (e.hasF16) {
        const long = parseRunConfig({
          ...(await writeTinyRun(join(dir, "f16"), { steps: 6 })),
          llm: { ...input.llm, lora },
        }, "tiny");
        long.train.evalData = null;
        long.train.stages = long.train.stages.slice(1);
        const r = await train(e, { ...long, train: { ...long.train, dtype: "f16" } }, {
          runDir: join(dir, "f16run"),
          print: quiet,
        });
        assert.ok(r.history.some((h) => !h.skipped), `some step updates: ${r.history.map((h) => h.skipped)}`);
        for (const h of r.history) assert.ok(Number.isFinite(h.losses.loss_total));
        const f16ck = await SafetensorsFile.open(join(r.checkpoint!, "model.safetensors"));
        const b = "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight";
        assert.equal(f16ck.info(b).dtype, "F16");
        assert.ok((await f16ck.read(b)).some((v) => v !== 0), `${b} trained at f16`);
        f16ck.close();
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);
