/**
 * Image preprocessing for the vision encoders: an RGB image to normalized pixels f32 [3, S, S].
 *
 * Three geometries, as the reference processors do them:
 * - `"resize"`: straight to S x S (SigLIP's processor; the recipe's stage 1);
 * - `"pad"`: LLaVA's `expand2square` (paste the image centered on a square of the `fill` colour,
 *   offset `(side - w) // 2`, `(side - h) // 2`), then resize to S x S (stage 2, fill 127);
 * - `"crop"`: CLIP's processor: resize the shortest side to S (the other to `floor(S * long / short)`),
 *   then crop S x S at `((w - S) // 2, (h - S) // 2)`.
 *
 * The resize is Pillow's `Image.resize` on 8-bit RGB, which the Hugging Face processors call: a
 * separable convolution (horizontal pass, then vertical) whose filter widens by the scale when
 * downscaling (antialiasing), with Pillow's fixed-point weights and u8 rounding between passes, so
 * the u8 result equals Pillow's (checked on random images against Pillow 9.4, bicubic and bilinear,
 * up and down). Then `(x / 255 - mean) / std` per channel, in f64, stored as f32 (within 1e-6 of
 * transformers' f32 arithmetic).
 *
 * ```ts ignore
 * const cfg = parseImagePreprocessConfig({ size: 384, mode: "pad", ...SIGLIP_NORM }, "data.image");
 * const pixels = preprocess(await readImage("images/1.jpg"), cfg); // f32 [3, 384, 384]
 * ```
 * @module
 */

import { z } from "zod";
import type { RgbImage } from "./image.ts";
import { parseSchema } from "../schema/parse.ts";

/** How the image becomes square (see the module doc). */
export type PreprocessMode = "resize" | "pad" | "crop";

/** Every {@linkcode PreprocessMode}. */
export const PREPROCESS_MODES: readonly PreprocessMode[] = ["resize", "pad", "crop"];

/** The resampling filter: Pillow's BICUBIC (a = -0.5, support 2) or BILINEAR (triangle, support 1). */
export type Resample = "bicubic" | "bilinear";

/** The preprocessing of one encoder's input (see {@linkcode parseImagePreprocessConfig}). */
export interface ImagePreprocessConfig {
  /** Output side S in pixels (the encoder's image size). */
  size: number;
  /** How the image becomes square (default "resize"). */
  mode: PreprocessMode;
  /** The pad colour of `"pad"`, [r, g, b] in 0-255 (default [127, 127, 127], LLaVA's for SigLIP). */
  fill: [number, number, number];
  /** Per-channel mean subtracted from x / 255 (default SigLIP's 0.5). */
  mean: [number, number, number];
  /** Per-channel standard deviation (> 0) dividing after the mean (default SigLIP's 0.5). */
  std: [number, number, number];
  /** The resampling filter (default "bicubic", with antialiasing when downscaling). */
  resample: Resample;
}

/** The normalization of a processor: per-channel mean and std. */
export interface ImageNorm {
  /** Per-channel mean. */
  mean: [number, number, number];
  /** Per-channel standard deviation. */
  std: [number, number, number];
}

/** SigLIP's normalization: mean = std = 0.5 per channel (pixels to [-1, 1]). */
export const SIGLIP_NORM: ImageNorm = { mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] };

/** CLIP's (OpenAI) normalization. */
export const CLIP_NORM: ImageNorm = {
  mean: [0.48145466, 0.4578275, 0.40821073],
  std: [0.26862954, 0.26130258, 0.27577711],
};

const rgb255 = z.tuple([
  z.number().int().min(0).max(255),
  z.number().int().min(0).max(255),
  z.number().int().min(0).max(255),
]);
const finite3 = z.tuple([z.number(), z.number(), z.number()]);
const positive3 = z.tuple([z.number().positive(), z.number().positive(), z.number().positive()]);
const RESAMPLES: readonly Resample[] = ["bicubic", "bilinear"];

// `ImagePreprocessConfig` is written out because a published type must be (JSR's no-slow-types: not inferred
// from a schema); the schema is typed by it, so the compiler holds the two together. The rules and defaults
// live here.
const imagePreprocessSchema: z.ZodType<ImagePreprocessConfig> = z.strictObject({
  size: z.number().int().positive(),
  mode: z.enum(PREPROCESS_MODES).default("resize"),
  fill: rgb255.default([127, 127, 127]),
  mean: finite3.default([0.5, 0.5, 0.5]),
  std: positive3.default([0.5, 0.5, 0.5]),
  resample: z.enum(RESAMPLES).default("bicubic"),
});

/**
 * Validates a preprocessing config given as data and fills its defaults. `path` names where it sits
 * in the whole config; errors name each bad field under it (e.g. `data.image.fill[1]`), the value
 * found and what is allowed (see `parseSchema`).
 */
export function parseImagePreprocessConfig(value: unknown, path: string): ImagePreprocessConfig {
  return parseSchema(imagePreprocessSchema, value, path);
}

