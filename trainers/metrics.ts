/**
 * The run's metrics log: `<runDir>/metrics.jsonl`, one JSON object per line (`{"step": 120,
 * "loss_text": 2.31, "lr": 0.001, ...}`), each line written out as soon as it is recorded, and the
 * reader that brings the records back (to redraw the curves when a run resumes).
 *
 * The trainer writes a line per optimizer step (`stage`, `stage_step`, `lr`, `grad_norm`, `skipped`,
 * `tokens_per_s` and the `loss_*` terms), a line per evaluation (`eval_accuracy`), and, where a stage
 * ends or the run stops in it with rows skipped, cut or re-decoded, a line of the stage's row counts at
 * its last step: `rows_skipped`, `rows_skipped_<kind>` for each kind (`malformed`, `text`, `image`,
 * `path`), `rows_cut` and `rows_invalid_utf8` (data/row_ledger.ts). Those counts cover the rows the
 * stage met since the run started or resumed (malformed rows: the whole file). Readers pick lines by
 * their keys; several lines may share a step.
 *
 * ```ts ignore
 * const log = await MetricsWriter.open("runs/stage1", { resumeStep: ck?.step });
 * log.write({ step: 120, loss_text: 2.314, lr: 1e-3 });
 * log.close();
 * const records = await readMetrics("runs/stage1");
 * ```
 * @module
 */

import { namingPath, writeTextAtomic } from "../io/safetensors.ts";

/** The file name of the metrics log inside a run folder. */
export const METRICS_FILE: string = "metrics.jsonl";

/**
 * One line of the log: the step and any named values. Non-finite numbers are stored as null (JSON
 * has no NaN), so a reader sees null where a value was NaN or infinite.
 */
export interface MetricsRecord {
  /** The optimizer updates done when the values were measured. */
  step: number;
  /** The values, e.g. `loss_text`, `loss_visual_semantic`, `loss_total`, `lr`, `tokens_per_s`, `stage`. */
  [key: string]: number | string | boolean | null;
}

/** Options of {@linkcode MetricsWriter.open}. */
export interface MetricsWriterOptions {
  /**
   * The step a resumed run restarts from: records of later steps (written after that checkpoint,
   * before a crash) are dropped first, so the log does not hold those steps twice. Absent: append.
   */
  resumeStep?: number;
}

/** Appends records to `<runDir>/metrics.jsonl`, one line each, written to the file at once. */
export class MetricsWriter {
  /** The path of the log. */
  readonly path: string;
  #file: Deno.FsFile | null;
  #discard = false;
  #encoder = new TextEncoder();

  private constructor(path: string, file: Deno.FsFile | null) {
    this.path = path;
    this.#file = file;
  }

  /**
   * A writer that checks and drops every record: the other ranks of a data-parallel run, whose records
   * rank 0 writes.
   */
  static discarding(runDir: string): MetricsWriter {
    const w = new MetricsWriter(`${runDir}/${METRICS_FILE}`, null);
    w.#discard = true;
    return w;
  }

  /** Opens (creating the run folder and the file when absent) the log of `runDir` for appending. */
  static async open(runDir: string, opts: MetricsWriterOptions = {}): Promise<MetricsWriter> {
    await Deno.mkdir(runDir, { recursive: true });
    const path = `${runDir}/${METRICS_FILE}`;
    if (opts.resumeStep !== undefined) {
      if (!Number.isFinite(opts.resumeStep)) {
        throw new Error(`MetricsWriter.open: resumeStep must be a number, got ${opts.resumeStep}`);
      }
      const text = await readText(path);
      if (text !== null) {
        const kept = parseMetrics(text, path).filter((r) => r.step <= opts.resumeStep!);
        await writeTextAtomic(path, kept.map((r) => JSON.stringify(r) + "\n").join(""));
      }
    }
    // A line cut off by a crash would glue onto the next record: drop it.
    const bytes = await readBytes(path);
    if (bytes && bytes.length > 0 && bytes[bytes.length - 1] !== 10) {
      await Deno.truncate(path, bytes.lastIndexOf(10) + 1);
    }
    const file = await Deno.open(path, { append: true, create: true });
    return new MetricsWriter(path, file);
  }

  /** Appends one record as a JSON line (synchronously, so records land in call order). */
  write(record: MetricsRecord): void {
    if (!this.#file && !this.#discard) throw new Error(`${this.path}: write after close()`);
    if (!Number.isFinite(record.step)) {
      throw new Error(`${this.path}: a metrics record needs a finite "step", got ${record.step}`);
    }
    const clean: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(record)) {
      clean[k] = typeof v === "number" && !Number.isFinite(v) ? null : v;
    }
    if (!this.#file) return; // discarding
    try {
      writeAllSync(this.#file, this.#encoder.encode(JSON.stringify(clean) + "\n"));
    } catch (err) {
      throw namingPath(err, this.path);
    }
  }

  /** Closes the file. Safe to call twice. */
  close(): void {
    this.#file?.close();
    this.#file = null;
  }
}

/**
 * Reads the records of a log (`path` is a run folder or the .jsonl file itself); a missing log reads
 * as no records. A last line cut off by a crash is skipped; any other bad line is an error naming
 * the file and the line.
 */
export async function readMetrics(path: string): Promise<MetricsRecord[]> {
  const file = path.endsWith(".jsonl") ? path : `${path}/${METRICS_FILE}`;
  const text = await readText(file);
  return text === null ? [] : parseMetrics(text, file);
}

/** Parses the text of a log (see {@linkcode readMetrics}); `source` names it in errors. */
export function parseMetrics(text: string, source: string): MetricsRecord[] {
  const lines = text.split("\n");
  const out: MetricsRecord[] = [];
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (line === "") continue;
    const torn = i === lines.length - 1; // no newline after it: the write was cut off
    let rec: unknown;
    try {
      rec = JSON.parse(line);
    } catch (err) {
      if (torn) continue;
      throw new Error(
        `${source}:${i + 1}: not a JSON line (${(err as Error).message}); fix or delete that line`,
      );
    }
    if (rec === null || typeof rec !== "object" || Array.isArray(rec)) {
      if (torn) continue;
      throw new Error(`${source}:${i + 1}: a metrics line must be a JSON object; fix or delete that line`);
    }
    const step = (rec as Record<string, unknown>).step;
    if (typeof step !== "number") {
      if (torn) continue;
      throw new Error(`${source}:${i + 1}: the record has no numeric "step"; fix or delete that line`);
    }
    out.push(rec as MetricsRecord);
  }
  return out;
}

async function readText(path: string): Promise<string | null> {
  const bytes = await readBytes(path);
  return bytes === null ? null : new TextDecoder().decode(bytes);
}

async function readBytes(path: string): Promise<Uint8Array | null> {
  try {
    return await Deno.readFile(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return null;
    throw new Error(`${path}: cannot read the metrics log: ${(err as Error).message}`);
  }
}

function writeAllSync(file: Deno.FsFile, bytes: Uint8Array): void {
  let done = 0;
  while (done < bytes.length) done += file.writeSync(bytes.subarray(done));
}
