/**
 * Feature rows for fitting RQ codebooks, streamed from images: batches of preprocessed images go
 * through a frozen vision encoder on the GPU (or are cut into patches for a "pixels" tokenizer), and
 * each batch's rows come out as one chunk [b * N, Dc]. `fitResidualKMeans` takes the stream as it is
 * and keeps a seeded sample of the rows, so host memory is bounded by that sample, not by the data
 * set. The rows are those an rq tokenizer quantizes during training (`AsvrModel`):
 * `encoder.forward(pixels, { layer, keepCls: false })`, with `layer` a Hugging Face `hidden_states`
 * index, or `patchify(pixels, patchSize)` for "pixels".
 *
 * ```ts ignore
 * const images = preprocessedImages(paths, imageCfg, { onError: "skip", onSkip: (p, why) => console.warn(why) });
 * const Dc = imageFeatureWidth(encoder.cfg, 26);
 * const features = imageFeatures(e, encoder, images, { layer: 26, batch: 32 });
 * const codebooks = await fitResidualKMeans(e, features, { depths: 8, K: 16384, Dc });
 * ```
 * @module
 */

import type { Engine } from "../core/engine.ts";
import type { Tensor } from "../core/tensor.ts";
import type { OnRowError } from "./llava_json.ts";
import { ImagePrefetcher } from "./prefetch.ts";
import type { ImagePreprocessConfig } from "./preprocess.ts";
import type { VisionConfig } from "../encoders/config.ts";
import { patchify } from "../encoders/patch_embed.ts";
import { VisionEncoder } from "../encoders/vit.ts";

/** Progress of {@linkcode imageFeatures}, reported for each batch of images as its chunk is yielded. */
export interface ImageFeatureProgress {
  /** Images encoded so far. */
  images: number;
  /** Feature rows yielded so far, this batch's included (images x patches). */
  rows: number;
  /** Seconds since the first image was asked for. */
  seconds: number;
}

/** Options of {@linkcode imageFeatures}. */
export interface ImageFeatureOptions {
  /** Which rows: an encoder `hidden_states` index (0: embeddings, i: layer i's output, negative from the end), or "pixels" for raw patch pixels. */
  layer: number | "pixels";
  /** Images per encoder forward, and so per chunk (default 32). */
  batch?: number;
  /** Called for every batch, just before its chunk is yielded. */
  onProgress?: (p: ImageFeatureProgress) => void;
}

/** Options of {@linkcode preprocessedImages}. */
export interface PreprocessedImagesOptions {
  /** An unreadable image: "error" stops with an error naming it, "skip" leaves it out (see `onSkip`). */
  onError: OnRowError;
  /** Called for each image left out with `onError: "skip"`: its path and the reason (which names it). */
  onSkip?: (path: string, reason: string) => void;
  /** Images decoded ahead of the consumer (default 64). */
  lookahead?: number;
  /** Decoding workers (default 1). */
  workers?: number;
}

/**
 * Reads, decodes and preprocesses image files in Web Workers, ahead of the consumer, yielding each
 * image's pixels f32 [3, S, S] in the order of `paths`. A file that cannot be read or decoded stops
 * the stream with an error naming it (`onError: "error"`) or is skipped and reported (`"skip"`).
 */
export async function* preprocessedImages(
  paths: Iterable<string>,
  image: ImagePreprocessConfig,
  opts: PreprocessedImagesOptions,
): AsyncGenerator<Float32Array, void, undefined> {
  const pre = new ImagePrefetcher([], { lookahead: opts.lookahead ?? 64, workers: opts.workers ?? 1 });
  try {
    for (const path of paths) pre.push({ path, cfg: image });
    for await (const r of pre) {
      if (r.ok) {
        yield r.pixels;
        continue;
      }
      if (opts.onError === "error") {
        throw new Error(`${r.error}; fix or remove the image, or set data.onError: "skip"`);
      }
      opts.onSkip?.(r.path, r.error);
    }
  } finally {
    pre.close();
  }
}

