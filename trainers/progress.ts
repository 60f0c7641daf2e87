/**
 * The one-line training progress report:
 * `stage 1/2 step 120/5000 loss_text 2.314 loss_visual 5.120 lr 1.0e-3 1234 tok/s gpu 3.2 GiB eta 1h02m`.
 * Pure formatting functions, and {@linkcode ProgressLine}, which redraws the line in place (`\r`) on a
 * terminal and prints it as plain lines every `intervalSec` seconds otherwise (logs, CI), with the
 * ETA from a smoothed step time. During a long step (many micro-batches), {@linkcode formatMicroBatch}
 * says how far it is: `stage 1/2 step 121/5000: micro-batch 17/64 (1m25s into the step)`.
 *
 * ```ts ignore
 * const progress = new ProgressLine();
 * for (let step = 1; step <= total; step++) {
 *   // ... train ...
 *   progress.update({ step, totalSteps: total, losses: { loss_text: 2.314 }, lr: 1e-3 });
 * }
 * progress.done();
 * ```
 * @module
 */

import { z } from "zod";
import type { LoadProgress } from "../io/params.ts";
import { parseSchema } from "../schema/parse.ts";

/** The fields of one progress line; absent ones are left out. */
export interface ProgressFields {
  /** The stage, 1-based, of `count` stages. */
  stage?: { index: number; count: number };
  /** The optimizer updates done. */
  step: number;
  /** The updates of the whole stage. */
  totalSteps: number;
  /** Named losses, printed in their insertion order with 3 decimals. */
  losses?: Record<string, number>;
  /** The current learning rate. */
  lr?: number;
  /** Throughput in tokens per second. */
  tokensPerSec?: number;
  /** GPU memory in use, in bytes. */
  gpuBytes?: number;
  /** Seconds left. */
  etaSeconds?: number;
}

/** A duration as `42s`, `3m05s`, `1h02m` or `2d03h` ("?" when unknown). */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "?";
  const s = Math.round(seconds);
  const two = (n: number) => String(n).padStart(2, "0");
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${two(s % 60)}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h${two(Math.floor((s % 3600) / 60))}m`;
  return `${Math.floor(s / 86400)}d${two(Math.floor((s % 86400) / 3600))}h`;
}

/** A byte count in binary units: `512 B`, `12.0 KiB`, `3.2 GiB`. */
export function formatBytes(bytes: number): string {
  if (!Number.isFinite(bytes)) return "?";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = bytes, u = 0;
  while (Math.abs(v) >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${v} B` : `${v.toFixed(1)} ${units[u]}`;
}

/**
 * A printer of a long load's (or save's) progress for `print`: `loading llm: 3.2 GiB of 12.6 GiB
 * (120/291 tensors)` for `what` = "loading llm", at most every `intervalSec` seconds, and always for the
 * last tensor.
 */
export function transferProgressPrinter(
  print: (line: string) => void,
  intervalSec = 2,
): (what: string, p: LoadProgress) => void {
  let last = -Infinity;
  return (what, p) => {
    const now = performance.now() / 1000, done = p.tensors === p.totalTensors;
    if (!done && now - last < intervalSec) return;
    last = now;
    print(
      `${what}: ${formatBytes(p.bytes)} of ${
        formatBytes(p.totalBytes)
      } (${p.tensors}/${p.totalTensors} tensors)`,
    );
  };
}

/** A learning rate with two significant digits: `1.0e-3`, `2.5e-5`. */
export function formatLr(lr: number): string {
  return Number.isFinite(lr) ? lr.toExponential(1) : String(lr).toLowerCase();
}

/** A loss with 3 decimals (`nan`, `inf` when not finite). */
export function formatLoss(x: number): string {
  if (Number.isNaN(x)) return "nan";
  if (!Number.isFinite(x)) return x > 0 ? "inf" : "-inf";
  return x.toFixed(3);
}

/** The progress line of `f` (no newline, no control characters). */
export function formatProgress(f: ProgressFields): string {
  const parts: string[] = [];
  if (f.stage) parts.push(`stage ${f.stage.index}/${f.stage.count}`);
  parts.push(`step ${f.step}/${f.totalSteps}`);
  for (const [name, v] of Object.entries(f.losses ?? {})) parts.push(`${name} ${formatLoss(v)}`);
  if (f.lr !== undefined) parts.push(`lr ${formatLr(f.lr)}`);
  if (f.tokensPerSec !== undefined) parts.push(`${Math.round(f.tokensPerSec)} tok/s`);
  if (f.gpuBytes !== undefined) parts.push(`gpu ${formatBytes(f.gpuBytes)}`);
  if (f.etaSeconds !== undefined) parts.push(`eta ${formatDuration(f.etaSeconds)}`);
  return parts.join(" ");
}

/** Where a long optimizer step stands: its micro-batches done so far. */
export interface MicroBatchFields {
  /** The stage, 1-based, of `count` stages. */
  stage?: { index: number; count: number };
  /** The optimizer step under way (1-based within the stage). */
  step: number;
  /** The updates of the whole stage. */
  totalSteps: number;
  /** Micro-batches of the step done. */
  done: number;
  /** Micro-batches in the step (gradAccum). */
  count: number;
  /** Seconds since the step started. */
  seconds?: number;
}

