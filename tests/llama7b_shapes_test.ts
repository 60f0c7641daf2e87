/**
 * The 7B recipe's LLM at its real layer shapes (C 4096, MLP 11008, 32 heads, the 32000 vocabulary)
 * but 2 layers, in the ASVR model: a stage-1 step (LLM frozen, gradient through it to the projector)
 * and a LoRA stage-2 step, in f16 on a device whose bindings hold 16 MiB (every weight split), against
 * the same steps in f32 at the adapter's own limits.
 */
import assert from "node:assert/strict";
import { backward, zeroGrad } from "../core/autograd.ts";
import { Engine } from "../core/engine.ts";
import { AdamW } from "../core/kernels/adamw/adamw.ts";
import type { Tensor } from "../core/tensor.ts";
import { gpuTest } from "../core/testing.ts";
import { LORA_TARGETS } from "../backbones/lora.ts";
import { AsvrModel } from "../models/asvr_model.ts";
import { tinyBatch, tinyConfig, writeTinyCodebooks } from "../models/testing.ts";
import { modelConfig, parseRunConfig } from "../trainers/config.ts";

/** Forced limits of the f16 run: 16 MiB per binding, 32 MiB per buffer. */
const SMALL = { maxStorageBufferBindingSize: 16 << 20, maxBufferSize: 32 << 20 };

const LLM = {
  kind: "llama" as const,
  config: {
    vocabSize: 32000,
    hiddenSize: 4096,
    intermediateSize: 11008,
    numLayers: 2,
    numHeads: 32,
    numKvHeads: 32,
  },
  lora: { rank: 8, targets: [...LORA_TARGETS] },
};

/** What one run measured: losses before and after each stage's update, and gradients. */
interface Run {
  loss1: number;
  after1: number;
  projectorGrad: Float32Array;
  loss2: number;
  after2: number;
  loraBGrad: Float32Array;
  pieces: { embed: number; q: number; up: number };
}

/** The gradients of `params` (a split one's pieces in order), concatenated. */
async function grads(params: Tensor[]): Promise<Float32Array> {
  const parts: Float32Array[] = [];
  for (const p of params) for (const q of p.pieces) parts.push((await q.grad!.read()) as Float32Array);
  const out = new Float32Array(parts.reduce((s, a) => s + a.length, 0));
  let at = 0;
  for (const a of parts) {
    out.set(a, at);
    at += a.length;
  }
  return out;
}

/** Stage 1 then LoRA stage 2, one AdamW step each, on one image row. */
async function run(e: Engine, books: string, dtype: "f32" | "f16"): Promise<Run> {
  const stages = [{ data: "a.json", trainable: { projector: true, head: true, llm: false } }];
  const cfg = parseRunConfig({ ...tinyConfig(books, { llm: LLM }), train: { stages } }, "llama7b_shapes");
  const m = await AsvrModel.build(e, modelConfig(cfg), { dtype, checkpointLayers: true, llmInit: "gpu" });
  const batch = tinyBatch([true], 3, 4); // 1 + 16 image positions + 4 text tokens
  const loss = () => e.tidy(() => e.noGrad(() => m.forward(batch).total.read())).then((l) => l[0]);
  const step = async (named: (n: string) => boolean) => {
    const params = m.trainableParams();
    const opt = new AdamW(params, { lr: 1e-4 });
    const l = await e.tidy(() => {
      const r = m.forward(batch);
      backward(r.total);
      return r.total.read();
    });
    const g = await grads([...m.params()].filter(([n, t]) => named(n) && t.requiresGrad).map(([, t]) => t));
    opt.step();
    zeroGrad(params);
    opt.dispose();
    return { loss: l[0], grad: g, after: await loss() };
  };
  try {
    const p = m.llm.params();
    const pieces = {
      embed: p.get("model.embed_tokens.weight")!.pieces.length,
      q: p.get("model.layers.0.self_attn.q_proj.weight")!.pieces.length,
      up: p.get("model.layers.1.mlp.up_proj.weight")!.pieces.length,
    };
    m.setTrainable({ projector: true, head: true, llm: false });
    const s1 = await step((n) => n.startsWith("model.mm_projector."));
    m.setTrainable({ projector: true, head: true, llm: true }); // LoRA: the adapters, not the LLM's weights
    const s2 = await step((n) => n.includes(".lora_B."));
    return {
      loss1: s1.loss,
      after1: s1.after,
      projectorGrad: s1.grad,
      loss2: s2.loss,
      after2: s2.after,
      loraBGrad: s2.grad,
      pieces,
    };
  } finally {
    await m.dispose();
  }
}

/** Cosine of the angle between two vectors, and the ratio of their norms. */
function compare(a: Float32Array, b: Float32Array): { cos: number; norms: number } {
  let ab = 0, aa = 0, bb = 0;
  for (let i = 0; i < a.length; i++) {
    ab += a[i] * b[i];
    aa += a[i] * a[i];
    bb += b[i] * b[i];
  }
  return { cos: ab / Math.sqrt(aa * bb), norms: Math.sqrt(aa / bb) };
}

gpuTest(
  "7B layer shapes, 2 layers: stage-1 and LoRA stage-2 steps under 16 MiB bindings follow f32",
  async (e) => {
    const dir = await Deno.makeTempDir();
    try {
      const books = await writeTinyCodebooks(dir);
      const ref = await run(e, books, "f32"); // the adapter's own limits (lavapipe: 128 MiB per binding)
      e.pool.trim(); // hand the 2.7 GB of weights back, not keep them pooled for the worker's next tests
      const small = await Engine.create({ limitOverrides: SMALL });
      const got: Record<string, Run> = {};
      try {
        got.f32 = await run(small, books, "f32");
        if (small.hasF16) got.f16 = await run(small, books, "f16");
      } finally {
        await small.close();
      }
      const rel = (a: number, b: number) => Math.abs(a - b) / Math.abs(b);
      // f32 split finer is the same computation (summation order aside); f16 rounds weights and activations.
      const tolerance = {
        f32: { loss: 1e-4, after: 1e-4, cos: 0.9999, norms: 1e-3 },
        f16: { loss: 1e-2, after: 5e-2, cos: 0.99, norms: 5e-2 },
      };
      for (const [dtype, r] of Object.entries(got)) {
        const tol = tolerance[dtype as "f32" | "f16"];
        // Under 16 MiB (sized at f32): [32000, 4096] in 32 pieces, [4096, 4096] in 4, [11008, 4096] in 11.
        assert.deepEqual(r.pieces, { embed: 32, q: 4, up: 11 });
        const losses = [
          r.loss1 / ref.loss1,
          r.after1 / ref.after1,
          r.loss2 / ref.loss2,
          r.after2 / ref.after2,
        ];
        const p = compare(r.projectorGrad, ref.projectorGrad), b = compare(r.loraBGrad, ref.loraBGrad);
        const report = `${dtype} / f32: losses ${losses.map((x) => x.toFixed(5))}; gradients ${
          JSON.stringify({ p, b })
        }`;
        console.log(report);
        assert.ok(rel(r.loss1, ref.loss1) < tol.loss && rel(r.loss2, ref.loss2) < tol.loss, report);
        assert.ok(rel(r.after1, ref.after1) < tol.after && rel(r.after2, ref.after2) < tol.after, report);
        assert.ok(r.after1 < r.loss1 && r.after2 < r.loss2, `the updates lower the loss: ${report}`);
        for (const c of [p, b]) assert.ok(c.cos > tol.cos && Math.abs(c.norms - 1) < tol.norms, report);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);
