/**
 * The data pre-flight's speed and memory on a file the size of LLaVA-1.5's `llava_v1_5_mix665k.json`:
 * writes a synthetic 665,298-row LLaVA JSON (multi-turn image rows and longer text-only rows, as the
 * mix; image paths but no image files) into a temporary folder, scans it in a fresh process with the
 * image check off, and reports the time and the peak memory (VmHWM, the resident set's high-water
 * mark, beside that of a process that only starts), then deletes the file.
 *
 *     deno run -A bench/data_scan.ts [--rows N] [--json] [--read-whole]
 *
 * `--read-whole` also measures `readLlavaRows`, which holds the whole file and every row, for
 * comparison. With `--json`, one object: {rows, file_bytes, seconds, mb_per_s, peak_rss_bytes,
 * idle_rss_bytes, ...}.
 * @module
 */

import { parseArgs } from "node:util";
import { join } from "node:path";
import { rng } from "../core/random.ts";

const { values: args } = parseArgs({
  args: Deno.args.filter((a) => a !== "--"),
  options: {
    rows: { type: "string", default: "665298" },
    json: { type: "boolean", default: false },
    "read-whole": { type: "boolean", default: false },
    // Internal: the child process's work.
    child: { type: "string" },
    file: { type: "string" },
  },
});

/** The resident set's high-water mark of this process, in bytes (Linux), or the current RSS. */
function peakRss(): number {
  try {
    const m = Deno.readTextFileSync("/proc/self/status").match(/VmHWM:\s+(\d+) kB/);
    if (m) return Number(m[1]) * 1024;
  } catch { /* not Linux */ }
  return Deno.memoryUsage().rss;
}

if (args.child) {
  // A fresh process: its peak memory is the work's alone.
  const t0 = performance.now();
  let rows = 0, sampled = 0;
  if (args.child === "scan") {
    const { scanDataFile } = await import("../trainers/data_scan.ts");
    const s = await scanDataFile(args.file!, {
      imageRoot: "/nonexistent",
      imageTokens: 576,
      maxLength: 2048,
      checkImages: "none",
      onProgress: () => sampled = Math.max(sampled, Deno.memoryUsage().rss),
    });
    rows = s.rows;
    console.log(JSON.stringify({
      rows,
      seconds: (performance.now() - t0) / 1000,
      peak_rss_bytes: peakRss(),
      sampled_rss_bytes: sampled,
      image_rows: s.imageRows,
      text_rows: s.textRows,
      malformed: s.malformed,
      over_max_length: s.overMaxLength,
    }));
  } else if (args.child === "read") {
    const { readLlavaRows } = await import("../data/llava_json.ts");
    rows = (await readLlavaRows(args.file!)).rows.length;
    console.log(
      JSON.stringify({ rows, seconds: (performance.now() - t0) / 1000, peak_rss_bytes: peakRss() }),
    );
  } else console.log(JSON.stringify({ peak_rss_bytes: peakRss() })); // idle
  Deno.exit(0);
}

const WORDS = ("the a of and to in is on with for what this image shows man woman two people sitting " +
  "standing table red blue green white black large small left right near behind car bus street sign " +
  "dog cat plate food pizza room window building tree sky water boat train holding wearing looking " +
  "how many color where which there are it be they answer question briefly using single word phrase " +
  '"quoted" [bracketed] {braced} café naïve').split(" ");

/** `n` words drawn by `r`. */
function words(r: () => number, n: number): string {
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(WORDS[Math.floor(r() * WORDS.length)]);
  return out.join(" ");
}

const SOURCES = ["coco/train2017", "gqa/images", "ocr_vqa/images", "textvqa/train_images", "vg/VG_100K"];

/**
 * Row `i` of the synthetic mix: 94% image rows of 1 to 10 question-answer turns (short answers, as
 * VQA data, or a sentence or two), 6% text-only rows of 1 to 4 long turns (as ShareGPT).
 */
