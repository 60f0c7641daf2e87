/**
 * The tiny study's visual tokenizers: residual k-means codebooks fitted on the GPU, "semantic" on the
 * pretrained encoder's features at a late layer, "pixel" on raw patch pixels (the appearance tokenizer),
 * both from the same preprocessed images the model sees, saved as codebooks safetensors.
 * @module
 */

import type { Engine } from "../../core/engine.ts";
import { VisionEncoder } from "../../encoders/vit.ts";
import { patchify } from "../../encoders/patch_embed.ts";
import { Codebooks } from "../../tokenizers/codebooks.ts";
import { type FitProgress, fitResidualKMeans } from "../../tokenizers/fit_codebooks.ts";

/** What to fit. */
export interface TinyCodebooksOptions {
  /** The encoder's hidden_states index whose features the semantic codebooks quantize. */
  layer: number;
  /** RQ depths D. */
  depths: number;
  /** Codes K per depth. */
  codebookSize: number;
  /** Lloyd iterations per depth. */
  iters: number;
  /** Seed of the sampling and k-means++. */
  seed: number;
  /** The encoder's identity, recorded in the semantic codebooks (e.g. its cache hash). */
  encoderId: string;
  /** Progress (which tokenizer, the fit's progress). */
  onProgress?: (name: "semantic" | "pixel", p: FitProgress) => void;
}

/**
 * Fits and saves `<semanticPath>` (encoder layer `layer`) and `<pixelPath>` (patch pixels) from
 * preprocessed images f32 [n, 3, S, S], 32 images per forward.
 */
export async function fitTinyCodebooks(
  e: Engine,
  encoderDir: string,
  pixels: Float32Array,
  paths: { semantic: string; pixel: string },
  opts: TinyCodebooksOptions,
): Promise<void> {
  const enc = await VisionEncoder.load(e, encoderDir);
  const S = enc.cfg.imageSize, p = enc.cfg.patchSize, N = enc.numPatches, C = enc.cfg.hiddenSize;
  const n = pixels.length / (3 * S * S);
  if (!Number.isInteger(n) || n === 0) throw new Error(`fitTinyCodebooks: pixels must be [n, 3, ${S}, ${S}]`);
  const semantic = new Float32Array(n * N * C), pixel = new Float32Array(n * N * 3 * p * p);
  for (let i = 0; i < n; i += 32) {
    const b = Math.min(32, n - i);
    const x = e.tensor(pixels.subarray(i * 3 * S * S, (i + b) * 3 * S * S), [b, 3, S, S]);
    const [f, q] = e.noGrad(() => e.tidy(() => [enc.forward(x, { layer: opts.layer }), patchify(x, p)]));
    semantic.set(await f.read(), i * N * C);
    pixel.set(await q.read(), i * N * 3 * p * p);
    for (const t of [x, f, q]) t.dispose();
  }
  for (const t of enc.params().values()) t.dispose();
  const fit = async (name: "semantic" | "pixel", rows: Float32Array, Dc: number, path: string) => {
    const data = await fitResidualKMeans(e, rows, {
      depths: opts.depths,
      K: opts.codebookSize,
      Dc,
      iters: opts.iters,
      seed: opts.seed,
      onProgress: (pr) => opts.onProgress?.(name, pr),
    });
    await Codebooks.create(data, {
      depths: opts.depths,
      codebookSize: opts.codebookSize,
      dim: Dc,
      shared: false,
      layer: name === "semantic" ? opts.layer : "pixels",
      encoder: name === "semantic" ? opts.encoderId : "pixels",
    }).save(path);
  };
  await fit("semantic", semantic, C, paths.semantic);
  await fit("pixel", pixel, 3 * p * p, paths.pixel);
}
