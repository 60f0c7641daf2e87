/**
 * `deno run -A bench/gpu_step.ts <case> [--json] [--steps N] [--small] [--profile] [--attention K] [--packed-f16] [--tune]`:
 * the throughput and peak memory of training steps of LLaMA models with the 7B's layer shapes (width 4096,
 * SwiGLU 11008, 32 heads of 128, vocabulary 32000) on a real GPU, with random weights (no download). Cases:
 *
 * - `1b_full_f32`, `1b_full_f16`: 4 layers (1.07 B parameters), every parameter trained with AdamW
 *   (f16: f16 weights and activations, f32 master weights and moments).
 * - `7b_stage1_f16`: all 32 layers (6.7 B), frozen f16 weights, gradient checkpointing per layer; the
 *   gradient flows through the LLM to its input embeddings, as in stage 1 where only the projector and
 *   the head train.
 * - `7b_lora_f16`: the recipe's stage 2 on one GPU: the same frozen f16 7B with LoRA pairs of rank 128
 *   (alpha 256) on all seven projections of every layer, trained with AdamW (f16 pairs, f32 masters and
 *   moments); the gradient also reaches the input embeddings (the projector trains in stage 2).
 *
 * One step = forward, the trainer's text loss (from the hidden states in row chunks, as
 * models/asvr_model.ts does past 64 MiB of logits), backward (and the optimizer where parameters train)
 * at B=1, T=2048. Prints one record: ms per step (median of `--steps`, after one warm-up step),
 * tokens/s, the buffer pool's peak bytes, and `planned_gib`, what `--plan`'s formulas
 * (trainers/plan.ts) give for the same step. bench/gpu_step_ref.py times the same steps in PyTorch on
 * the same GPU.
 * `--profile` then runs one more step with timestamp queries and adds `profile`, the GPU time per kernel
 * label (the 20 largest, `{label, calls, ms}`) and `profiled_ms`, their total over all labels (the adapter
 * needs `timestamp-query`). `--attention auto|flash|matmul|fused` sets the attention kernels (recorded as
 * `attention`), `--packed-f16` sums f16 products in packed f16 per step (recorded as `packed_f16`).
 * `--tune` measures the kernel choices first, as `deno task train --tune` does (attention at B x T before the
 * warm-up step, the matmul kernels of its products after it), and records their lines as `tuned` and the
 * time they took as `tune_s`. `--small` shrinks the shapes to check the script on a software adapter.
 * @module
 */

import { parseArgs } from "node:util";
import { Engine } from "../core/engine.ts";
import type { KernelTime } from "../core/profiler.ts";
import { type AttentionKernel, setAttentionKernel } from "../core/kernels/attention/attention.ts";
import { recordMatmulShapes, setPackedF16 } from "../core/kernels/matmul/matmul.ts";
import { formatTuning, tuneAttention } from "../core/kernels/attention/attention_tune.ts";
import { formatMatmulTuning, tuneRecordedMatmuls } from "../core/kernels/matmul/matmul_tune.ts";
import { randInt, randn } from "../core/random.ts";
import { backward, zeroGrad } from "../core/autograd.ts";
import { AdamW } from "../core/kernels/adamw/adamw.ts";
import { Decoder } from "../backbones/decoder.ts";
import { LORA_TARGETS, LoraAdapters, parseLoraConfig } from "../backbones/lora.ts";
import type { LlmConfig } from "../backbones/config.ts";
import { nameTable } from "../backbones/names.ts";
import { bytesPerElement } from "../core/dtype.ts";
import { textLoss, textLossFromHidden } from "../losses/text_ce.ts";
import { CHUNK_LOGITS_BYTES } from "../losses/visual_ce.ts";
import { KNOWN_MODELS, llmActivationBytes } from "../trainers/plan.ts";

const { values: args, positionals } = parseArgs({
  args: Deno.args.filter((a) => a !== "--"),
  allowPositionals: true,
  options: {
    json: { type: "boolean", default: false },
    small: { type: "boolean", default: false },
    steps: { type: "string", default: "3" },
    profile: { type: "boolean", default: false },
    attention: { type: "string", default: "auto" },
    "packed-f16": { type: "boolean", default: false },
    tune: { type: "boolean", default: false },
  },
});

/** A LLaMA with Vicuna-7B's layer shapes and `numLayers` layers (or, `small`, a tiny one for checks). */
function llama7bShapes(numLayers: number, small: boolean): LlmConfig {
  const vicuna = KNOWN_MODELS["vicuna-7b-v1.5"].llm!;
  if (!small) return { ...vicuna, numLayers };
  return {
    ...vicuna,
    vocabSize: 512,
    hiddenSize: 128,
    intermediateSize: 344,
    numLayers: 2,
    numHeads: 4,
    numKvHeads: 4,
    headDim: 32,
  };
}

interface StepCase {
  layers: number;
  dtype: "f32" | "f16";
  /**
   * Train every parameter (AdamW), freeze them all and take the gradient of the input ("stage1"), or
   * freeze them and train LoRA pairs on every projection, with the input's gradient too ("lora").
   */
  mode: "full" | "stage1" | "lora";
}

const CASES: Record<string, StepCase> = {
  "1b_full_f32": { layers: 4, dtype: "f32", mode: "full" },
  "1b_full_f16": { layers: 4, dtype: "f16", mode: "full" },
  "7b_stage1_f16": { layers: 32, dtype: "f16", mode: "stage1" },
  "7b_lora_f16": { layers: 32, dtype: "f16", mode: "lora" },
};