function row(i: number, r: () => number): unknown {
  if (r() < 0.06) {
    const turns = 1 + Math.floor(r() * 4);
    return {
      id: `sharegpt_${i}`,
      conversations: Array.from({ length: turns }, () => [
        { from: "human", value: words(r, 10 + Math.floor(r() * 60)) + "?" },
        { from: "gpt", value: words(r, 100 + Math.floor(r() * 400)) + "." },
      ]).flat(),
    };
  }
  const turns = 1 + Math.floor(r() * 10);
  const src = SOURCES[Math.floor(r() * SOURCES.length)];
  return {
    id: String(100000 + i),
    image: `${src}/${String(i).padStart(12, "0")}.jpg`,
    conversations: Array.from({ length: turns }, (_, t) => [
      { from: "human", value: (t === 0 ? "<image>\n" : "") + words(r, 6 + Math.floor(r() * 14)) + "?" },
      {
        from: "gpt",
        value: r() < 0.6 ? words(r, 1 + Math.floor(r() * 3)) : words(r, 12 + Math.floor(r() * 40)),
      },
    ]).flat(),
  };
}

/** Writes `n` rows as a JSON array (indented as the original: one key per line) to `file`. */
async function writeMix(file: string, n: number): Promise<void> {
  const f = await Deno.open(file, { write: true, create: true, truncate: true });
  const enc = new TextEncoder(), r = rng(665);
  try {
    await f.write(enc.encode("[\n"));
    for (let i = 0; i < n; i += 5000) {
      const part: string[] = [];
      for (let k = i; k < Math.min(n, i + 5000); k++) part.push(JSON.stringify(row(k, r), null, 2));
      await f.write(enc.encode(part.join(",\n") + (i + 5000 < n ? ",\n" : "\n")));
    }
    await f.write(enc.encode("]\n"));
  } finally {
    f.close();
  }
}

/** Runs this script as a child doing `what` on `file`; returns what it printed. */
async function child(what: string, file: string): Promise<Record<string, number>> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL(import.meta.url).pathname, "--child", what, "--file", file],
    stderr: "inherit",
  }).output();
  if (!out.success) throw new Error(`the ${what} child failed (exit ${out.code})`);
  return JSON.parse(new TextDecoder().decode(out.stdout).trim().split("\n").at(-1)!);
}

const n = Number(args.rows);
if (!(Number.isInteger(n) && n > 0)) throw new Error(`--rows: a positive integer, got ${args.rows}`);
const dir = await Deno.makeTempDir({ prefix: "asvr_data_scan_bench_" });
try {
  const file = join(dir, "mix.json");
  const t0 = performance.now();
  await writeMix(file, n);
  const bytes = (await Deno.stat(file)).size;
  if (!args.json) {
    console.log(
      `wrote ${n} rows, ${(bytes / 1e9).toFixed(2)} GB in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
    );
  }
  const idle = await child("idle", file);
  const scan = await child("scan", file);
  const read = args["read-whole"] ? await child("read", file) : null;
  const result = {
    rows: scan.rows,
    file_bytes: bytes,
    seconds: Number(scan.seconds.toFixed(2)),
    mb_per_s: Number((bytes / 1e6 / scan.seconds).toFixed(1)),
    peak_rss_bytes: scan.peak_rss_bytes,
    sampled_rss_bytes: scan.sampled_rss_bytes,
    idle_rss_bytes: idle.peak_rss_bytes,
    image_rows: scan.image_rows,
    text_rows: scan.text_rows,
    over_max_length: scan.over_max_length,
    ...(read
      ? {
        read_whole_seconds: Number(read.seconds.toFixed(2)),
        read_whole_peak_rss_bytes: read.peak_rss_bytes,
      }
      : {}),
    deno: Deno.version.deno,
    cpus: navigator.hardwareConcurrency,
  };
  if (args.json) console.log(JSON.stringify(result));
  else {
    const mb = (b: number) => `${(b / 1e6).toFixed(0)} MB`;
    console.log(
      `scan: ${result.rows} rows (${
        (bytes / 1e9).toFixed(2)
      } GB) in ${result.seconds} s (${result.mb_per_s} MB/s), ` +
        `peak memory ${mb(result.peak_rss_bytes)} (a process that only starts: ${mb(result.idle_rss_bytes)})`,
    );
    if (read) {
      console.log(
        `readLlavaRows (the whole file): ${read.seconds.toFixed(1)} s, peak memory ${
          mb(read.peak_rss_bytes)
        }`,
      );
    }
  }
} finally {
  await Deno.remove(dir, { recursive: true });
}
