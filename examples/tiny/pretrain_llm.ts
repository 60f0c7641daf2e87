/**
 * Pretraining of a tiny LLaMA as a causal language model on token id sequences: each step draws a
 * batch of sequences (epoch by epoch, in a seeded order), right-pads them to the batch's longest
 * with the pad id (labels -100 there), and minimizes Hugging Face's causal LM loss with AdamW, a
 * warmup and cosine decay, and clipped gradients. Every sequence starts at position 0, as the
 * model later sees its prompts. Save the result with `model.save(dir)` (an HF folder that
 * `Decoder.load` reads); the tokenizer files are the caller's to copy beside it.
 *
 * Shapes: B sequences per step, T positions (the batch's longest sequence), V vocabulary.
 * @module
 */

import { z } from "zod";
import { backward, zeroGrad } from "../../core/autograd.ts";
import type { Engine } from "../../core/engine.ts";
import { AdamW } from "../../core/kernels/adamw/adamw.ts";
import { clipGradNorm } from "../../core/kernels/clip/clip.ts";
import { Decoder } from "../../backbones/decoder.ts";
import { IGNORE_INDEX } from "../../core/labels.ts";
import type { LlmConfig } from "../../backbones/config.ts";
import { lrAt } from "../../trainers/schedule.ts";
import { parseOptions, PRETRAIN_WANT, type PretrainOptions, pretrainSchema } from "./pretrain_options.ts";
import { BatchSampler, trainSteps } from "./train_steps.ts";

/**
 * The tiny LLaMA for a vocabulary of `vocabSize` tokens: width 64, 2 layers of 4 heads (head size
 * 16), SwiGLU hidden width 172, untied head, positions up to 512. Its vocabulary is `vocabSize`
 * rounded up to a multiple of {@linkcode VOCAB_MULTIPLE} (the rows past the tokenizer's are never
 * looked up and learn to score low), so that the products with the vocabulary on an axis take the
 * fast matmul on software adapters, which reads 4 elements at a time.
 */
export function tinyLlmConfig(vocabSize: number): LlmConfig {
  return {
    arch: "llama",
    vocabSize: Math.ceil(vocabSize / VOCAB_MULTIPLE) * VOCAB_MULTIPLE,
    hiddenSize: 64,
    intermediateSize: 172,
    numLayers: 2,
    numHeads: 4,
    numKvHeads: 4,
    headDim: 16,
    rmsNormEps: 1e-6,
    ropeTheta: 10000,
    tieWordEmbeddings: false,
    slidingWindow: null,
    attentionBias: false,
    maxPositions: 512,
  };
}

/** What the tiny LLaMA's vocabulary is rounded up to. */
export const VOCAB_MULTIPLE = 64;

/** Options of {@linkcode pretrainLlm}. */
export interface LlmPretrainOptions extends PretrainOptions {
  /** The decoder to build (e.g. `tinyLlmConfig(tokenizer.vocabSize)`). */
  config: LlmConfig;
  /** The id that pads sequences to the batch's length (default 0, LLaVA's pad = unk). */
  padId?: number;
}

/** What {@linkcode pretrainLlm} returns. */
export interface LlmPretrainResult {
  /** The trained decoder (its parameters belong to the caller). */
  model: Decoder;
  /** The loss of every step (mean over the predicted tokens of the batch). */
  losses: number[];
}

const llmSchema = pretrainSchema.extend({ padId: z.number().int().nonnegative().default(0) });

const WANT: Record<string, string> = {
  ...PRETRAIN_WANT,
  padId: "a token id (an integer >= 0) below the vocabulary size",
};

/** Checks every sequence: at least 2 ids (something to predict), each in [0, V), none past maxPositions. */
function checkSequences(sequences: number[][], cfg: LlmConfig): void {
  const fn = "pretrainLlm", V = cfg.vocabSize;
  if (sequences.length === 0) throw new Error(`${fn}: no sequences to train on`);
  sequences.forEach((s, row) => {
    if (s.length < 2 || s.length > cfg.maxPositions) {
      throw new Error(
        `${fn}: sequence ${row} has ${s.length} ids; each needs 2..${cfg.maxPositions} ` +
          `(config maxPositions) ids: drop or cut it`,
      );
    }
    const bad = s.findIndex((id) => !Number.isInteger(id) || id < 0 || id >= V);
    if (bad >= 0) {
      throw new Error(
        `${fn}: sequence ${row}, position ${bad} is ${s[bad]}; ids must be integers in [0, ${V}) ` +
          `(config vocabSize ${V})`,
      );
    }
  });
}

/**
 * Ids and labels of a batch, both i32 [B, T] with T the longest sequence: ids right-padded with
 * `padId`, labels equal to the ids and -100 at the padding.
 */
export function padBatch(
  sequences: number[][],
  padId: number,
): { ids: Int32Array; labels: Int32Array; shape: [number, number] } {
  const B = sequences.length, T = Math.max(...sequences.map((s) => s.length));
  const ids = new Int32Array(B * T).fill(padId), labels = new Int32Array(B * T).fill(IGNORE_INDEX);
  sequences.forEach((s, b) => {
    ids.set(s, b * T);
    labels.set(s, b * T);
  });
  return { ids, labels, shape: [B, T] };
}

/**
 * Trains a fresh decoder of `opts.config` on `sequences` as a causal LM (see the module doc):
 * `opts.steps` steps of `opts.batch` sequences. Waits on the GPU once per `readEvery` steps.
 *
 * ```ts ignore
 * const { model } = await pretrainLlm(e, captions.map((c) => tok.encode(c)), {
 *   config: tinyLlmConfig(tok.vocabSize),
 * });
 * await model.save("runs/tiny/llm");
 * ```
 */
export async function pretrainLlm(
  e: Engine,
  sequences: number[][],
  opts: LlmPretrainOptions,
): Promise<LlmPretrainResult> {
  const { config, onStep, ...rest } = opts;
  const o = parseOptions(llmSchema, rest, "pretrainLlm", WANT);
  if (o.padId >= config.vocabSize) {
    throw new Error(
      `pretrainLlm: option padId is ${o.padId}; it must be ${WANT.padId} (${config.vocabSize})`,
    );
  }
  checkSequences(sequences, config);
  const model = Decoder.create(e, config, { seed: o.seed });
  const params = [...model.params().values()];
  const optim = new AdamW(params, { lr: o.lr, weightDecay: o.weightDecay });
  const schedule = { lr: o.lr, totalSteps: o.steps, warmupRatio: o.warmupRatio, schedule: "cosine" } as const;
  const sampler = new BatchSampler(sequences.length, o.seed);
  try {
    const losses = await trainSteps(e, {
      steps: o.steps,
      readEvery: o.readEvery,
      onStep,
      label: "pretrainLlm",
    }, (i) => {
      const batch = padBatch(sampler.next(o.batch).map((j) => sequences[j]), o.padId);
      return e.tidy(() => {
        const ids = e.tensor(batch.ids, batch.shape, "i32"); // [B, T]
        const labels = e.tensor(batch.labels, batch.shape, "i32"); // [B, T]
        const loss = model.lossFromLabels(model.logits(model.forward(model.embed(ids))), labels);
        backward(loss);
        clipGradNorm(params, o.maxGradNorm);
        optim.step(lrAt(i, schedule));
        zeroGrad(params);
        return loss;
      });
    });
    return { model, losses };
  } catch (err) {
    model.dispose();
    throw err;
  } finally {
    optim.dispose();
    for (const p of params) {
      p.grad?.dispose();
      p.grad = null;
    }
  }
}