/** The line of a step under way: `stage 1/2 step 121/5000: micro-batch 17/64 (1m25s into the step)`. */
export function formatMicroBatch(f: MicroBatchFields): string {
  return (f.stage ? `stage ${f.stage.index}/${f.stage.count} ` : "") +
    `step ${f.step}/${f.totalSteps}: micro-batch ${f.done}/${f.count}` +
    (f.seconds !== undefined ? ` (${formatDuration(f.seconds)} into the step)` : "");
}

/** Options of {@linkcode ProgressLine}. */
export interface ProgressLineOptions {
  /** Redraw in place (default: whether stdout is a terminal). */
  isTty?: boolean;
  /** Seconds between printed lines when not a terminal (default 30). */
  intervalSec?: number;
  /** Weight of the newest step time in the moving average, in (0, 1] (default 0.1). */
  smoothing?: number;
  /** Where text goes (default: stdout). */
  write?: (text: string) => void;
  /** The clock in milliseconds (default `performance.now`). */
  now?: () => number;
}

// `ProgressLineOptions` is written out because a published type must be (JSR's no-slow-types: not inferred
// from a schema); the schema is typed by it, so the compiler holds the two together. The rules and the
// defaults that are data live here.
const optionsSchema: z.ZodType<
  ProgressLineOptions & { intervalSec: number; smoothing: number },
  ProgressLineOptions
> = z.strictObject({
  isTty: z.boolean().optional(),
  intervalSec: z.number().min(0).default(30),
  smoothing: z.number().gt(0).max(1).default(0.1),
  write: z.custom<(text: string) => void>((v) => typeof v === "function", "must be a function").optional(),
  now: z.custom<() => number>((v) => typeof v === "function", "must be a function").optional(),
});

/**
 * Draws the progress line: in place on a terminal, else as a plain line every `intervalSec`
 * seconds (and at the first and the last step). The ETA is the remaining steps times an
 * exponential moving average of the time per step between calls.
 */
export class ProgressLine {
  #tty: boolean;
  #interval: number;
  #alpha: number;
  #write: (text: string) => void;
  #now: () => number;
  #last: { step: number; t: number } | null = null;
  #stepMs: number | null = null;
  #printedAt = -Infinity;
  #drawn = "";

  /** A progress line; see {@linkcode ProgressLineOptions} for the defaults. */
  constructor(opts: ProgressLineOptions = {}) {
    const o = parseSchema(optionsSchema, opts, "ProgressLine: options");
    this.#tty = o.isTty ?? Deno.stdout.isTerminal();
    this.#interval = o.intervalSec * 1000;
    this.#alpha = o.smoothing;
    const enc = new TextEncoder();
    this.#write = o.write ?? ((text) => {
      const b = enc.encode(text);
      let done = 0;
      while (done < b.length) done += Deno.stdout.writeSync(b.subarray(done));
    });
    this.#now = o.now ?? (() => performance.now());
  }

  /** The smoothed seconds per step (null before two calls with different steps). */
  get secondsPerStep(): number | null {
    return this.#stepMs === null ? null : this.#stepMs / 1000;
  }

  /** Records the time of `fields.step` and draws the line (the ETA is filled in unless given). */
  update(fields: ProgressFields): void {
    const t = this.#now();
    if (this.#last && fields.step > this.#last.step) {
      const ms = (t - this.#last.t) / (fields.step - this.#last.step);
      this.#stepMs = this.#stepMs === null ? ms : this.#alpha * ms + (1 - this.#alpha) * this.#stepMs;
    }
    if (!this.#last || fields.step !== this.#last.step) this.#last = { step: fields.step, t };
    const eta = fields.etaSeconds ??
      (this.#stepMs === null
        ? undefined
        : Math.max(0, fields.totalSteps - fields.step) * this.#stepMs / 1000);
    const line = formatProgress({ ...fields, etaSeconds: eta });
    if (this.#tty) {
      this.#write(`\r${line}\x1b[K`);
      this.#drawn = line;
      return;
    }
    if (t - this.#printedAt >= this.#interval || fields.step >= fields.totalSteps) {
      this.#write(line + "\n");
      this.#printedAt = t;
    }
  }

  /**
   * Draws `line` (e.g. a step's micro-batches, {@linkcode formatMicroBatch}) in place of the progress
   * line on a terminal, else prints it as a plain line; the caller decides how often.
   */
  status(line: string): void {
    if (this.#tty) {
      this.#write(`\r${line}\x1b[K`);
      this.#drawn = line;
    } else this.#write(line + "\n");
  }

  /** Prints a message on its own line, keeping the progress line below it on a terminal. */
  message(text: string): void {
    if (this.#tty && this.#drawn) this.#write(`\r\x1b[K${text}\n${this.#drawn}`);
    else this.#write(text + "\n");
  }

  /** Ends the line on a terminal (call once training ends). */
  done(): void {
    if (this.#tty && this.#drawn) this.#write("\n");
    this.#drawn = "";
  }
}
