/**
 * Data-parallel training over MPI ranks: what the trainer does between the micro-batches of a step and
 * its update, so that every rank takes the same step on the gradients of all ranks' rows.
 *
 * - {@linkcode DataParallel.reduce}: each gradient becomes its mean over the ranks, in buckets of
 *   `bucketBytes`: a bucket's gradients are read back from the GPU into one host array, summed over
 *   the ranks (`MPI_Allreduce`), scaled by 1/N and written back, while the next bucket's readback is
 *   already under way. The loss sums and token counts are summed over the ranks (in rank order, in f64,
 *   so every rank gets the same numbers).
 * - {@linkcode DataParallel.agree}: one decision for all ranks (skip the step, stop the run).
 * - With a sharded optimizer (owners from `shardOwners` of shard_owners.ts), each rank updates the
 *   parameters it owns and
 *   {@linkcode DataParallel.shareOwned} sends their new values to the other ranks.
 *
 * Every rank calls the same methods in the same order (they are collectives). Ranks start from the same
 * weights: the same seed initializes them, or they load the same files.
 *
 * ```ts ignore
 * const dp = new DataParallel(Mpi.init(), { bucketBytes: 128 * 2 ** 20 });
 * const acc = await accumulateGrads(setup, myMicroBatches);
 * const all = await dp.reduce(params, acc); // gradients: the mean over the ranks; sums: over the ranks
 * ```
 * @module
 */

import type { Tensor } from "../core/tensor.ts";
import { type Accumulated, settleSums } from "./step.ts";

/** The collectives data parallelism needs: `Mpi` of dist/ has them. */
export interface Collectives {
  /** This process's rank, 0 .. size - 1. */
  readonly rank: number;
  /** The number of ranks. */
  readonly size: number;
  /** Sums `data` over all ranks, in place. */
  allReduce(data: Float32Array): Promise<Float32Array>;
  /** Gathers every rank's bytes (the same length on each) into every rank, rank r's at r x length. */
  allGather(input: ArrayBufferView): Promise<Uint8Array>;
  /** Copies `data` from rank `root` into every other rank's `data`. */
  broadcast<T extends ArrayBufferView>(data: T, root?: number): Promise<T>;
  /** Resolves when every rank has called it. */
  barrier(): Promise<void>;
}

/** Options of {@linkcode DataParallel}. */
export interface DataParallelOptions {
  /** Gradient bytes (as f32) per all-reduce (default 128 MiB); a larger tensor goes alone. */
  bucketBytes?: number;
}

/** Bytes of the fixed-size record each rank contributes to {@linkcode DataParallel.reduce}'s sums. */
const RECORD_BYTES = 16384;

/** What one rank tells the others about its micro-batches. */
interface StepRecord {
  sums: Record<string, number>;
  count: number;
  tokens: number;
}

/** The data-parallel side of a training step; see the module doc. */
export class DataParallel {
  readonly #comm: Collectives;
  readonly #bucketElems: number;
  /** Two host arrays the buckets alternate between (reused: MPI is slower on fresh memory). */
  #hosts: [Float32Array, Float32Array] = [new Float32Array(0), new Float32Array(0)];

  /** Data parallelism over `comm`'s ranks, gradients reduced in buckets of `opts.bucketBytes`. */
  constructor(comm: Collectives, opts: DataParallelOptions = {}) {
    const bytes = opts.bucketBytes ?? 128 * 2 ** 20;
    if (!(bytes >= 4)) throw new RangeError(`DataParallel: bucketBytes ${bytes} is not >= 4`);
    this.#comm = comm;
    this.#bucketElems = Math.floor(bytes / 4);
  }

  /** This process's rank. */
  get rank(): number {
    return this.#comm.rank;
  }

  /** The number of ranks. */
  get size(): number {
    return this.#comm.size;
  }

  /** The collectives underneath. */
  get comm(): Collectives {
    return this.#comm;
  }

