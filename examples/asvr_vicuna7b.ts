/**
 * The paper's recipe, as the reference implementation trains it (its `scripts/pretrain.sh`,
 * `scripts/finetune.sh`, `zero2.json` and `train.py`, built on LLaVA-1.5's code): SigLIP-SO400M
 * (features of layer -2) -> 2-layer GELU MLP -> Vicuna-7B v1.5, with the RQ depth-transformer head
 * reconstructing the semantic tokenizer's 8 x 16384 codes of every image patch (1:1 with the text loss),
 * trained in two stages:
 *
 * 1. pretrain on LLaVA-Pretrain 558K captions (`plain` template), projector + head, lr 1e-3, global
 *    batch 256;
 * 2. instruction-tune on the LLaVA 665K mix (`vicuna_v1`), LLM + projector + head, lr 2e-5, global
 *    batch 128, starting from all of stage 1's weights (the head's included);
 *
 * both with AdamW, a cosine schedule, 3% warmup, no weight decay, no gradient clipping, one epoch, max
 * length 2048 and gradient checkpointing. Where this file does otherwise, a comment beside the field says
 * what the reference does, what this does and why.
 *
 *     deno task train examples/asvr_vicuna7b.ts --plan     # sizes and memory, no weights needed
 *     ASVR_MODELS=/models ASVR_DATA=/data deno task train examples/asvr_vicuna7b.ts
 *
 * Paths come from environment variables (or `--set llm.path=...` etc.):
 * - `ASVR_MODELS` (default `models`): holds `vicuna-7b-v1.5/` (lmsys/vicuna-7b-v1.5),
 *   `siglip-so400m-patch14-384/` (google/siglip-so400m-patch14-384) and
 *   `semantic_rq_8x16384.safetensors` (codebooks: `deno task tokenizer fit`, or your own);
 * - `ASVR_DATA` (default `data`): holds `LLaVA-Pretrain/blip_laion_cc_sbu_558k.json` with its
 *   `images.zip` unzipped into `LLaVA-Pretrain/images/`, and `llava_v1_5_mix665k.json` with `images/`
 *   (coco, gqa, ocr_vqa, textvqa, vg), as LLaVA-1.5 lays them out.
 *
 * The text tokenizer is read from the LLM folder's `tokenizer.json`. The reference encodes with the slow
 * SentencePiece tokenizer and Vicuna's `legacy: false`; the `vicuna_v1` and `plain` templates give its
 * ids whatever the layout of that file (data/templates.ts), so the round separator `</s>USER` is
 * 2, 11889 as in the reference.
 *
 * Ablations are overrides (README, "Training"): `--set head.kind=none` (the LLaVA baseline),
 * `--set loss.alignment=next` (the paper's equation), `--set loss.textOnlyRows=mask` (text-only rows out of
 * the visual loss), `--set train.stages[0].visualWeight=0` (visual loss only in stage 2),
 * `--set encoder.input=quantized` (discrete input).
 * @module
 */

import { defineRun } from "../trainers/config.ts";

const models = Deno.env.get("ASVR_MODELS") ?? "models";
const data = Deno.env.get("ASVR_DATA") ?? "data";

