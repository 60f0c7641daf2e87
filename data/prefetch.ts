/**
 * Image prefetching: decode and preprocess images in Web Workers ahead of the training loop, a
 * bounded number of jobs ahead, handing results back in job order.
 *
 * A bad image does not stop the stream: its result is `{ ok: false, path, error }` (the error names
 * the path and the problem) and the worker goes on with the next job, so the caller can skip that
 * row. A worker that dies (it cannot load its module, say) fails every call after it.
 *
 * ```ts ignore
 * const pre = new ImagePrefetcher(rows.map((r) => ({ path: r.image, cfg })), { lookahead: 2 * batch });
 * try {
 *   for await (const r of pre) {
 *     if (!r.ok) { console.warn(r.error); continue; } // skip the row
 *     use(r.pixels); // f32 [3, S, S]
 *   }
 * } finally {
 *   pre.close();
 * }
 * ```
 * @module
 */

import { readImage } from "./image.ts";
import { type ImagePreprocessConfig, preprocess } from "./preprocess.ts";

/** One image to load: its file and its preprocessing (a parsed config). */
export interface ImageJob {
  /** The image file (JPEG, PNG or WebP). */
  path: string;
  /** How to turn it into encoder pixels. */
  cfg: ImagePreprocessConfig;
  /** The largest image file accepted, in bytes (default: `readImage`'s). */
  maxBytes?: number;
}

/** A loaded image: the encoder's pixels and the original size. */
export interface ImageLoaded {
  /** Discriminator: the image loaded. */
  ok: true;
  /** The job's path. */
  path: string;
  /** Normalized pixels, f32 [3, S, S]. */
  pixels: Float32Array;
  /** Width of the decoded file, before preprocessing. */
  width: number;
  /** Height of the decoded file, before preprocessing. */
  height: number;
}

/** An image that failed to load (missing, corrupt, unsupported): the row should be skipped. */
export interface ImageFailed {
  /** Discriminator: the image did not load. */
  ok: false;
  /** The job's path. */
  path: string;
  /** What went wrong, starting with the path. */
  error: string;
}

/** The result of one {@linkcode ImageJob}. */
export type ImageResult = ImageLoaded | ImageFailed;

/** Reads, decodes and preprocesses one image on the calling thread; failures become `ok: false`. */
export async function loadImageJob(job: ImageJob): Promise<ImageResult> {
  try {
    const img = await readImage(job.path, { maxBytes: job.maxBytes });
    return {
      ok: true,
      path: job.path,
      pixels: preprocess(img, job.cfg),
      width: img.width,
      height: img.height,
    };
  } catch (err) {
    return { ok: false, path: job.path, error: (err as Error).message };
  }
}

/** What the prefetcher sends a worker: a job and its sequence number. */
export interface ImageWorkerRequest {
  /** The job's position in the stream. */
  seq: number;
  /** The job. */
  job: ImageJob;
}

/** What a worker sends back: the result of job `seq`. */
export interface ImageWorkerReply {
  /** The job's position in the stream. */
  seq: number;
  /** Its result. */
  result: ImageResult;
}

/** Options of an {@linkcode ImagePrefetcher}. */
export interface ImagePrefetcherOptions {
  /**
   * How many jobs may be loading or loaded but not yet taken (default 8). Two batches' worth keeps the
   * next batch ready while bounding memory: each result holds 3 x S x S floats (1.7 MiB at S = 384).
   */
  lookahead?: number;
  /** How many workers share the jobs (default 1). */
  workers?: number;
}

interface Waiter {
  resolve(r: ImageResult): void;
  reject(e: Error): void;
}

/**
 * Loads images in Web Workers ahead of the consumer. Jobs are given at construction and/or with
 * {@linkcode ImagePrefetcher.push}; {@linkcode ImagePrefetcher.next} returns their results in the
 * order the jobs were given, and iterating the prefetcher yields results until every given job is
 * taken. Call {@linkcode ImagePrefetcher.close} when done: it terminates the workers.
 */
export class ImagePrefetcher {
  readonly #lookahead: number;
  readonly #workers: Worker[] = [];
  readonly #inFlight: number[]; // jobs sent to each worker and not answered, [workers]
  readonly #queue: ImageJob[] = []; // jobs not yet sent, in order; the first has sequence #sent
  readonly #results = new Map<number, ImageResult>(); // answered, not yet taken
  readonly #waiters = new Map<number, Waiter>(); // taken, not yet answered
  #pushed = 0; // jobs given
  #sent = 0; // jobs sent to a worker
  #taken = 0; // jobs whose result next() was asked for
  #failure: Error | null = null;

