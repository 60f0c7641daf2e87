/**
 * Pretraining of a tiny SigLIP-style vision encoder with a dense objective: a linear classifier on
 * each patch's final features predicts that patch's class (0: background, else what covers it),
 * cross-entropy averaged over patches, AdamW with warmup and cosine decay, clipped gradients. The
 * classifier only teaches the encoder and is discarded; the encoder is what the run returns (save it
 * with `encoder.save(dir)`, an HF folder that `VisionEncoder.load` reads).
 *
 * Shapes: B images per step, 3 x S x S pixels, N patches, C width, K classes.
 * @module
 */

import { z } from "zod";
import { backward, reshape, zeroGrad } from "../../core/autograd.ts";
import type { Engine } from "../../core/engine.ts";
import { AdamW } from "../../core/kernels/adamw/adamw.ts";
import { clipGradNorm } from "../../core/kernels/clip/clip.ts";
import { crossEntropy } from "../../core/kernels/cross_entropy/cross_entropy.ts";
import { matmul } from "../../core/kernels/matmul/matmul.ts";
import { randn } from "../../core/random.ts";
import type { Tensor } from "../../core/tensor.ts";
import type { VisionConfig } from "../../encoders/config.ts";
import { VisionEncoder } from "../../encoders/vit.ts";
import { lrAt } from "../../trainers/schedule.ts";
import { parseOptions, PRETRAIN_WANT, type PretrainOptions, pretrainSchema } from "./pretrain_options.ts";
import { BatchSampler, trainSteps } from "./train_steps.ts";

/** The tiny encoder: 32 px images in 8 px patches (N = 16), width 64, 2 layers of 4 heads. */
export const TINY_VISION_CONFIG: VisionConfig = {
  arch: "siglip",
  hiddenSize: 64,
  intermediateSize: 128,
  numLayers: 2,
  numHeads: 4,
  imageSize: 32,
  patchSize: 8,
  layerNormEps: 1e-6,
  act: "gelu_tanh",
};

/** Images and the class of each of their patches. */
export interface PatchLabelData {
  /** Preprocessed pixels, f32 [numImages, 3, S, S] (S = the config's imageSize). */
  pixels: Float32Array;
  /** The class of each patch, i32 [numImages, N], in [0, numClasses); 0 is background. */
  patchLabels: Int32Array;
  /** The number of classes K. */
  numClasses: number;
}

/** Options of {@linkcode pretrainEncoder}. */
export interface EncoderPretrainOptions extends PretrainOptions {
  /** The encoder to build (e.g. {@linkcode TINY_VISION_CONFIG}). */
  config: VisionConfig;
  /**
   * The last `holdout` images are kept out of training and measure the accuracy (default 0: the
   * accuracy is measured on the training images).
   */
  holdout?: number;
}

/** What {@linkcode pretrainEncoder} returns. */
export interface EncoderPretrainResult {
  /** The trained encoder (its parameters belong to the caller; the classifier is gone). */
  encoder: VisionEncoder;
  /** The loss of every step. */
  losses: number[];
  /** The share of patches whose class the classifier gets right, over the evaluated images. */
  accuracy: number;
  /** The same over the patches that are not background (NaN when there is none). */
  foregroundAccuracy: number;
  /** The share of background patches among the evaluated ones (what always guessing it scores). */
  backgroundShare: number;
}

const encoderSchema = pretrainSchema.extend({ holdout: z.number().int().nonnegative().default(0) });

const WANT: Record<string, string> = {
  ...PRETRAIN_WANT,
  holdout: "an integer >= 0, below the number of images",
};

/** Checks the data against the config; returns the number of images. */
function checkData(data: PatchLabelData, cfg: VisionConfig): number {
  const S = cfg.imageSize, N = Math.floor(S / cfg.patchSize) ** 2, K = data.numClasses;
  const fn = "pretrainEncoder";
  if (!Number.isInteger(K) || K < 2) {
    throw new Error(`${fn}: data.numClasses is ${K}; it must be an integer >= 2`);
  }
  const count = data.patchLabels.length / N;
  if (!Number.isInteger(count) || count < 1) {
    throw new Error(
      `${fn}: data.patchLabels has ${data.patchLabels.length} entries, not a whole number of images of ` +
        `${N} patches (${S} px images, ${cfg.patchSize} px patches); it must be i32 [numImages, ${N}]`,
    );
  }
  if (data.pixels.length !== count * 3 * S * S) {
    throw new Error(
      `${fn}: data.pixels has ${data.pixels.length} values; ${count} images (from patchLabels) need ` +
        `f32 [${count}, 3, ${S}, ${S}] = ${count * 3 * S * S}`,
    );
  }
  const bad = data.patchLabels.findIndex((c) => c < 0 || c >= K);
  if (bad >= 0) {
    throw new Error(
      `${fn}: data.patchLabels of image ${Math.floor(bad / N)}, patch ${bad % N} is ` +
        `${data.patchLabels[bad]}; classes must lie in [0, ${K}) (numClasses ${K})`,
    );
  }
  return count;
}

