/**
 * The data pre-flight: before any weight loads, one streaming pass over each stage's data file counts
 * its rows (with an image, text-only, malformed), checks that images exist (all, a random sample, or
 * none), estimates the rows longer than `data.maxLength`, and counts each stage's optimizer steps, so
 * that a run that would stop on its data, or train badly on too little of it, says so in seconds rather
 * than hours into a run. The file is read in chunks ({@linkcode streamRows}): memory stays flat
 * whatever the file's size.
 *
 * ```ts ignore
 * const r = await scanRunData(cfg, { imageTokens: 576, checkImages: 1000, print: console.log });
 * if (r.errors.length) throw new Error(formatScanErrors(r.errors));
 * ```
 * @module
 */

import { dirname } from "node:path";
import { rng } from "../core/random.ts";
import { DataRowError, IMAGE_MARKER, type LlavaRow, parseLlavaRow } from "../data/llava_json.ts";
import { ImagePathError, ImageRoot } from "../data/image_path.ts";
import type { DataConfig, RunConfig, StageConfig } from "./config.ts";
import { formatBytes, formatDuration } from "./progress.ts";
import { streamRows } from "./row_stream.ts";
import { stageSteps, stageStepWarnings } from "./stage_steps.ts";

/** Which images the scan checks: every one, a random sample of that many, or none. */
export type ImageCheck = "all" | "none" | number;

/** The images checked by default: a random sample of 1000 (a few seconds on any disk). */
export const DEFAULT_IMAGE_CHECK: ImageCheck = 1000;

/** Reads `--check-images`'s value: `all`, `none` or a positive number of images to sample. */
export function parseImageCheck(text: string, flag = "--check-images"): ImageCheck {
  if (text === "all" || text === "none") return text;
  const n = Number(text);
  if (Number.isInteger(n) && n > 0) return n;
  throw new Error(`${flag}: "all", "none" or a number of images to sample (e.g. 1000), got "${text}"`);
}

/**
 * A row's length in tokens, estimated without a tokenizer: its text's characters / 4 (English text
 * with a Llama-style tokenizer) plus the `imageTokens` positions of its image. The template's tokens
 * are not counted.
 */
export function estimateRowTokens(row: LlavaRow, imageTokens: number): number {
  let chars = 0;
  for (const t of row.conversations) chars += t.value.replace(IMAGE_MARKER, "").length;
  return Math.ceil(chars / 4) + (row.image ? imageTokens : 0);
}

/** Where a scan stands, for a progress line. */
export interface ScanProgress {
  /** The data file. */
  file: string;
  /** Rows read so far. */
  rows: number;
  /** Bytes read so far. */
  bytes: number;
  /** The file's size. */
  totalBytes: number;
  /** Seconds since the scan started. */
  seconds: number;
}

/** Options of {@linkcode scanDataFile}. */
export interface ScanOptions {
  /** The folder rows' image paths start from (and must stay inside). */
  imageRoot: string;
  /** `data.followSymlinks`: images may be links out of the image root (default false). */
  followSymlinks?: boolean;
  /** Image positions per row (the encoder's patches), for the length estimate; 0 when unknown. */
  imageTokens: number;
  /** `data.maxLength`. */
  maxLength: number;
  /** Which images to check (default {@linkcode DEFAULT_IMAGE_CHECK}). */
  checkImages?: ImageCheck;
  /** Seeds the sample of images (default 0). */
  seed?: number;
  /** Bytes read at a time (default 1 MiB). */
  chunkBytes?: number;
  /** Called after each chunk read. */
  onProgress?: (p: ScanProgress) => void;
}