  /** Starts the workers and sends them the first `lookahead` of `jobs`. */
  constructor(jobs: Iterable<ImageJob> = [], options: ImagePrefetcherOptions = {}) {
    const lookahead = options.lookahead ?? 8;
    const workers = options.workers ?? 1;
    for (const [name, v] of [["lookahead", lookahead], ["workers", workers]] as const) {
      if (!Number.isInteger(v) || v < 1) {
        throw new Error(`ImagePrefetcher: options.${name} is ${v}; use a positive integer`);
      }
    }
    this.#lookahead = lookahead;
    this.#inFlight = new Array<number>(workers).fill(0);
    const url = new URL("./image_worker.ts", import.meta.url).href;
    for (let w = 0; w < workers; w++) {
      const worker = new Worker(url, { type: "module" });
      worker.onmessage = (e: MessageEvent<ImageWorkerReply>) => this.#onReply(w, e.data);
      worker.onerror = (e: ErrorEvent) => {
        e.preventDefault();
        this.#fail(new Error(`ImagePrefetcher: image worker ${w} failed: ${e.message}`));
      };
      this.#workers.push(worker);
    }
    this.push(...jobs);
  }

  /** Adds jobs at the end of the stream. */
  push(...jobs: ImageJob[]): void {
    if (this.#failure) throw this.#failure;
    this.#queue.push(...jobs);
    this.#pushed += jobs.length;
    this.#dispatch();
  }

  /** Jobs given whose results have not been asked for yet. */
  get pending(): number {
    return this.#pushed - this.#taken;
  }

  /** Jobs handed to the workers so far: at most `lookahead` more than the results asked for. */
  get dispatched(): number {
    return this.#sent;
  }

  /**
   * The result of the next job in order (waiting for it if needed). Rejects when no job is pending,
   * after {@linkcode ImagePrefetcher.close}, or when a worker died.
   */
  next(): Promise<ImageResult> {
    if (this.#failure) return Promise.reject(this.#failure);
    if (this.pending === 0) {
      return Promise.reject(new Error("ImagePrefetcher.next: no job pending; push jobs first"));
    }
    const seq = this.#taken++;
    this.#dispatch(); // the taken job frees a slot of the look-ahead
    const ready = this.#results.get(seq);
    if (ready) {
      this.#results.delete(seq);
      return Promise.resolve(ready);
    }
    return new Promise((resolve, reject) => this.#waiters.set(seq, { resolve, reject }));
  }

  /** Yields the results of every pending job, in order (jobs pushed meanwhile included). */
  async *[Symbol.asyncIterator](): AsyncGenerator<ImageResult, void, undefined> {
    while (this.pending > 0) yield await this.next();
  }

  /** Terminates the workers; pending and later `next()` calls reject. Safe to call twice. */
  close(): void {
    this.#fail(new Error("ImagePrefetcher: closed"));
  }

  /** Sends queued jobs while fewer than `lookahead` are loading or waiting to be taken. */
  #dispatch(): void {
    while (this.#queue.length > 0 && this.#sent - this.#taken < this.#lookahead) {
      let w = 0; // the least busy worker
      for (let i = 1; i < this.#workers.length; i++) if (this.#inFlight[i] < this.#inFlight[w]) w = i;
      const request: ImageWorkerRequest = { seq: this.#sent++, job: this.#queue.shift()! };
      this.#inFlight[w]++;
      this.#workers[w].postMessage(request);
    }
  }

  #onReply(w: number, { seq, result }: ImageWorkerReply): void {
    this.#inFlight[w]--;
    const waiter = this.#waiters.get(seq);
    if (waiter) {
      this.#waiters.delete(seq);
      waiter.resolve(result);
    } else {
      this.#results.set(seq, result);
    }
  }

  #fail(err: Error): void {
    if (this.#failure) return;
    this.#failure = err;
    for (const worker of this.#workers) worker.terminate();
    for (const waiter of this.#waiters.values()) waiter.reject(err);
    this.#waiters.clear();
    this.#results.clear();
    this.#queue.length = 0;
  }
}
