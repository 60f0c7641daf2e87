import assert from "node:assert/strict";
import { gpuTest } from "../core/testing.ts";
import { backward, zeroGrad } from "../core/autograd.ts";
import { AdamW } from "../core/kernels/adamw/adamw.ts";
import { type AsvrBatch, AsvrModel, PARAM_PREFIXES } from "../models/asvr_model.ts";
import { TINY, tinyConfig, writeTinyCodebooks } from "../models/testing.ts";
import { modelConfig, parseRunConfig } from "./config.ts";
import { formatPlan, formatWorld, LLAVA_LORA, planFits, planRun, planWorld } from "./plan.ts";
import type { LoraTarget } from "../backbones/lora.ts";

gpuTest("planRun: parameter counts equal the built model's, per component and per stage", async (e) => {
  const dir = await Deno.makeTempDir();
  try {
    const books = await writeTinyCodebooks(dir);
    for (
      const head of [{ kind: "asvr_depth" as const }, { kind: "linear" as const, width: 24 }, {
        kind: "none" as const,
      }]
    ) {
      const model = tinyConfig(books);
      const base = model.head as Record<string, unknown>;
      const cfgIn = {
        ...model,
        head: head.kind === "asvr_depth" ? base : head,
        train: {
          stages: [
            { data: "a.json", trainable: { projector: true, head: true, llm: false } },
            { data: "b.json", trainable: { projector: true, head: true, llm: true } },
          ],
        },
      };
      const cfg = parseRunConfig(cfgIn, "test");
      const plan = await planRun(cfg);
      const m = await AsvrModel.build(e, modelConfig(cfg));
      const count = (prefix: string) =>
        [...m.params()].filter(([n]) => n.startsWith(prefix)).reduce((s, [, t]) => s + t.size, 0);
      const got = Object.fromEntries(plan.components.map((c) => [c.name, c.params]));
      const headBuilt = [...m.head.params().values()].reduce((s, t) => s + t.size, 0);
      assert.equal(got.head, headBuilt, `${head.kind} head`);
      assert.equal(got.projector, count(PARAM_PREFIXES.projector), "projector");
      assert.equal(got.encoder, count(PARAM_PREFIXES.encoder), "encoder");
      assert.equal(got.llm, [...m.llm.params().values()].reduce((s, t) => s + t.size, 0), "llm");
      m.setTrainable(cfg.train.stages[1].trainable);
      const trainable = m.trainableParams().reduce((s, t) => s + t.size, 0);
      assert.equal(plan.stages[1].trainable, trainable, "stage 2 trainable");
      const sizes = (a: number[]) => a.toSorted((x, y) => x - y);
      assert.deepEqual(sizes(plan.stages[1].trainableSizes), sizes(m.trainableParams().map((t) => t.size)));
      assert.ok(plan.stages[1].total > plan.stages[0].total, "stage 2 trains more, needs more");
      assert.match(formatPlan(plan), /estimated GPU memory per stage/);
      await m.dispose();
    }
    // With LoRA, stage 2 trains the adapters in the LLM's place.
    const model = tinyConfig(books);
    const lora = { rank: 3, targets: ["q_proj", "o_proj", "up_proj"] };
    const stages = [{ data: "b.json", trainable: { projector: true, head: true, llm: true } }];
    const cfg = parseRunConfig({ ...model, llm: { ...model.llm, lora }, train: { stages } }, "test");
    const plan = await planRun(cfg);
    const m = await AsvrModel.build(e, modelConfig(cfg));
    const adapters = [...m.params()].filter(([n]) => n.includes(".lora_")).reduce(
      (s, [, t]) => s + t.size,
      0,
    );
    assert.equal(plan.components.find((c) => c.name === "lora")?.params, adapters);
    m.setTrainable(cfg.train.stages[0].trainable);
    assert.equal(plan.stages[0].trainable, m.trainableParams().reduce((s, t) => s + t.size, 0));
    assert.deepEqual(
      plan.stages[0].trainableSizes.toSorted((x, y) => x - y),
      m.trainableParams().map((t) => t.size).toSorted((x, y) => x - y),
    );
    await m.dispose();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("planRun: the recipe's sizes without its folders (known checkpoints), and the head's ~737 M", async () => {
  const { default: recipe } = await import("../examples/asvr_vicuna7b.ts");
  const plan = await planRun(parseRunConfig(recipe, "asvr_vicuna7b.ts"));
  const get = (n: string) => plan.components.find((c) => c.name === n)!;
  assert.equal(get("llm").params, 6_738_415_616); // Vicuna-7B / LLaMA-2-7B
  assert.ok(Math.abs(get("head").params - 737e6) < 1e6, `head ${get("head").params}`);
  assert.match(get("llm").source, /lmsys\/vicuna-7b-v1.5/);
  assert.equal(plan.imageTokens, 729);
});

Deno.test("planFits: on 80 GB the recipe's stage 2 needs LoRA, on 141 GB it fits whole; unknown memory says how", async () => {
  const { default: recipe } = await import("../examples/asvr_vicuna7b.ts");
  const cfg = parseRunConfig(recipe, "asvr_vicuna7b.ts");
  const plan = await planRun(cfg);
  const withLora = await planRun(
    parseRunConfig({ ...recipe, llm: { ...recipe.llm, lora: LLAVA_LORA } }, "lora"),
  );
  const G = (b: number) => `${(b / 2 ** 30).toFixed(2)} GiB`;
  const [, pre, fine] = await planFits(cfg, plan, 80e9);
  assert.match(pre, new RegExp(`pretrain +${G(plan.stages[0].total)} fits$`));
  assert.match(
    fine,
    new RegExp(
      `full fine-tuning ${G(plan.stages[1].total)} does not fit; with LoRA .*rank":128.* ${
        G(withLora.stages[1].total)
      } fits$`,
    ),
  );
  const big = await planFits(cfg, plan, 141e9);
  assert.match(big[2], /full fine-tuning 121\.\d\d GiB fits$/);
  const unknown = await planFits(cfg, plan, null);
  assert.match(unknown[0], /--gpu-memory-gb/);
  assert.match(unknown[2], /with LoRA/);
});

/** B rows of T tokens (the plan's length), each with an image at positions 1..N. */
function fullBatch(B: number, T: number, V: number): AsvrBatch {
  const N = TINY.patches;
  const inputIds = new Int32Array(B * T).map((_, i) => (i * 7) % V);
  const labels = inputIds.slice();
  for (let b = 0; b < B; b++) labels.fill(-100, b * T + 1, b * T + 1 + N);
  return {
    inputIds,
    labels,
    imagePositions: Array.from({ length: B }, () => Array.from({ length: N }, (_, i) => 1 + i)),
    pixels: new Float32Array(B * 3 * TINY.image * TINY.image),
    hasImage: new Array(B).fill(true),
  };
}

gpuTest("planRun: a stage's total is within 10% of the measured peak of its training steps", async (e) => {
  const dir = await Deno.makeTempDir();
  try {
    const books = await writeTinyCodebooks(dir);
    // LLaMAs scaled down; the fourth one's text logits (B*T*V*4 = 131 MB) pass 64 MiB and go in chunks;
    // the fifth trains LoRA adapters on six projections in the LLM's place; the last stores f16 (with f32
    // masters and moments).
    // Stage 2 trains the LLM; stage 1 (llm: false) only sends the gradient through it to the projector.
    const cases = [
      { C: 256, I: 688, V: 2000, T: 256, B: 4, llm: true },
      { C: 256, I: 688, V: 2000, T: 256, B: 4, llm: false },
      { C: 128, I: 344, V: 4000, T: 128, B: 8, llm: true },
      { C: 64, I: 172, V: 32000, T: 256, B: 4, llm: true },
      { C: 256, I: 688, V: 2000, T: 256, B: 4, llm: true, lora: true },
      { C: 256, I: 688, V: 2000, T: 256, B: 4, llm: true, f16: true },
    ];
    for (const k of cases) {
      if (k.f16 && !e.hasF16) continue;
      const llm = {
        kind: "llama" as const,
        config: {
          vocabSize: k.V,
          hiddenSize: k.C,
          intermediateSize: k.I,
          numLayers: 2,
          numHeads: 4,
          numKvHeads: 4,
        },
        ...(k.lora
          ? {
            lora: {
              rank: 8,
              targets: ["q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj"] as LoraTarget[],
            },
          }
          : {}),
      };
      const stage = {
        data: "a.json",
        batchSize: k.B,
        trainable: { projector: true, head: true, llm: k.llm },
      };
      const cfg = parseRunConfig(
        {
          ...tinyConfig(books, { llm }),
          data: { maxLength: k.T },
          train: { stages: [stage], dtype: k.f16 ? "f16" : "f32" },
        },
        "test",
      );
      const plan = (await planRun(cfg)).stages[0];
      const before = e.pool.bytesInUse;
      const m = await AsvrModel.build(e, modelConfig(cfg), {
        checkpointLayers: cfg.train.checkpointLayers,
        dtype: cfg.train.dtype,
      });
      m.setTrainable(cfg.train.stages[0].trainable);
      const params = m.trainableParams();
      const opt = new AdamW(params, { lr: 1e-4 });
      const batch = fullBatch(k.B, k.T, k.V);
      for (let i = 0; i < 2; i++) {
        if (i === 1) e.pool.resetPeak(); // the first step has made the optimizer's state
        const loss = e.tidy(() => {
          const r = m.forward(batch);
          backward(r.total);
          opt.step();
          zeroGrad(params);
          return r.total;
        });
        await loss.read();
        loss.dispose();
      }
      const ratio = (e.pool.peakBytesInUse - before) / plan.total;
      assert.ok(Math.abs(ratio - 1) <= 0.1, `${JSON.stringify(k)}: measured / planned = ${ratio.toFixed(3)}`);
      opt.dispose();
      await m.dispose();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("planRun: each stage's trainable tensor sizes sum to its trainable count, with and without LoRA", async () => {
  const { default: recipe } = await import("../examples/asvr_vicuna7b.ts");
  for (const input of [recipe, { ...recipe, llm: { ...recipe.llm, lora: LLAVA_LORA } }]) {
    const plan = await planRun(parseRunConfig(input, "recipe"));
    for (const s of plan.stages) {
      assert.equal(s.trainableSizes.reduce((a, b) => a + b, 0), s.trainable, s.name);
    }
  }
  // LoRA: 32 layers x 7 projections x (A, B), besides the projector's and head's tensors.
  const lora = await planRun(parseRunConfig({ ...recipe, llm: { ...recipe.llm, lora: LLAVA_LORA } }, "lora"));
  const plain = await planRun(parseRunConfig(recipe, "recipe"));
  assert.equal(lora.stages[1].trainableSizes.length - plain.stages[0].trainableSizes.length, 32 * 7 * 2);
});

Deno.test("planWorld: full fine-tuning of the 7B recipe fits 8 x 80 GB with the sharded optimizer, not replicated", async () => {
  const { default: recipe } = await import("../examples/asvr_vicuna7b.ts");
  const cfg = parseRunConfig(recipe, "asvr_vicuna7b.ts");
  const plan = await planRun(cfg);
  const G = (b: number) => `${(b / 2 ** 30).toFixed(2)} GiB`;
  const world = planWorld(cfg, plan, 8);
  const fine = world.stages[1];
  const buckets = 2 * cfg.train.distributed.bucketMiB * 2 ** 20;
  assert.equal(fine.communication, buckets);
  // Replicated: the single-GPU figure (~121 GiB) plus the buckets' staging.
  assert.equal(fine.replicated, plan.stages[1].total + buckets);
  assert.ok(fine.replicated > 80e9 && fine.replicated / 2 ** 30 > 120, G(fine.replicated));
  assert.ok(fine.sharded <= 80e9 && fine.sharded / 2 ** 30 < 50, G(fine.sharded));
  assert.equal(
    fine.sharded,
    fine.weights + fine.gradients + fine.shardedOptimizer + fine.activations + fine.communication,
  );
  const lines = formatWorld(world, 80e9);
  assert.equal(lines[0], "on 8 GPUs (data parallel, per GPU):");
  assert.match(
    lines[2],
    new RegExp(
      `^  finetune +replicated \\(this run\\) ${G(fine.replicated)} does not fit; sharded optimizer ` +
        `\\(train\\.distributed\\.shardOptimizer\\) ${G(fine.sharded)} fits$`,
    ),
  );
  // keepGlobalBatch: 4 x 64 and 4 x 32 rows per step, over 8 GPUs.
  assert.match(lines[3], /^ {2}pretrain +global batch 256 rows per step: 8 micro-batches of 4 rows per GPU$/);
  assert.match(lines[4], /^ {2}finetune +global batch 128 rows per step: 4 micro-batches of 4 rows per GPU$/);
  const unknown = formatWorld(world, null);
  assert.doesNotMatch(unknown.join("\n"), /fits/);
  // The run's own mode is marked.
  const sharded = parseRunConfig(
    { ...recipe, train: { ...recipe.train, distributed: { shardOptimizer: true } } },
    "sharded",
  );
  assert.match(formatWorld(planWorld(sharded, plan, 8), 80e9)[2], /shardOptimizer\) \(this run\)/);
});

Deno.test("planWorld: the sharded optimizer state shrinks as 1/N (within the largest tensor); one GPU is the plan", async () => {
  const { default: recipe } = await import("../examples/asvr_vicuna7b.ts");
  for (const input of [recipe, { ...recipe, llm: { ...recipe.llm, lora: LLAVA_LORA } }]) {
    const cfg = parseRunConfig(input, "recipe");
    const plan = await planRun(cfg);
    const one = planWorld(cfg, plan, 1);
    one.stages.forEach((w, i) => {
      const s = plan.stages[i];
      assert.equal(w.communication, 0);
      assert.equal(w.replicated, s.total, s.name);
      assert.equal(w.sharded, s.total, s.name);
      assert.equal(w.shardedOptimizer, s.optimizer);
      assert.equal(w.microBatches, cfg.train.stages[i].gradAccum);
    });
    for (const N of [2, 4, 8, 16]) {
      planWorld(cfg, plan, N).stages.forEach((w, i) => {
        const s = plan.stages[i];
        const perElement = s.optimizer / s.trainable; // 12: f16 weights keep f32 masters and moments
        assert.equal(perElement, 12);
        const largest = Math.max(...s.trainableSizes) * perElement;
        assert.ok(w.shardedOptimizer >= s.optimizer / N, `${s.name} on ${N}`);
        assert.ok(w.shardedOptimizer <= s.optimizer / N + largest, `${s.name} on ${N}`);
        assert.equal(w.gradients, s.gradients); // gradients stay whole
        assert.equal(w.replicated - w.sharded, s.optimizer - w.shardedOptimizer);
      });
    }
  }
});

Deno.test("planWorld: a gradAccum that does not divide by N is an error naming the fix; keepGlobalBatch false scales the batch", async () => {
  const { default: recipe } = await import("../examples/asvr_vicuna7b.ts");
  const cfg = parseRunConfig(recipe, "asvr_vicuna7b.ts");
  const plan = await planRun(cfg);
  const three = planWorld(cfg, plan, 3);
  const lines = formatWorld(three, 80e9);
  assert.equal(lines.length, 5);
  assert.match(
    lines[3],
    /^ {2}error: pretrain: train\.stages\[0\]\.gradAccum 64 does not divide by 3 GPUs .*set gradAccum to a multiple of 3, or train\.distributed\.keepGlobalBatch false$/,
  );
  assert.match(lines[4], /^ {2}error: finetune: train\.stages\[1\]\.gradAccum 32 /);
  const free = parseRunConfig(
    { ...recipe, train: { ...recipe.train, distributed: { keepGlobalBatch: false } } },
    "free",
  );
  const w = planWorld(free, plan, 3);
  assert.deepEqual(w.stages.map((s) => [s.error, s.globalBatch, s.microBatches]), [
    [null, 4 * 64 * 3, 64],
    [null, 4 * 32 * 3, 32],
  ]);
  assert.match(
    formatWorld(w, null)[3],
    /^ {2}pretrain +global batch 768 rows per step: 64 micro-batches of 4 rows per GPU$/,
  );
  assert.throws(() => planWorld(cfg, plan, 0), RangeError);
});