/** What a scan of one data file found. */
export interface DataScan {
  /** The data file. */
  file: string;
  /** Its size in bytes. */
  bytes: number;
  /** Seconds the scan took. */
  seconds: number;
  /** Rows (array elements, or non-blank lines of a JSONL file). */
  rows: number;
  /** Rows that are not valid rows (the trainer stops at them, or skips them with `data.onError: "skip"`). */
  malformed: number;
  /** Valid rows with an image. */
  imageRows: number;
  /** Valid rows without an image. */
  textRows: number;
  /** Which images were checked. */
  imageCheck: ImageCheck;
  /** Images checked. */
  imagesChecked: number;
  /**
   * Of those, images the trainer cannot open: not there, not a file, or outside the image root (as the
   * trainer resolves paths: data/image_path.ts).
   */
  imagesMissing: number;
  /** The image positions per row the length estimate counted. */
  imageTokens: number;
  /** `data.maxLength` of the estimate. */
  maxLength: number;
  /** Valid rows whose estimated length ({@linkcode estimateRowTokens}) is over `maxLength`. */
  overMaxLength: number;
  /** The first malformed rows, each naming the file, the row, its id and what is wrong. */
  malformedExamples: string[];
  /** The first missing images, each naming the file, the row, its id, the path and what is wrong. */
  missingExamples: string[];
}

/** How many rows of each kind of problem a scan quotes. */
const QUOTED = 3;

/** Image checks run together. */
const CHECK_BATCH = 256;

interface ImageRef {
  /** The row, for messages. */
  where: string;
  /** The row's image path. */
  image: string;
}

/** Why the trainer could not open `ref`'s image under `root` (null: it is a file there). */
async function imageProblem(root: ImageRoot, ref: ImageRef): Promise<string | null> {
  let path: string;
  try {
    path = await root.resolve(ref.image);
  } catch (err) {
    if (err instanceof ImagePathError) return err.message;
    throw err;
  }
  try {
    return (await Deno.stat(path)).isFile ? null : `${path} is not a file`;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound || err instanceof Deno.errors.NotADirectory) {
      return `${path} is missing`;
    }
    throw new Error(`${ref.where}: cannot check its image ${path}: ${(err as Error).message}`);
  }
}

/**
 * Scans a LLaVA data file (`.json` array or `.jsonl`) once, in chunks: see the module doc. Throws, as
 * the trainer would, when a `.json` file is not a valid JSON array or holds an element that is not
 * valid JSON (naming the row and its line); malformed rows are counted.
 */