/** Pixels f32 [B, 3*S*S] and labels i32 [B*N] of the images `idx`. */
function gather(data: PatchLabelData, idx: number[], px: number, N: number) {
  const pixels = new Float32Array(idx.length * px), labels = new Int32Array(idx.length * N);
  idx.forEach((img, b) => {
    pixels.set(data.pixels.subarray(img * px, (img + 1) * px), b * px);
    labels.set(data.patchLabels.subarray(img * N, (img + 1) * N), b * N);
  });
  return { pixels, labels };
}

/**
 * Trains a fresh encoder of `opts.config` on `data` (see the module doc): `opts.steps` steps of
 * `opts.batch` images drawn epoch by epoch in a seeded order, then measures the patch accuracy on
 * the held-out images (or the training images when `holdout` is 0). Waits on the GPU once per
 * `readEvery` steps.
 *
 * ```ts ignore
 * const { encoder, accuracy } = await pretrainEncoder(e, scenes, { config: TINY_VISION_CONFIG });
 * await encoder.save("runs/tiny/encoder");
 * ```
 */
export async function pretrainEncoder(
  e: Engine,
  data: PatchLabelData,
  opts: EncoderPretrainOptions,
): Promise<EncoderPretrainResult> {
  const { config, onStep, ...rest } = opts;
  const o = parseOptions(encoderSchema, rest, "pretrainEncoder", WANT);
  const numImages = checkData(data, config);
  if (o.holdout >= numImages) {
    throw new Error(
      `pretrainEncoder: option holdout is ${o.holdout}; it must be below the number of images (${numImages})`,
    );
  }
  const S = config.imageSize, C = config.hiddenSize, K = data.numClasses;
  const encoder = VisionEncoder.create(e, config, { seed: o.seed });
  const N = encoder.numPatches, px = 3 * S * S;
  const headW = e.param(randn(K * C, o.seed * 7919 + 17, 1 / Math.sqrt(C)), [K, C]); // [K, C]
  const headB = e.param(new Float32Array(K), [K]); // [K]
  const params = [...encoder.params().values(), headW, headB];
  const optim = new AdamW(params, { lr: o.lr, weightDecay: o.weightDecay });
  const schedule = { lr: o.lr, totalSteps: o.steps, warmupRatio: o.warmupRatio, schedule: "cosine" } as const;
  const logits = (pixels: Tensor) => { // [B, N, K]
    const feats = encoder.forward(pixels, { layer: -1 }); // [B, N, C]
    return matmul(feats, headW, { transB: true, bias: headB });
  };
  const train = numImages - o.holdout;
  const sampler = new BatchSampler(train, o.seed);
  try {
    const losses = await trainSteps(e, {
      steps: o.steps,
      readEvery: o.readEvery,
      onStep,
      label: "pretrainEncoder",
    }, (i) => {
      const batch = gather(data, sampler.next(o.batch), px, N);
      return e.tidy(() => {
        const pixels = e.tensor(batch.pixels, [o.batch, 3, S, S]);
        const labels = e.tensor(batch.labels, [o.batch * N], "i32");
        const loss = crossEntropy(reshape(logits(pixels), [o.batch * N, K]), labels);
        backward(loss);
        clipGradNorm(params, o.maxGradNorm);
        optim.step(lrAt(i, schedule));
        zeroGrad(params);
        return loss;
      });
    });
    const first = o.holdout > 0 ? train : 0;
    const evalIdx = Array.from({ length: numImages - first }, (_, j) => first + j);
    let right = 0, fg = 0, fgRight = 0;
    for (let at = 0; at < evalIdx.length; at += 64) {
      const idx = evalIdx.slice(at, at + 64);
      const batch = gather(data, idx, px, N);
      const out = e.noGrad(() => e.tidy(() => logits(e.tensor(batch.pixels, [idx.length, 3, S, S]))));
      const scores = await out.read(); // [B, N, K]
      out.dispose();
      for (let r = 0; r < idx.length * N; r++) {
        let best = 0;
        for (let k = 1; k < K; k++) if (scores[r * K + k] > scores[r * K + best]) best = k;
        const label = batch.labels[r];
        if (best === label) right++;
        if (label !== 0) {
          fg++;
          if (best === label) fgRight++;
        }
      }
    }
    const total = evalIdx.length * N;
    return {
      encoder,
      losses,
      accuracy: right / total,
      foregroundAccuracy: fg > 0 ? fgRight / fg : NaN,
      backgroundShare: (total - fg) / total,
    };
  } catch (err) {
    for (const p of encoder.params().values()) p.dispose();
    throw err;
  } finally {
    optim.dispose();
    headW.dispose();
    headB.dispose();
    for (const p of encoder.params().values()) {
      p.grad?.dispose();
      p.grad = null;
    }
  }
}