  /**
   * Makes each gradient of `params` its mean over the ranks (a missing gradient counts as zeros, and is
   * created) and returns `acc` (its pending loss terms read first) summed over the ranks: the loss sums per term, the micro-batch count and
   * the tokens. The caller's loss was divided by its own micro-batch count, so the mean over ranks is the
   * gradient of the mean over all their micro-batches.
   */
  async reduce(params: readonly Tensor[], acc: Accumulated): Promise<Accumulated> {
    if (acc.pending?.length) await settleSums(params[0].engine, acc); // the loss terms left on the GPU
    const total = await this.#sumRecords({ sums: acc.sums, count: acc.count, tokens: acc.tokens });
    // A bucket is read back through one staging buffer: at most the adapter's largest buffer.
    const maxBuffer = params[0]?.engine.info.limits.maxBufferSize ?? Infinity;
    const buckets = bucketize(params, Math.min(this.#bucketElems, Math.floor(maxBuffer / 4)));
    const largest = Math.max(0, ...buckets.map((b) => b.reduce((n, p) => n + p.size, 0)));
    if (this.#hosts[0].length < largest) this.#hosts = [new Float32Array(largest), new Float32Array(largest)];
    const inv = 1 / this.size;
    let next = buckets.length ? readBucket(buckets[0], this.#hosts[0]) : null;
    for (let k = 0; k < buckets.length; k++) {
      const host = await next!;
      // The next bucket's readback overlaps this one's sum.
      next = k + 1 < buckets.length ? readBucket(buckets[k + 1], this.#hosts[(k + 1) % 2]) : null;
      await this.#comm.allReduce(host);
      for (let i = 0; i < host.length; i++) host[i] *= inv;
      writeBucket(buckets[k], host);
    }
    return { count: total.count, sums: total.sums, tokens: total.tokens };
  }

  /** Each count summed over the ranks (a key missing on a rank counts 0), the same on every rank. */
  async sum(counts: Record<string, number>): Promise<Record<string, number>> {
    return (await this.#sumRecords({ sums: counts, count: 0, tokens: 0 })).sums;
  }

  /**
   * Every rank writes one file into rank 0's folder `dir` (given on rank 0, null elsewhere; all ranks
   * must see it: one node, or a shared file system) with `write(dir)`, which returns the file's name and
   * SHA-256; resolves on every rank, once all are written, to each file's SHA-256 by name.
   */
  async writeEach(
    dir: string | null,
    write: (dir: string) => Promise<{ file: string; sha256: string }>,
  ): Promise<Map<string, string>> {
    const path = new Uint8Array(4096);
    if (this.rank === 0) {
      if (dir === null) throw new Error("DataParallel.writeEach: rank 0 names the folder");
      const bytes = new TextEncoder().encode(dir);
      if (bytes.length > path.length) throw new Error(`DataParallel.writeEach: folder path too long: ${dir}`);
      path.set(bytes);
    }
    await this.#comm.broadcast(path, 0);
    const end = path.indexOf(0);
    const shared = new TextDecoder().decode(end < 0 ? path : path.subarray(0, end));
    const mine = await write(shared);
    const rec = new TextEncoder().encode(JSON.stringify(mine));
    if (rec.length > 1024) throw new Error(`DataParallel.writeEach: file name too long: ${mine.file}`);
    const buf = new Uint8Array(1024).fill(0x20);
    buf.set(rec);
    const all = await this.#comm.allGather(buf);
    const out = new Map<string, string>();
    for (let r = 0; r < this.size; r++) {
      const { file, sha256 } = JSON.parse(new TextDecoder().decode(all.subarray(r * 1024, (r + 1) * 1024)));
      out.set(file, sha256);
    }
    return out;
  }

  /**
   * Rank 0's `value` on every rank (JSON-serializable; other ranks' `value` is ignored): its JSON's
   * length, then the JSON, broadcast from rank 0.
   */
  async shareFromRoot<T>(value: T): Promise<T> {
    const json = this.rank === 0 ? new TextEncoder().encode(JSON.stringify(value)) : null;
    const [length] = await this.#comm.broadcast(new Float64Array([json?.length ?? 0]), 0);
    const bytes = await this.#comm.broadcast(json ?? new Uint8Array(length), 0);
    return this.rank === 0 ? value : JSON.parse(new TextDecoder().decode(bytes));
  }

  /** True on every rank when `flag` is true on any rank (a stop, a non-finite gradient). */
  async any(flag: boolean): Promise<boolean> {
    const v = await this.#comm.allReduce(new Float32Array([flag ? 1 : 0]));
    return v[0] > 0;
  }

  /**
   * After an update in which rank `owners[i]` alone updated `params[i]`: every rank receives each
   * parameter's new values from its owner, one parameter at a time, the owner's next read under way.
   */
  async shareOwned(params: readonly Tensor[], owners: readonly number[]): Promise<void> {
    const e = params[0]?.engine;
    const mine = (i: number) => owners[i] === this.rank;
    const readFrom = (i: number) => mine(i) ? params[i].read() as Promise<Float32Array> : null;
    let next = params.length ? readFrom(0) : null;
    for (let i = 0; i < params.length; i++) {
      const values = mine(i) ? await next! : new Float32Array(params[i].size);
      next = i + 1 < params.length ? readFrom(i + 1) : null;
      await this.#comm.broadcast(values, owners[i]);
      if (!mine(i)) e!.write(params[i], values);
    }
  }

  /** Sums each rank's record in rank order (f64), so every rank holds the same totals. */
  async #sumRecords(own: StepRecord): Promise<StepRecord> {
    const text = new TextEncoder().encode(JSON.stringify(own));
    if (text.length > RECORD_BYTES) {
      throw new Error(`DataParallel: a step's loss terms take ${text.length} bytes, over ${RECORD_BYTES}`);
    }
    const buf = new Uint8Array(RECORD_BYTES).fill(0x20); // spaces: JSON whitespace
    buf.set(text);
    const all = await this.#comm.allGather(buf);
    const out: StepRecord = { sums: {}, count: 0, tokens: 0 };
    const dec = new TextDecoder();
    for (let r = 0; r < this.size; r++) {
      const rec = JSON.parse(
        dec.decode(all.subarray(r * RECORD_BYTES, (r + 1) * RECORD_BYTES)),
      ) as StepRecord;
      for (const [k, v] of Object.entries(rec.sums)) out.sums[k] = (out.sums[k] ?? 0) + v;
      out.count += rec.count;
      out.tokens += rec.tokens;
    }
    return out;
  }
}

/** Consecutive parameters whose gradients fill at most `maxElems` f32 values (a larger one alone). */
function bucketize(params: readonly Tensor[], maxElems: number): Tensor[][] {
  const out: Tensor[][] = [];
  let cur: Tensor[] = [];
  let n = 0;
  for (const p of params) {
    if (cur.length && n + p.size > maxElems) {
      out.push(cur);
      cur = [];
      n = 0;
    }
    cur.push(p);
    n += p.size;
  }
  if (cur.length) out.push(cur);
  return out;
}

/**
 * The gradients of a bucket's parameters, one after the other (zeros for a missing one), read back with
 * one wait into the start of `into`: [sum of sizes].
 */
async function readBucket(bucket: readonly Tensor[], into: Float32Array): Promise<Float32Array> {
  const whole = bucket.filter((p) => p.grad && p.grad.pieces.length === 1).map((p) => p.grad!);
  const read = whole.length ? whole[0].engine.readMany(whole) : Promise.resolve([]);
  const split = bucket.map((p) => p.grad && p.grad.pieces.length > 1 ? p.grad.read() : null);
  const values = await read;
  const out = into.subarray(0, bucket.reduce((s, p) => s + p.size, 0));
  let at = 0, w = 0;
  for (const [i, p] of bucket.entries()) {
    const part = !p.grad ? null : split[i] ? await split[i] : values[w++];
    if (part) out.set(part, at);
    else out.fill(0, at, at + p.size);
    at += p.size;
  }
  return out;
}

/** Writes a bucket's reduced gradients back, creating a missing gradient (untracked, as autograd does). */
function writeBucket(bucket: readonly Tensor[], host: Float32Array): void {
  let at = 0;
  for (const p of bucket) {
    const e = p.engine;
    if (!p.grad) {
      const g = e.empty(p.shape, p.dtype);
      e.untrack(g);
      p.grad = g;
    }
    e.write(p.grad, host.subarray(at, at + p.size));
    at += p.size;
  }
}
