/**
 * Image decoding: JPEG, PNG and WebP files (or bytes) to 8-bit RGB pixels, through sharp (libvips,
 * prebuilt for each platform).
 *
 * The result is what the reference pipelines get from Pillow's `Image.open(path).convert("RGB")`:
 * the stored pixel layout (an EXIF orientation tag is not applied), the alpha channel dropped (not
 * composited), grayscale and palette images expanded to RGB, 16-bit images reduced to 8 bits, and
 * embedded ICC profiles ignored. CMYK JPEGs are converted to RGB by libvips, whose colours may
 * differ from Pillow's naive CMYK conversion.
 *
 * ```ts ignore
 * const img = await readImage("images/000001.jpg"); // { width, height, data: Uint8Array [H*W*3] }
 * ```
 * @module
 */

import sharp from "sharp";

/** An 8-bit RGB image, rows top to bottom, pixels left to right: `data` is u8 [H, W, 3]. */
export interface RgbImage {
  /** Width W in pixels. */
  width: number;
  /** Height H in pixels. */
  height: number;
  /** Pixels, u8 [H, W, 3] (row-major, channels R, G, B). */
  data: Uint8Array;
}

/** The formats the decoder accepts. */
export type ImageFormat = "jpeg" | "png" | "webp";

const FORMAT_NAMES: Record<ImageFormat, string> = { jpeg: "JPEG", png: "PNG", webp: "WebP" };

/** The largest image accepted, in pixels (W x H): 0x3FFF squared, sharp's own default. */
const MAX_PIXELS = 0x3fff * 0x3fff;

/**
 * The format of `bytes` from its signature (magic bytes), or null when it is none of JPEG
 * (`ff d8 ff`), PNG (`89 50 4e 47 0d 0a 1a 0a`) or WebP (`RIFF` size `WEBP`).
 */
export function sniffImageFormat(bytes: Uint8Array): ImageFormat | null {
  const at = (i: number, sig: number[]) => sig.every((b, k) => bytes[i + k] === b);
  if (at(0, [0xff, 0xd8, 0xff])) return "jpeg";
  if (at(0, [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])) return "png";
  if (at(0, [0x52, 0x49, 0x46, 0x46]) && at(8, [0x57, 0x45, 0x42, 0x50])) return "webp";
  return null;
}

/**
 * Decodes JPEG, PNG or WebP `bytes` to RGB. `name` (a path or a label) starts every error message.
 * Throws on other formats (naming the first bytes), and on corrupt or truncated data.
 */
export async function decodeImage(bytes: Uint8Array, name: string): Promise<RgbImage> {
  if (bytes.length === 0) throw new Error(`${name}: empty file, not an image`);
  const format = sniffImageFormat(bytes);
  if (format === null) {
    const head = Array.from(bytes.subarray(0, 4), (b) => b.toString(16).padStart(2, "0")).join(" ");
    throw new Error(`${name}: not a JPEG, PNG or WebP file (starts with ${head})`);
  }
  const kind = FORMAT_NAMES[format];
  let out: { data: Uint8Array; info: { width: number; height: number; channels: number } };
  try {
    out = await sharp(bytes, { failOn: "warning", ignoreIcc: true, limitInputPixels: MAX_PIXELS })
      .removeAlpha()
      .toColourspace("srgb")
      .raw({ depth: "uchar" })
      .toBuffer({ resolveWithObject: true });
  } catch (err) {
    const why = (err as Error).message.split("\n")[0].trim();
    if (why.includes("pixel limit")) {
      throw new Error(`${name}: ${kind} image over ${MAX_PIXELS} pixels (${why}); downscale it first`);
    }
    throw new Error(`${name}: corrupt or truncated ${kind} (${why})`);
  }
  const { width, height, channels } = out.info;
  if (channels !== 3 || out.data.length !== width * height * 3) {
    throw new Error(
      `${name}: the ${kind} decoded to ${channels} channels (${out.data.length} bytes for ${width}x${height}); ` +
        `expected RGB`,
    );
  }
  const data = new Uint8Array(out.data.buffer, out.data.byteOffset, out.data.length);
  return { width, height, data };
}

/** The default cap on an image file's size: 64 MiB, far above any photo a dataset row holds. */
export const DEFAULT_MAX_IMAGE_BYTES: number = 64 * 2 ** 20;

/** Options of {@linkcode readImage}. */
export interface ReadImageOptions {
  /** The largest file accepted, in bytes (default {@linkcode DEFAULT_MAX_IMAGE_BYTES}). */
  maxBytes?: number;
}

/**
 * Reads and decodes a JPEG, PNG or WebP file to RGB. Only a regular file (or a link to one) of at
 * most `maxBytes` is opened: a device (`/dev/zero`), a FIFO or a socket would never end or never
 * start. Errors name the path and never show the file's contents: a missing file, a directory or
 * other non-file, a file over the limit, another format, or corrupt or truncated data.
 */
export async function readImage(path: string, opts: ReadImageOptions = {}): Promise<RgbImage> {
  const maxBytes = opts.maxBytes ?? DEFAULT_MAX_IMAGE_BYTES;
  let bytes: Uint8Array;
  try {
    // stat, not open: opening a FIFO blocks until someone writes to it.
    const info = await Deno.stat(path);
    if (info.isDirectory) throw new Error(`${path}: is a directory, not an image file`);
    if (!info.isFile) {
      throw new Error(`${path}: not a regular file (a device, FIFO or socket); images must be files`);
    }
    if (info.size > maxBytes) {
      throw new Error(
        `${path}: the file is ${info.size} bytes, over the image size limit of ${maxBytes} ` +
          `(data.maxImageBytes); shrink the image or raise the limit`,
      );
    }
    bytes = await readAtMost(path, maxBytes);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) throw new Error(`${path}: image file not found`);
    if (err instanceof Deno.errors.IsADirectory) {
      throw new Error(`${path}: is a directory, not an image file`);
    }
    if (err instanceof Error && err.message.startsWith(`${path}: `)) throw err;
    throw new Error(`${path}: cannot read image file: ${(err as Error).message}`);
  }
  return await decodeImage(bytes, path);
}

/** The file's bytes; an error when it holds more than `max` (it grew after it was checked). */
async function readAtMost(path: string, max: number): Promise<Uint8Array> {
  using file = await Deno.open(path);
  const chunks: Uint8Array[] = [];
  let total = 0;
  const buf = new Uint8Array(1 << 20);
  for (;;) {
    const n = await file.read(buf);
    if (n === null) break;
    total += n;
    if (total > max) {
      throw new Error(`${path}: the file is over the image size limit of ${max} bytes (data.maxImageBytes)`);
    }
    chunks.push(buf.slice(0, n));
  }
  const out = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}