// ------------------------------------------------------------------ geometry

/**
 * LLaVA's `expand2square`: the image pasted on a square canvas of side max(W, H) filled with
 * `fill`, at x = (side - W) // 2, y = (side - H) // 2. A square image is returned as is.
 */
export function expandToSquare(img: RgbImage, fill: readonly [number, number, number]): RgbImage {
  const { width: W, height: H } = img;
  if (W === H) return img;
  const side = Math.max(W, H);
  const data = new Uint8Array(side * side * 3); // [side, side, 3]
  for (let i = 0; i < side * side; i++) {
    data[i * 3] = fill[0];
    data[i * 3 + 1] = fill[1];
    data[i * 3 + 2] = fill[2];
  }
  const x0 = (side - W) >> 1, y0 = (side - H) >> 1;
  for (let y = 0; y < H; y++) {
    data.set(img.data.subarray(y * W * 3, (y + 1) * W * 3), ((y0 + y) * side + x0) * 3);
  }
  return { width: side, height: side, data };
}

/** The `w x h` window of `img` at (x0, y0), which must lie inside it. */
export function cropImage(img: RgbImage, x0: number, y0: number, w: number, h: number): RgbImage {
  if (x0 < 0 || y0 < 0 || x0 + w > img.width || y0 + h > img.height) {
    throw new Error(
      `cropImage: window ${w}x${h} at (${x0}, ${y0}) is outside the ${img.width}x${img.height} image`,
    );
  }
  const data = new Uint8Array(w * h * 3); // [h, w, 3]
  for (let y = 0; y < h; y++) {
    const from = ((y0 + y) * img.width + x0) * 3;
    data.set(img.data.subarray(from, from + w * 3), y * w * 3);
  }
  return { width: w, height: h, data };
}

// ------------------------------------------------------------------ resampling (Pillow's algorithm)

/** Fractional bits of the fixed-point weights of 8-bit images (Pillow: 32 - 8 - 2). */
const PRECISION_BITS = 22;

interface Filter {
  support: number;
  weight(x: number): number;
}

const FILTERS: Record<Resample, Filter> = {
  bicubic: {
    support: 2,
    weight(x) { // Keys' cubic with a = -0.5
      const a = -0.5;
      x = Math.abs(x);
      if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
      if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
      return 0;
    },
  },
  bilinear: {
    support: 1,
    weight(x) {
      x = Math.abs(x);
      return x < 1 ? 1 - x : 0;
    },
  },
};

/**
 * The taps of a 1-D resize from `inSize` to `outSize` samples: for output i, inputs
 * first[i] .. first[i] + count[i] - 1 with fixed-point weights w[i * K + k] (K = taps per output).
 */
interface Taps {
  K: number;
  first: Int32Array; // [outSize]
  count: Int32Array; // [outSize]
  w: Int32Array; // [outSize, K]
}

function taps(inSize: number, outSize: number, filter: Filter): Taps {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1); // widen the filter when downscaling (antialias)
  const support = filter.support * filterScale;
  const K = Math.ceil(support) * 2 + 1;
  const first = new Int32Array(outSize), count = new Int32Array(outSize), w = new Int32Array(outSize * K);
  const k = new Float64Array(K);
  const ss = 1 / filterScale; // Pillow multiplies by the reciprocal; so do we, for the same weights
  for (let i = 0; i < outSize; i++) {
    const center = (i + 0.5) * scale;
    const lo = Math.max(0, Math.trunc(center - support + 0.5));
    const hi = Math.min(inSize, Math.trunc(center + support + 0.5));
    let sum = 0;
    for (let x = lo; x < hi; x++) {
      k[x - lo] = filter.weight((x - center + 0.5) * ss);
      sum += k[x - lo];
    }
    for (let x = 0; x < hi - lo; x++) {
      const v = sum !== 0 ? k[x] / sum : k[x];
      w[i * K + x] = Math.trunc(v < 0 ? -0.5 + v * (1 << PRECISION_BITS) : 0.5 + v * (1 << PRECISION_BITS));
    }
    first[i] = lo;
    count[i] = hi - lo;
  }
  return { K, first, count, w };
}

/** Rounds a fixed-point sum (with the half already added) to u8, clamping to 0..255. */
function clip8(v: number): number {
  if (v <= 0) return 0;
  if (v >= 255 << PRECISION_BITS) return 255;
  return v >> PRECISION_BITS;
}

/** Resizes along x: u8 [H, W, 3] -> u8 [H, outW, 3]. */
function resizeRows(src: Uint8Array, W: number, H: number, outW: number, t: Taps): Uint8Array {
  const out = new Uint8Array(H * outW * 3);
  const half = 1 << (PRECISION_BITS - 1);
  const { K, first, count, w } = t;
  for (let y = 0; y < H; y++) {
    const row = y * W * 3;
    for (let i = 0; i < outW; i++) {
      let r = half, g = half, b = half;
      const n = count[i], base = i * K;
      let p = row + first[i] * 3;
      for (let k = 0; k < n; k++, p += 3) { // i32 sums, as in Pillow (see resizeCols)
        const wk = w[base + k];
        r = (r + src[p] * wk) | 0;
        g = (g + src[p + 1] * wk) | 0;
        b = (b + src[p + 2] * wk) | 0;
      }
      const o = (y * outW + i) * 3;
      out[o] = clip8(r);
      out[o + 1] = clip8(g);
      out[o + 2] = clip8(b);
    }
  }
  return out;
}