/** Width Dc of the feature rows at `layer`: the encoder's hidden size, or 3 * p * p for "pixels". */
export function imageFeatureWidth(cfg: VisionConfig, layer: number | "pixels"): number {
  return layer === "pixels" ? 3 * cfg.patchSize * cfg.patchSize : cfg.hiddenSize;
}

/**
 * Streams preprocessed images (each f32 [3, S, S], S = the encoder's `imageSize`) through the encoder
 * in batches of `batch` and yields each batch's feature rows as one chunk f32 [b * N, Dc] (b =
 * `batch`, fewer in the last one), in image order: the hidden states at `layer` (no CLS row), or
 * with "pixels" the raw patches [b * N, 3 * p * p] (then `encoder` may be a bare `VisionConfig`, no
 * weights needed). Pass the stream to `fitResidualKMeans`. The options are checked when called,
 * before any image is read; a wrongly sized image stops the stream with an error naming it.
 */
export function imageFeatures(
  e: Engine,
  encoder: VisionEncoder | VisionConfig,
  images: AsyncIterable<Float32Array> | Iterable<Float32Array>,
  opts: ImageFeatureOptions,
): AsyncGenerator<Float32Array, void, undefined> {
  const where = "imageFeatures";
  const layer = opts.layer;
  const cfg = encoder instanceof VisionEncoder ? encoder.cfg : encoder;
  if (layer !== "pixels") {
    if (!(encoder instanceof VisionEncoder)) {
      throw new Error(
        `${where}: layer ${layer} needs a loaded VisionEncoder (a bare config only serves "pixels")`,
      );
    }
    const L = cfg.numLayers;
    if (!Number.isInteger(layer) || layer < -(L + 1) || layer > L) {
      throw new Error(
        `${where}: layer ${layer} is outside the encoder's hidden states [0, ${L}] (or -1 .. -${
          L + 1
        } from the end)`,
      );
    }
  }
  const batch = opts.batch ?? 32;
  if (!Number.isInteger(batch) || batch < 1) {
    throw new Error(`${where}: batch must be an integer >= 1, got ${batch}`);
  }
  return encodeBatches(e, encoder, cfg, images, layer, batch, opts.onProgress);
}

async function* encodeBatches(
  e: Engine,
  encoder: VisionEncoder | VisionConfig,
  cfg: VisionConfig,
  images: AsyncIterable<Float32Array> | Iterable<Float32Array>,
  layer: number | "pixels",
  batch: number,
  onProgress: ImageFeatureOptions["onProgress"],
): AsyncGenerator<Float32Array, void, undefined> {
  const S = cfg.imageSize, p = cfg.patchSize;
  const size = 3 * S * S;
  const t0 = performance.now();
  let encoded = 0, rows = 0;

  const pending = new Float32Array(batch * size);
  let filled = 0;
  /** The features of the `filled` pending images [b * N, Dc]; empties the batch. */
  const encode = async (): Promise<Float32Array> => {
    const b = filled;
    const feats: Tensor = e.noGrad(() =>
      e.tidy(() => {
        const x = e.tensor(pending.subarray(0, b * size), [b, 3, S, S]);
        return layer === "pixels"
          ? patchify(x, p) // [b, N, 3*p*p]
          : (encoder as VisionEncoder).forward(x, { layer, keepCls: false }); // [b, N, C]
      })
    );
    let chunk: Float32Array;
    try {
      chunk = await feats.read() as Float32Array; // [b * N, Dc]
    } finally {
      feats.dispose();
    }
    encoded += b;
    rows += chunk.length / imageFeatureWidth(cfg, layer);
    filled = 0;
    onProgress?.({ images: encoded, rows, seconds: (performance.now() - t0) / 1000 });
    return chunk;
  };

  for await (const px of images) {
    if (!(px instanceof Float32Array) || px.length !== size) {
      throw new Error(
        `imageFeatures: image ${encoded + filled} has ${
          (px as { length?: number })?.length
        } values; each image must be preprocessed pixels f32 [3, ${S}, ${S}] (${size} values)`,
      );
    }
    pending.set(px, filled * size);
    if (++filled === batch) yield await encode();
  }
  if (filled > 0) yield await encode();
}
