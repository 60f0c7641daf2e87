/**
 * Image loading throughput: decode alone, decode + preprocess on the calling thread, and through
 * {@linkcode ImagePrefetcher} with 1 and 2 workers, on generated photo-like JPEGs.
 *
 *     deno run -A data/prefetch_bench.ts [--count 200] [--side 336] [--size 336] [--mode pad]
 *
 * Prints one line per measurement (images/s and ms per image).
 * @module
 */

import { parseArgs } from "node:util";
import sharp from "sharp";
import { decodeImage } from "./image.ts";
import { ImagePrefetcher, loadImageJob } from "./prefetch.ts";
import { parseImagePreprocessConfig } from "./preprocess.ts";

const { values } = parseArgs({
  options: {
    count: { type: "string", default: "200" },
    side: { type: "string", default: "336" },
    height: { type: "string" },
    size: { type: "string", default: "336" },
    mode: { type: "string", default: "pad" },
    quality: { type: "string", default: "90" },
  },
});
const count = Number(values.count), W = Number(values.side), H = Number(values.height ?? values.side);
const cfg = parseImagePreprocessConfig({ size: Number(values.size), mode: values.mode }, "--size/--mode");

/** A photo-like W x H image: smooth colour fields, edges and noise, as JPEG. */
async function makeJpeg(seed: number): Promise<Uint8Array> {
  const px = new Uint8Array(W * H * 3); // [H, W, 3]
  let s = seed * 2654435761 >>> 0;
  const rand = () => ((s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32);
  const fx = 2 + 6 * rand(), fy = 2 + 6 * rand();
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const i = (y * W + x) * 3;
      const edge = (x + y * 0.5) % 97 < 40 ? 60 : 0;
      px[i] = 128 + 100 * Math.sin(fx * x / W + seed) * Math.cos(fy * y / H) + (rand() - 0.5) * 30;
      px[i + 1] = 100 + 80 * Math.cos((x + y) / 40) + edge + (rand() - 0.5) * 30;
      px[i + 2] = 90 + 70 * Math.sin(y / 25 + seed) + (rand() - 0.5) * 30;
    }
  }
  const jpg = await sharp(px, { raw: { width: W, height: H, channels: 3 } })
    .jpeg({ quality: Number(values.quality) }).toBuffer();
  return new Uint8Array(jpg);
}

const dir = await Deno.makeTempDir();
try {
  const paths: string[] = [];
  let bytes = 0;
  for (let i = 0; i < count; i++) {
    const jpg = await makeJpeg(i);
    bytes += jpg.length;
    paths.push(`${dir}/${i}.jpg`);
    await Deno.writeFile(paths[i], jpg);
  }
  console.log(
    `${count} JPEGs ${W}x${H} (mean ${(bytes / count / 1024).toFixed(1)} KiB), preprocess to ${cfg.size} ` +
      `(${cfg.mode}, ${cfg.resample}); ${navigator.hardwareConcurrency} cores`,
  );
  const report = (what: string, ms: number) =>
    console.log(
      `${what.padEnd(40)} ${(count / ms * 1000).toFixed(1).padStart(7)} images/s ` +
        `${(ms / count).toFixed(2).padStart(7)} ms/image`,
    );
  const jobs = paths.map((path) => ({ path, cfg }));

  // Warm up (JIT, libvips start) on a few images.
  for (const j of jobs.slice(0, 10)) await loadImageJob(j);

  const files = await Promise.all(paths.map((p) => Deno.readFile(p)));
  let t = performance.now();
  for (let i = 0; i < count; i++) await decodeImage(files[i], paths[i]);
  report("decode only (bytes in memory), inline", performance.now() - t);

  t = performance.now();
  for (const j of jobs) {
    const r = await loadImageJob(j);
    if (!r.ok) throw new Error(r.error);
  }
  report("read + decode + preprocess, inline", performance.now() - t);

  for (const workers of [1, 2]) {
    const pre = new ImagePrefetcher([], { lookahead: 16, workers });
    try {
      await Promise.all(jobs.slice(0, 4 * workers).map((j) => (pre.push(j), pre.next()))); // start the workers
      t = performance.now();
      pre.push(...jobs);
      for await (const r of pre) if (!r.ok) throw new Error(r.error);
      report(`prefetcher, ${workers} worker${workers > 1 ? "s" : ""}, lookahead 16`, performance.now() - t);
    } finally {
      pre.close();
    }
  }
} finally {
  await Deno.remove(dir, { recursive: true });
}