export async function scanDataFile(file: string, opts: ScanOptions): Promise<DataScan> {
  const check = opts.checkImages ?? DEFAULT_IMAGE_CHECK;
  const t0 = performance.now();
  let totalBytes: number;
  try {
    totalBytes = (await Deno.stat(file)).size;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      throw new Error(`${file}: data set file not found; check data paths in the config`);
    }
    throw err;
  }
  const jsonl = file.endsWith(".jsonl");
  const decoder = new TextDecoder();
  const s: DataScan = {
    file,
    bytes: totalBytes,
    seconds: 0,
    rows: 0,
    malformed: 0,
    imageRows: 0,
    textRows: 0,
    imageCheck: check,
    imagesChecked: 0,
    imagesMissing: 0,
    imageTokens: opts.imageTokens,
    maxLength: opts.maxLength,
    overMaxLength: 0,
    malformedExamples: [],
    missingExamples: [],
  };
  const sample: ImageRef[] = []; // a reservoir sample of the image rows (check: a number)
  const draw = rng(opts.seed ?? 0);
  let pending: ImageRef[] = []; // check "all": images not yet checked
  const root = new ImageRoot(opts.imageRoot, {
    followSymlinks: opts.followSymlinks,
    option: "data.followSymlinks",
  });
  const checkImages = async (refs: ImageRef[]) => {
    const problems = await Promise.all(refs.map((ref) => imageProblem(root, ref)));
    refs.forEach((ref, k) => {
      s.imagesChecked++;
      if (problems[k] === null) return;
      s.imagesMissing++;
      if (s.missingExamples.length < QUOTED) s.missingExamples.push(`${ref.where}: ${problems[k]}`);
    });
  };
  const rows = streamRows(file, {
    chunkBytes: opts.chunkBytes,
    onBytes: (bytes) =>
      opts.onProgress?.({ file, rows: s.rows, bytes, totalBytes, seconds: (performance.now() - t0) / 1000 }),
  });
  for await (const raw of rows) {
    s.rows++;
    let json: unknown;
    try {
      json = JSON.parse(decoder.decode(raw.bytes));
    } catch (err) {
      const why = `not valid JSON (${(err as Error).message})`;
      if (!jsonl) throw new Error(`${file} row ${raw.index} (line ${raw.line}): ${why}; fix the file`);
      s.malformed++;
      if (s.malformedExamples.length < QUOTED) s.malformedExamples.push(`${file} row ${raw.index}: ${why}`);
      continue;
    }
    let row: LlavaRow;
    try {
      row = parseLlavaRow(json, file, raw.index);
    } catch (err) {
      if (!(err instanceof DataRowError)) throw err;
      s.malformed++;
      if (s.malformedExamples.length < QUOTED) {
        const id = err.id === undefined ? "no id" : `id ${JSON.stringify(err.id)}`;
        s.malformedExamples.push(`${file} row ${raw.index} (${id}): ${err.reason}`);
      }
      continue;
    }
    if (estimateRowTokens(row, opts.imageTokens) > opts.maxLength) s.overMaxLength++;
    if (!row.image) {
      s.textRows++;
      continue;
    }
    s.imageRows++;
    if (check === "none") continue;
    const ref = {
      where: `${file} row ${row.index} (id ${JSON.stringify(row.id)})`,
      image: row.image,
    };
    if (check === "all") {
      pending.push(ref);
      if (pending.length >= CHECK_BATCH) {
        await checkImages(pending);
        pending = [];
      }
    } else if (sample.length < check) sample.push(ref);
    else {
      const k = Math.floor(draw() * s.imageRows);
      if (k < check) sample[k] = ref;
    }
  }
  for (let i = 0; i < sample.length; i += CHECK_BATCH) await checkImages(sample.slice(i, i + CHECK_BATCH));
  await checkImages(pending);
  s.seconds = (performance.now() - t0) / 1000;
  return s;
}

/**
 * A printer of a scan's progress for `print`, at most every `intervalSec` seconds:
 * `scanning data/mix665k.json: 120000 rows, 190.2 MiB of 1.0 GiB (18%), 95.1 MiB/s`.
 */
export function scanProgressPrinter(
  print: (line: string) => void,
  intervalSec = 2,
): (p: ScanProgress) => void {
  let last = performance.now() / 1000;
  return (p) => {
    const now = performance.now() / 1000;
    if (now - last < intervalSec || p.bytes >= p.totalBytes) return;
    last = now;
    print(
      `scanning ${p.file}: ${p.rows} rows, ${formatBytes(p.bytes)} of ${formatBytes(p.totalBytes)} (${
        Math.floor(100 * p.bytes / p.totalBytes)
      }%), ${formatBytes(p.bytes / Math.max(p.seconds, 1e-9))}/s`,
    );
  };
}

/** What a scan means for one stage: problems that stop the run, and warnings. */
export interface ScanFindings {
  /** Problems that would stop the stage, each with its fix. */
  errors: string[];
  /** Problems that let it run but badly (or likely stop it), each with its fix. */
  warnings: string[];
}

function percent(x: number): string {
  return `${Number((100 * x).toPrecision(2))}%`;
}

/**
 * The problems of `stage` on what `scan` found, by the rules of the trainer: with `data.onError:
 * "error"` one malformed row or missing image stops it; with "skip", rows left out beyond
 * `data.maxSkipShare` do (counted, or for a sample of images estimated). Too few rows for one
 * optimizer step, or for any step past warmup, are warnings ({@linkcode stageStepWarnings}).
 */
