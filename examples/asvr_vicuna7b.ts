/**
 * The paper's recipe: SigLIP-SO400M (features of layer -2) -> 2-layer GELU MLP -> Vicuna-7B v1.5, with
 * the RQ depth-transformer head reconstructing the semantic tokenizer's 8 x 16384 codes of every image
 * patch (1:1 with the text loss), trained in two stages:
 *
 * 1. pretrain on LLaVA-Pretrain 558K captions (`plain` template), projector + head, lr 1e-3;
 * 2. instruction-tune on the LLaVA 665K mix (`vicuna_v1`), LLM + projector + head, lr 2e-5;
 *
 * both with a cosine schedule, 3% warmup, no weight decay, one epoch, max length 2048, gradient
 * checkpointing. The recipe's global batches (256, then 128) are micro-batches of 4 accumulated.
 *
 *     deno task train examples/asvr_vicuna7b.ts --plan     # sizes and memory, no weights needed
 *     ASVR_MODELS=/models ASVR_DATA=/data deno task train examples/asvr_vicuna7b.ts
 *
 * Paths come from environment variables (or `--set llm.path=...` etc.):
 * - `ASVR_MODELS` (default `models`): holds `vicuna-7b-v1.5/` (lmsys/vicuna-7b-v1.5),
 *   `siglip-so400m-patch14-384/` (google/siglip-so400m-patch14-384) and
 *   `semantic_rq_8x16384.safetensors` (codebooks: `deno task tokenizer fit`, or your own);
 * - `ASVR_DATA` (default `data`): holds `LLaVA-Pretrain/blip_laion_cc_sbu_558k.json` with its images
 *   beside it, and `llava_v1_5_mix665k.json` with `images/` (coco, gqa, ocr_vqa, textvqa, vg).
 * @module
 */

import { defineRun } from "../trainers/config.ts";

const models = Deno.env.get("ASVR_MODELS") ?? "models";
const data = Deno.env.get("ASVR_DATA") ?? "data";

export default defineRun({
  name: "asvr_vicuna7b",
  encoder: { kind: "siglip", path: `${models}/siglip-so400m-patch14-384`, layer: -2 },
  projector: { kind: "mlp2x_gelu" },
  llm: { kind: "llama", path: `${models}/vicuna-7b-v1.5` },
  visualTokenizers: [{
    kind: "rq",
    name: "semantic",
    encoder: "input",
    layer: 26,
    depths: 8,
    codebookSize: 16384,
    codebooks: `${models}/semantic_rq_8x16384.safetensors`,
  }],
  head: { kind: "asvr_depth", target: "semantic" },
  loss: { textWeight: 1, visualWeight: 1 },
  data: { maxLength: 2048, onError: "error" },
  train: {
    dtype: "f16",
    checkpointLayers: true,
    saveEvery: 1000,
    stages: [
      {
        name: "pretrain",
        data: `${data}/LLaVA-Pretrain/blip_laion_cc_sbu_558k.json`,
        template: "plain",
        imageMode: "resize",
        trainable: { projector: true, head: true, llm: false },
        batchSize: 4,
        gradAccum: 64,
        lr: 1e-3,
        warmupRatio: 0.03,
        schedule: "cosine",
        weightDecay: 0,
        epochs: 1,
      },
      {
        name: "finetune",
        data: `${data}/llava_v1_5_mix665k.json`,
        imageRoot: `${data}/images`,
        template: "vicuna_v1",
        imageMode: "pad",
        trainable: { projector: true, head: true, llm: true },
        batchSize: 4,
        gradAccum: 32,
        lr: 2e-5,
        warmupRatio: 0.03,
        schedule: "cosine",
        weightDecay: 0,
        epochs: 1,
      },
    ],
  },
});
