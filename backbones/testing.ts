/**
 * Helpers for the decoder's tests: a tiny config of each architecture and a decoder with random weights
 * of a chosen scale (the default 0.02 init gives nearly flat logits).
 * @module
 */

import type { Engine } from "../core/engine.ts";
import { randn } from "../core/random.ts";
import type { LlmArch, LlmConfig } from "./config.ts";
import { Decoder, type DecoderDType } from "./decoder.ts";

/**
 * A tiny config of each architecture: width 32, 2 layers, 4 query heads over 2 KV heads; Mistral with a
 * sliding window of 3 (shorter than the tests' sequences), Qwen2 tied with q/k/v biases.
 */
export function tinyDecoderConfig(arch: LlmArch): LlmConfig {
  return {
    arch,
    vocabSize: 32,
    hiddenSize: 32,
    intermediateSize: 48,
    numLayers: 2,
    numHeads: 4,
    numKvHeads: 2,
    headDim: 8,
    rmsNormEps: 1e-6,
    ropeTheta: 10000,
    tieWordEmbeddings: arch === "qwen2",
    slidingWindow: arch === "mistral" ? 3 : null,
    attentionBias: arch === "qwen2",
    maxPositions: 64,
  };
}

/** A frozen decoder whose every parameter is N(0, std^2) (non-trivial logits, non-zero biases). */
export function randomDecoder(
  e: Engine,
  cfg: LlmConfig,
  seed: number,
  std: number,
  dtype: DecoderDType = "f32",
): Decoder {
  const model = Decoder.create(e, cfg, { seed, dtype });
  let s = seed * 1000;
  for (const p of model.params().values()) e.write(p, randn(p.size, ++s, std));
  model.freeze();
  return model;
}