export function scanFindings(
  scan: DataScan,
  stage: StageConfig,
  data: Pick<DataConfig, "onError" | "maxSkipShare">,
): ScanFindings {
  const errors: string[] = [], warnings: string[] = [];
  const usable = scan.rows - scan.malformed;
  const root = stage.imageRoot ?? dirname(stage.data);
  const fixImages = `add the images, or set the stage's imageRoot (now ${root})`;
  if (usable === 0) {
    errors.push(
      `${scan.file}: no usable rows (${scan.rows} rows, ${scan.malformed} malformed` +
        (scan.malformedExamples.length ? `; first: ${scan.malformedExamples[0]}` : "") +
        `); fix the data`,
    );
    return { errors, warnings };
  }
  if (data.onError === "error") {
    if (scan.malformed > 0) {
      errors.push(
        `${scan.malformed} malformed row${
          scan.malformed === 1 ? "" : "s"
        }, and the stage stops at the first ` +
          `(${scan.malformedExamples[0]}); fix them, or set data.onError: "skip" to leave them out`,
      );
    }
    if (scan.imagesMissing > 0) {
      errors.push(
        `${scan.imagesMissing} of ${scan.imagesChecked} images checked are missing or outside the image ` +
          `root, and the stage stops at ` +
          `the first row it meets without its image (${scan.missingExamples[0]}); ${fixImages}, or set ` +
          `data.onError: "skip" to leave those rows out`,
      );
    }
  } else {
    const limit = data.maxSkipShare * scan.rows;
    const exact = scan.imagesChecked === scan.imageRows || scan.imagesMissing === 0;
    const missing = scan.imagesChecked === scan.imageRows
      ? scan.imagesMissing
      : scan.imagesChecked > 0
      ? Math.round(scan.imagesMissing / scan.imagesChecked * scan.imageRows)
      : 0;
    const left = scan.malformed + missing;
    const what = `${scan.malformed} malformed` +
      (missing ? `, ${exact ? "" : "about "}${missing} with a missing image` : "");
    const over = `${exact ? "" : "about "}${left} of ${scan.rows} rows left out (${what}: ${
      percent(left / scan.rows)
    }), over data.maxSkipShare ${percent(data.maxSkipShare)}`;
    const fix = `fix the data${missing ? ` (${fixImages})` : ""} or raise data.maxSkipShare`;
    if (left > limit && (exact || scan.malformed > limit)) errors.push(`${over}: the stage stops; ${fix}`);
    else if (left > limit) {
      warnings.push(
        `${over}, estimated from ${scan.imagesMissing} missing in a sample of ${scan.imagesChecked} images: ` +
          `the stage will likely stop; ${fix} (--check-images all counts them)`,
      );
    }
  }
  warnings.push(...stageStepWarnings(stage, usable));
  return { errors, warnings };
}

/** The summary lines of a stage's scan: rows, images, lengths, optimizer steps, then the findings. */
export function formatScan(scan: DataScan, stage: StageConfig, findings: ScanFindings): string[] {
  const lines: string[] = [];
  const rate = scan.seconds > 0 ? `, ${formatBytes(scan.bytes / scan.seconds)}/s` : "";
  lines.push(`${scan.file}: ${formatBytes(scan.bytes)} scanned in ${formatDuration(scan.seconds)}${rate}`);
  lines.push(
    `  ${scan.rows} rows: ${scan.imageRows} with an image, ${scan.textRows} text-only, ${scan.malformed} malformed`,
  );
  if (scan.imageRows > 0) {
    const how = scan.imageCheck === "none"
      ? "not checked (--check-images none)"
      : `${scan.imagesChecked} of ${scan.imageRows} checked${
        scan.imagesChecked === scan.imageRows ? "" : " (a random sample; --check-images all checks every one)"
      }, ${scan.imagesMissing} missing${scan.imagesMissing ? " or outside the image root" : ""}`;
    lines.push(`  images: ${how}`);
  }
  const usable = scan.rows - scan.malformed;
  if (usable > 0) {
    lines.push(
      `  over data.maxLength ${scan.maxLength} (estimated: characters / 4 + ${scan.imageTokens} image ` +
        `positions): ${scan.overMaxLength} rows (${percent(scan.overMaxLength / usable)}), cut when training`,
    );
    const st = stageSteps(stage, usable);
    lines.push(
      `  optimizer steps: ${st.total}` +
        (stage.maxSteps !== null
          ? ` (maxSteps; ${st.stepsPerEpoch} per epoch)`
          : ` (${usable} rows / ${stage.batchSize} x ${stage.gradAccum} rows per step = ${st.stepsPerEpoch} per ` +
            `epoch, x ${stage.epochs} epoch${stage.epochs === 1 ? "" : "s"})`) +
        `, of which ${st.warmup} warmup`,
    );
  }
  for (const e of findings.errors) lines.push(`  error: ${e}`);
  for (const w of findings.warnings) lines.push(`  warning: ${w}`);
  return lines;
}

