/**
 * Helpers for the models' tests: a tiny ASVR config (random-init SigLIP ViT and LLaMA, an rq
 * tokenizer on the VLM's own encoder, an asvr_depth head), random codebooks written to a temp
 * safetensors file, and batches of image + caption rows. Sizes: ViT 28 px / patch 7 -> N = 16
 * patches of width 32; LLM width 32, 2 layers, vocab 64; D = 2 depths of K = 8 codes.
 * @module
 */

import { join } from "node:path";
import { randn, rng } from "../core/random.ts";
import { Codebooks } from "../tokenizers/codebooks.ts";
import type { AsvrBatch } from "./asvr_model.ts";
import type { AsvrConfigInput } from "./config.ts";

/** Sizes of the tiny model. */
export const TINY = {
  /** Image side in pixels. */
  image: 28,
  /** Patch side. */
  patch: 7,
  /** Patches per image N. */
  patches: 16,
  /** ViT width (and codebook width Dc). */
  vitWidth: 32,
  /** LLM width C. */
  llmWidth: 32,
  /** Vocabulary V. */
  vocab: 64,
  /** RQ depths D. */
  depths: 2,
  /** Codes per codebook K. */
  codes: 8,
} as const;

/** The tiny config, its codebooks at `codebooks`; `over` replaces whole top-level slots. */
export function tinyConfig(codebooks: string, over: Partial<AsvrConfigInput> = {}): AsvrConfigInput {
  return {
    encoder: {
      kind: "siglip",
      config: {
        hiddenSize: TINY.vitWidth,
        intermediateSize: 64,
        numLayers: 2,
        numHeads: 2,
        imageSize: TINY.image,
        patchSize: TINY.patch,
      },
    },
    projector: { kind: "mlp2x_gelu" },
    llm: {
      kind: "llama",
      config: {
        vocabSize: TINY.vocab,
        hiddenSize: TINY.llmWidth,
        intermediateSize: 64,
        numLayers: 2,
        numHeads: 2,
        numKvHeads: 1,
      },
    },
    visualTokenizers: [{
      kind: "rq",
      name: "semantic",
      layer: 1,
      depths: TINY.depths,
      codebookSize: TINY.codes,
      codebooks,
    }],
    head: {
      kind: "asvr_depth",
      width: 32,
      layers: 1,
      heads: 2,
      codebookDim: TINY.vitWidth,
      checkpointLayers: false,
    },
    ...over,
  };
}

/**
 * Writes random codebooks f32 [D, K, Dc] (depth d at scale 1 / 2^d, like residuals that shrink) to
 * `dir/name`, fit (as the metadata says) on encoder layer `layer`; returns the path.
 */
export async function writeTinyCodebooks(
  dir: string,
  name = "semantic.safetensors",
  opts: { depths?: number; codes?: number; dim?: number; layer?: number; seed?: number } = {},
): Promise<string> {
  const D = opts.depths ?? TINY.depths, K = opts.codes ?? TINY.codes, Dc = opts.dim ?? TINY.vitWidth;
  const data = new Float32Array(D * K * Dc);
  for (let d = 0; d < D; d++) data.set(randn(K * Dc, (opts.seed ?? 7) * 31 + d, 1 / 2 ** d), d * K * Dc);
  const path = join(dir, name);
  await Codebooks.create(data, {
    depths: D,
    codebookSize: K,
    dim: Dc,
    shared: false,
    layer: opts.layer ?? 1,
    encoder: "tiny",
  }).save(path);
  return path;
}

/**
 * A batch of B rows of T = 1 + N + `text` tokens: `<s>`, the N image positions (id -200), then
 * caption tokens, all supervised. `hasImage[b]` false: a text-only row (no image positions, its
 * tokens start right after `<s>`, the tail padded with -100 labels).
 */
export function tinyBatch(hasImage: boolean[], seed = 1, text = 6): AsvrBatch {
  const B = hasImage.length, N = TINY.patches, T = 1 + N + text, S = TINY.image;
  const r = rng(seed);
  const inputIds = new Int32Array(B * T), labels = new Int32Array(B * T).fill(-100);
  const imagePositions: number[][] = [];
  for (let b = 0; b < B; b++) {
    inputIds[b * T] = 1;
    const start = hasImage[b] ? 1 + N : 1; // first caption position
    imagePositions.push(hasImage[b] ? Array.from({ length: N }, (_, i) => 1 + i) : []);
    for (let t = 1; t < start; t++) inputIds[b * T + t] = -200;
    for (let t = start; t < T; t++) {
      const id = 2 + Math.floor(r() * (TINY.vocab - 2));
      inputIds[b * T + t] = id;
      if (t < start + text) labels[b * T + t] = id;
    }
  }
  return {
    inputIds,
    labels,
    imagePositions,
    pixels: randn(B * 3 * S * S, seed + 100),
    hasImage: [...hasImage],
  };
}