/** Resizes along y: u8 [H, W, 3] -> u8 [outH, W, 3]. */
function resizeCols(src: Uint8Array, W: number, outH: number, t: Taps): Uint8Array {
  const out = new Uint8Array(outH * W * 3);
  const half = 1 << (PRECISION_BITS - 1);
  const stride = W * 3;
  // One output row of fixed-point sums; |sum| < 255 * 1.2 * 2^22 fits i32, as in Pillow.
  const acc = new Int32Array(stride);
  for (let j = 0; j < outH; j++) {
    const n = t.count[j], base = j * t.K, y0 = t.first[j];
    acc.fill(half);
    for (let k = 0; k < n; k++) { // row by row, so both arrays are read in order
      const wk = t.w[base + k], row = (y0 + k) * stride;
      for (let q = 0; q < stride; q++) acc[q] += src[row + q] * wk;
    }
    const o = j * stride;
    for (let q = 0; q < stride; q++) out[o + q] = clip8(acc[q]);
  }
  return out;
}

/**
 * Resizes to `width x height` as Pillow's `Image.resize(size, BICUBIC | BILINEAR)` does on an 8-bit
 * RGB image (the same u8 result): horizontal pass then vertical, each skipped when that side keeps
 * its size, the filter widened by the scale when downscaling.
 */
export function resizeImage(img: RgbImage, width: number, height: number, resample: Resample): RgbImage {
  if (!(Number.isInteger(width) && Number.isInteger(height) && width > 0 && height > 0)) {
    throw new Error(`resizeImage: size ${width}x${height} must be positive integers`);
  }
  const filter = FILTERS[resample];
  let data = img.data;
  if (width !== img.width) {
    data = resizeRows(data, img.width, img.height, width, taps(img.width, width, filter));
  }
  if (height !== img.height) data = resizeCols(data, width, height, taps(img.height, height, filter));
  return { width, height, data: data === img.data ? data.slice() : data };
}

// ------------------------------------------------------------------ the whole pipeline

/**
 * The square S x S u8 image the encoder sees, before normalization: pad, resize or crop as
 * `cfg.mode` says (see the module doc).
 */
export function squareImage(img: RgbImage, cfg: ImagePreprocessConfig): RgbImage {
  const S = cfg.size;
  if (img.width < 1 || img.height < 1 || img.data.length !== img.width * img.height * 3) {
    throw new Error(
      `preprocess: image ${img.width}x${img.height} has ${img.data.length} bytes; expected W*H*3 > 0`,
    );
  }
  const to = (im: RgbImage, w: number, h: number) =>
    im.width === w && im.height === h ? im : resizeImage(im, w, h, cfg.resample);
  switch (cfg.mode) {
    case "resize":
      return to(img, S, S);
    case "pad":
      return to(expandToSquare(img, cfg.fill), S, S);
    case "crop": {
      const { width: W, height: H } = img;
      const [w, h] = W <= H ? [S, Math.trunc(S * H / W)] : [Math.trunc(S * W / H), S];
      const r = to(img, w, h);
      return cropImage(r, (w - S) >> 1, (h - S) >> 1, S, S);
    }
    default: {
      const never: never = cfg.mode;
      throw new Error(`preprocess: unknown mode ${JSON.stringify(never)}; use "resize", "pad" or "crop"`);
    }
  }
}

/**
 * Normalizes an RGB u8 image [H, W, 3] to f32 [3, H, W] (channels first): (x / 255 - mean) / std.
 */
export function normalizeImage(img: RgbImage, norm: ImageNorm): Float32Array {
  const HW = img.width * img.height;
  const out = new Float32Array(3 * HW); // [3, H, W]
  for (let c = 0; c < 3; c++) {
    // x / 255 - mean, over std, as one table per channel (256 entries).
    const lut = new Float64Array(256);
    for (let v = 0; v < 256; v++) lut[v] = (v / 255 - norm.mean[c]) / norm.std[c];
    const plane = out.subarray(c * HW, (c + 1) * HW);
    for (let i = 0; i < HW; i++) plane[i] = lut[img.data[i * 3 + c]];
  }
  return out;
}

/** An RGB image to the encoder's input pixels f32 [3, S, S]: {@linkcode squareImage}, then {@linkcode normalizeImage}. */
export function preprocess(img: RgbImage, cfg: ImagePreprocessConfig): Float32Array {
  return normalizeImage(squareImage(img, cfg), cfg);
}