/** RQ depths and codebook size of the semantic tokenizer (its targets: 729 x 8 codes per image). */
const DEPTHS = 8;
const CODEBOOK_SIZE = 16384;

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
    depths: DEPTHS,
    codebookSize: CODEBOOK_SIZE,
    codebooks: `${models}/semantic_rq_8x16384.safetensors`,
  }],
  // The reference's RQ depth transformer (ASVR_SPEC.md section 3): the hidden states at the image
  // positions through Linear 4096 -> 2048, GELU, Linear 2048 -> 2048; teacher forcing with the running
  // sums of the frozen codebook vectors (1152 wide) mapped to 2048; 3 causal layers over the 8 depth slots
  // (width 2048, 16 heads of 128, an FFN of 4096 per depth slot); one 2048 -> 16384 classifier per depth.
  // ~737 M parameters, randomly initialized. These are the defaults too; written out, they are the recipe.
  head: {
    kind: "asvr_depth",
    target: "semantic",
    width: 2048,
    layers: 3,
    heads: 16,
    codebookDim: 1152,
    depths: DEPTHS,
    codebookSizes: new Array<number>(DEPTHS).fill(CODEBOOK_SIZE),
  },
  loss: {
    textWeight: 1,
    visualWeight: 1,
    // The hidden state at image patch i predicts the codes of patch i: the reference code's alignment.
    // The paper's equation reads as next-token prediction (patch i + 1 from position i): "next".
    alignment: "same",
    // The reference feeds a text-only row (the 665K mix has ~40K) a blank image and trains the head on
    // it too: zero hidden states at the image positions against the codes of the blank image. "mask" leaves
    // such rows out of the visual loss: the cleaner choice, kept as an ablation.
    textOnlyRows: "train",
  },
  data: {
    maxLength: 2048,
    // A multi-day run does not stop on one bad row (a missing image, a row whose image cannot fit):
    // it is left out, counted by kind in the stage summary and metrics.jsonl, and the first ones are
    // named. Past 1% of a stage's rows the stage stops: then the data, not a row, is at fault.
    // `--set data.onError=error` stops at the first bad row instead.
    onError: "skip",
    maxSkipShare: 0.01,
    // The 665K mix's image folders (coco, gqa, ...) are often links into a shared dataset store.
    followSymlinks: true,
    // The reference's finetune.sh sets `group_by_modality_length False`, so its batches mix lengths
    // (and image and text-only rows); LLaVA-1.5's own finetune.sh sets it True. `data.groupByLength`
    // applies to both stages (it groups by length only, not by modality): `--set data.groupByLength=true`
    // gives LLaVA-1.5's faster, less padded batches; the captions of stage 1 are of similar length anyway.
    groupByLength: false,
  },
  train: {
    // The reference trains in bf16 (bf16 weights and activations, f32 master weights and optimizer
    // state in DeepSpeed ZeRO-2, no loss scaling: bf16 has f32's exponent range). WGSL has no bf16 type or
    // arithmetic, only f16 (`shader-f16`), so this stores weights and activations in f16 (matmuls
    // accumulate in f32), keeps f32 master weights and AdamW state, and scales the loss dynamically,
    // since f16's narrower range lets small gradients underflow and large ones overflow. A step whose
    // gradients overflow is skipped (no update) and the scale halved; each skipped step is marked in
    // metrics.jsonl (`skipped: true`) and counted in each stage's summary line ("N skipped").
    dtype: "f16",
    lossScale: "dynamic",
    // zero2.json sets no `gradient_clipping` (DeepSpeed's default 0: none).
    maxGradNorm: 0, // no clipping, as in the reference; the norm is still measured, logged and checked for inf/NaN
    checkpointLayers: true,
    // The reference saves every fifth of a stage and keeps one checkpoint; this saves every 1000 steps
    // (stage 1 has ~2180, stage 2 ~5200) and keeps two.
    saveEvery: 1000,
    // The reference evaluates nothing while training. To evaluate, set `train.evalData` to a questions
    // file and `train.evalImageRoot` to the folder its image paths start from.
    stages: [
      {
        name: "pretrain",
        data: `${data}/LLaVA-Pretrain/blip_laion_cc_sbu_558k.json`,
        imageRoot: `${data}/LLaVA-Pretrain/images`,
        template: "plain",
        imageMode: "resize",
        trainable: { projector: true, head: true, llm: false },
        // The reference: 4 rows per GPU x 8 accumulation steps x 8 GPUs = 256; here one GPU accumulates
        // 64 micro-batches of 4 for the same global batch.
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
        // The reference: 2 rows per GPU x 8 accumulation steps x 8 GPUs = 128; here 32 micro-batches of 4.
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