/** Options of {@linkcode scanRunData}. */
export interface ScanRunOptions {
  /** Image positions per row (the encoder's patches), for the length estimate; 0 when unknown. */
  imageTokens: number;
  /** Which images to check (default {@linkcode DEFAULT_IMAGE_CHECK}). */
  checkImages?: ImageCheck;
  /** Where the summary and the progress lines go. */
  print: (line: string) => void;
  /** Bytes read at a time (default 1 MiB). */
  chunkBytes?: number;
}

/** What {@linkcode scanRunData} found, per stage. */
export interface RunDataScan {
  /** Each stage's scan (stages on the same file and image folder share one) and findings. */
  stages: { stage: StageConfig; scan: DataScan; findings: ScanFindings }[];
  /** Every stage's errors, each starting with the stage's name. */
  errors: string[];
}

/**
 * Scans each stage's data file once (stages on the same file and image folder share the scan), prints
 * each stage's summary ({@linkcode formatScan}) with progress during long scans, and returns what it
 * found; the caller decides what the errors mean.
 */
export async function scanRunData(cfg: RunConfig, opts: ScanRunOptions): Promise<RunDataScan> {
  const done = new Map<string, DataScan>();
  const out: RunDataScan = { stages: [], errors: [] };
  const progress = scanProgressPrinter(opts.print);
  const n = cfg.train.stages.length;
  for (const [i, stage] of cfg.train.stages.entries()) {
    const imageRoot = stage.imageRoot ?? dirname(stage.data);
    const key = JSON.stringify([stage.data, imageRoot]);
    const seen = done.get(key);
    const scan = seen ?? await scanDataFile(stage.data, {
      imageRoot,
      followSymlinks: cfg.data.followSymlinks,
      imageTokens: opts.imageTokens,
      maxLength: cfg.data.maxLength,
      checkImages: opts.checkImages,
      seed: cfg.train.seed,
      chunkBytes: opts.chunkBytes,
      onProgress: progress,
    });
    done.set(key, scan);
    const findings = scanFindings(scan, stage, cfg.data);
    out.stages.push({ stage, scan, findings });
    out.errors.push(...findings.errors.map((e) => `stage ${stage.name}: ${e}`));
    const lines = formatScan(scan, stage, findings);
    if (seen) lines[0] = `${scan.file}: scanned for an earlier stage`;
    opts.print(`data of stage ${i + 1}/${n} ${stage.name}: ${lines[0]}`);
    for (const l of lines.slice(1)) opts.print(l);
  }
  return out;
}

/** The message of a run that the data pre-flight stops: every error, and how to start anyway. */
export function formatScanErrors(errors: string[]): string {
  return [
    `the data pre-flight found ${errors.length} problem${
      errors.length === 1 ? "" : "s"
    } that would stop the run (no weights were loaded):`,
    ...errors.map((e) => `  ${e}`),
    "(--no-scan starts without this check)",
  ].join("\n");
}