const name = positionals[0];
const c = CASES[name];
if (!c) {
  throw new Error(`bench/gpu_step.ts: unknown case ${JSON.stringify(name)}; cases: ${Object.keys(CASES)}`);
}
const cfg = llama7bShapes(c.layers, args.small);
const [B, T] = [1, args.small ? 128 : 2048];
const steps = Number(args.steps);

const e = await Engine.create();
setAttentionKernel(e, args.attention as AttentionKernel);
setPackedF16(e, args["packed-f16"]);
const t0 = performance.now();
const llm = Decoder.create(e, cfg, { seed: 1, dtype: c.dtype, init: "gpu" });
await e.sync();
const buildS = (performance.now() - t0) / 1000;
const nParams = [...llm.params().values()].reduce((s, p) => s + p.size, 0);
const frozenBase = c.mode !== "full";
if (frozenBase) llm.freeze();
const loraCfg = c.mode === "lora"
  ? parseLoraConfig({ rank: 128, alpha: 256, targets: [...LORA_TARGETS] })
  : null;
const lora = loraCfg ? LoraAdapters.create(e, cfg, loraCfg, c.dtype) : null;
if (lora) llm.setLora(lora);
const params = [...(lora ? lora.params() : llm.params()).values()]; // what the optimizer steps
const opt = c.mode === "stage1" ? null : new AdamW(params, { lr: 1e-5, weightDecay: 0 });
const lmHead = llm.params().get(nameTable(cfg.arch).model.head)!;

const ids = e.tensor(randInt(B * T, cfg.vocabSize, 2), [B, T], "i32");
const labels = e.tensor(randInt(B * T, cfg.vocabSize, 3), [B, T], "i32");
const embeds = e.tensor(randn(B * T * cfg.hiddenSize, 4, 0.02), [B, T, cfg.hiddenSize], c.dtype);
embeds.requiresGrad = frozenBase;

let lastLoss = NaN;
async function step(): Promise<number> {
  const s0 = performance.now();
  const loss = e.tidy(() => {
    const x = frozenBase ? embeds : llm.embed(ids);
    const hidden = llm.forward(x, { checkpointLayers: frozenBase });
    const loss = B * T * cfg.vocabSize * 4 > CHUNK_LOGITS_BYTES
      ? textLossFromHidden(hidden, lmHead, labels)
      : textLoss(llm.logits(hidden), labels);
    backward(loss);
    opt?.step();
    if (opt) zeroGrad(params);
    return loss;
  });
  lastLoss = (await loss.read())[0];
  loss.dispose();
  if (embeds.grad) {
    embeds.grad.dispose();
    embeds.grad = null;
  }
  return performance.now() - s0;
}

const tuned: string[] = [];
const tune0 = performance.now();
if (args.tune) {
  const { numHeads: NH, numKvHeads: NKV, headDim: HS } = cfg;
  tuned.push(
    `attention ${formatTuning(await tuneAttention(e, { B, NH, NKV, T, HS }, c.dtype, { causal: true }))}`,
  );
  recordMatmulShapes(e, true);
}
const warm = await step();
if (args.tune) await tuneRecordedMatmuls(e, (t) => tuned.push(formatMatmulTuning(t)));
const tuneS = (performance.now() - tune0 - warm) / 1000;
e.pool.resetPeak();
const times: number[] = [];
for (let i = 0; i < steps; i++) times.push(await step());
times.sort((a, b) => a - b);
const ms = times[times.length >> 1];
// What --plan's formulas give for this step: the weights (with the LoRA pairs), the gradients and AdamW
// state of what trains (f16: with f32 master weights), the decoder's activations.
const bytes = bytesPerElement(c.dtype);
const trained = opt ? params.reduce((s, p) => s + p.size, 0) : 0;
const loraParams = lora ? [...lora.params().values()].reduce((s, p) => s + p.size, 0) : 0;
const planned = (nParams + loraParams) * bytes + trained * (bytes + 8 + (bytes === 2 ? 4 : 0)) +
  llmActivationBytes(cfg, { B, T, bytes, lora: loraCfg, checkpointLayers: frozenBase });
// One more step, timed per kernel.
let profile: KernelTime[] | null = null;
if (args.profile) {
  e.startProfiling();
  await step();
  profile = await e.stopProfiling();
}
const rec = {
  what: "train_step",
  case: name,
  impl: "asvr webgpu",
  adapter: e.info.description,
  layers: cfg.numLayers,
  params: nParams,
  trained_params: trained,
  dtype: c.dtype,
  mode: c.mode,
  attention: args.attention,
  packed_f16: args["packed-f16"],
  ...(args.tune ? { tune_s: tuneS, tuned } : {}),
  batch: [B, T],
  build_s: buildS,
  first_step_ms: warm,
  median_ms: ms,
  tokens_per_s: B * T / (ms / 1000),
  peak_gib: e.pool.peakBytesInUse / 2 ** 30,
  planned_gib: planned / 2 ** 30,
  loss: lastLoss,
  ...(profile
    ? {
      profiled_ms: profile.reduce((s, k) => s + k.ms, 0),
      profile: profile.slice(0, 20).map(({ label, calls, ms }) => ({ label, calls, ms })),
    }
    : {}),
};
console.log(
  args.json
    ? JSON.stringify(rec)
    : Object.entries(rec).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join("  "),
);
