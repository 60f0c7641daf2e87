/**
 * The gradient all-reduce of data-parallel training, timed on this node:
 *
 * ```sh
 * mpirun -np 2 deno run -A bench/allreduce.ts [--mib 16,64,256] [--reps 5] [--json] [--out PATH]
 * ```
 *
 * For each total gradient size S (MiB of f32), every rank holds parameters of 4 Mi elements (16 MiB) each,
 * their gradients summing to S, and times:
 * - `DataParallel.reduce` (trainers/data_parallel.ts) with buckets of 64 and 256 MiB (or S when smaller):
 *   readback, `MPI_Allreduce`, the 1/N scaling and the upload, as a training step runs them;
 * - `Mpi.allReduce` of a host Float32Array of S bytes alone (MPI's own rate on this node);
 * - the readback of every gradient alone, the upload of every gradient alone (`Engine.write`, then a wait)
 *   and the 1/N scaling loop alone, so the framework's time splits.
 *
 * Each measurement: a warm-up, then the median of `--reps` runs, a barrier before each; times are rank 0's.
 * GB/s is S's bytes (10^9) per second. The reduce is checked once per bucket size: afterwards every
 * gradient must equal the mean over ranks of the values each rank wrote (exit 1 otherwise).
 * Rank 0 prints a table, or with `--json` one JSON object per line; `--out PATH` also writes the lines there.
 * @module
 */

import { parseArgs } from "node:util";
import { Engine } from "../core/engine.ts";
import type { Tensor } from "../core/tensor.ts";
import { Mpi } from "../dist/mpi.ts";
import { DataParallel } from "../trainers/data_parallel.ts";

const { values: args } = parseArgs({
  args: Deno.args.filter((a) => a !== "--"),
  options: {
    mib: { type: "string", default: "16,64,256" },
    reps: { type: "string", default: "5" },
    json: { type: "boolean", default: false },
    out: { type: "string" },
  },
});

const MiB = 2 ** 20;
/** Elements per parameter tensor: 4 Mi f32 = 16 MiB. */
const PARAM_ELEMS = 4 * MiB;
const sizes = args.mib.split(",").map(Number);
const reps = Number(args.reps);
if (sizes.some((s) => !(s > 0)) || !(reps >= 1)) {
  console.error(`allreduce: --mib ${args.mib} --reps ${args.reps}: sizes and reps must be positive`);
  Deno.exit(2);
}

const mpi = Mpi.init();
const e = await Engine.create();
const N = mpi.size;

/** One measurement (a jsonl line). */
interface AllReduceRecord {
  what: "allreduce";
  path: string;
  mib: number;
  bucket_mib?: number;
  ranks: number;
  median_s: number;
  gbps: number;
  /** median_s over `mpi host`'s median_s at the same size. */
  ratio_vs_mpi_host?: number;
  reps: number;
  adapter: string;
  mpi: string;
}
const records: AllReduceRecord[] = [];

/** Median seconds of `fn` on rank 0 (every rank runs it): one warm-up, then `reps` runs after a barrier. */
async function medianS(fn: () => Promise<unknown>, warm = true): Promise<number> {
  if (warm) await fn();
  const times: number[] = [];
  for (let r = 0; r < reps; r++) {
    await mpi.barrier();
    const t0 = performance.now();
    await fn();
    times.push((performance.now() - t0) / 1000);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}

/** Rank r's known gradient value at element i: r + 0.25 (i mod 8), exact in f32. */
function known(rank: number, n: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = rank + 0.25 * (i % 8);
  return out;
}

/** Exits every rank with a message when a gradient is not the mean over ranks of `known`. */
async function verify(params: readonly Tensor[], label: string): Promise<void> {
  const base = (N - 1) / 2; // mean over ranks of r
  for (const [k, p] of params.entries()) {
    const g = await p.grad!.read();
    for (let i = 0; i < g.length; i++) {
      const want = base + 0.25 * (i % 8);
      if (Math.abs(g[i] - want) > 1e-5) {
        console.error(
          `allreduce: rank ${mpi.rank}, ${label}: gradient ${k} element ${i} is ${g[i]}, want ${want} ` +
            `(the mean over ${N} ranks)`,
        );
        mpi.abort(1);
      }
    }
  }
}

function emit(r: Omit<AllReduceRecord, "what" | "ranks" | "gbps" | "reps" | "adapter" | "mpi">): void {
  records.push({
    what: "allreduce",
    ...r,
    ranks: N,
    gbps: r.mib * MiB / r.median_s / 1e9,
    reps,
    adapter: e.info.description,
    mpi: mpi.version,
  });
}

for (const mib of sizes) {
  const elems = Math.round(mib * MiB / 4);
  // Parameters of PARAM_ELEMS each (the last one shorter), [n] f32, each with a gradient [n] f32.
  const params: Tensor[] = [];
  for (let at = 0; at < elems; at += PARAM_ELEMS) {
    const n = Math.min(PARAM_ELEMS, elems - at);
    const p = e.param(new Float32Array(n), [n], { name: `w${params.length}` });
    const g = e.empty(p.shape, p.dtype);
    e.untrack(g);
    p.grad = g;
    params.push(p);
  }
  const values = params.map((p) => known(mpi.rank, p.size));
  const writeKnown = () => params.forEach((p, k) => e.write(p.grad!, values[k]));
  writeKnown();
  await e.sync();

  // (b) MPI alone: a host array of S bytes, summed in place.
  const host = new Float32Array(elems).fill(1);
  const mpiS = await medianS(() => mpi.allReduce(host));
  emit({ path: "mpi host", mib, median_s: mpiS });

  // (a) the framework: readback, all-reduce, scale, upload, per bucket (the upload waited for).
  const acc = { count: 1, sums: { total: 1 }, tokens: 1 };
  for (const bucketMib of [...new Set([64, 256].map((b) => Math.min(b, mib)))]) {
    const dp = new DataParallel(mpi, { bucketBytes: bucketMib * MiB });
    writeKnown();
    await e.sync();
    await dp.reduce(params, acc); // the warm-up, checked
    await e.sync();
    await verify(params, `reduce with ${bucketMib} MiB buckets`);
    const s = await medianS(async () => {
      await dp.reduce(params, acc);
      await e.sync();
    }, false);
    emit({ path: "framework reduce", mib, bucket_mib: bucketMib, median_s: s, ratio_vs_mpi_host: s / mpiS });
  }

  // (c) the parts: readback alone, upload alone, the 1/N scaling alone.
  const readS = await medianS(() => Promise.all(params.map((p) => p.grad!.read())));
  emit({ path: "gpu readback", mib, median_s: readS, ratio_vs_mpi_host: readS / mpiS });
  const writeS = await medianS(async () => {
    writeKnown();
    await e.sync();
  });
  emit({ path: "gpu upload", mib, median_s: writeS, ratio_vs_mpi_host: writeS / mpiS });
  const inv = 1 / N;
  const scaleS = await medianS(() => {
    for (let i = 0; i < host.length; i++) host[i] *= inv;
    return Promise.resolve();
  });
  emit({ path: "scale 1/N (host)", mib, median_s: scaleS, ratio_vs_mpi_host: scaleS / mpiS });

  for (const p of params) p.dispose(); // frees the gradient too
}

if (mpi.rank === 0) {
  const lines = records.map((r) => JSON.stringify(r));
  if (args.json) lines.forEach((l) => console.log(l));
  else {
    console.log(`ranks: ${N}, adapter: ${e.info.description}, ${mpi.version}, median of ${reps}`);
    console.log(
      `${"MiB".padStart(6)}  ${"path".padEnd(34)} ${"seconds".padStart(9)} ${"GB/s".padStart(8)}  x MPI host`,
    );
    for (const r of records) {
      const path = r.bucket_mib !== undefined ? `${r.path} (${r.bucket_mib} MiB buckets)` : r.path;
      const ratio = r.ratio_vs_mpi_host !== undefined ? r.ratio_vs_mpi_host.toFixed(2) : "1.00";
      console.log(
        `${String(r.mib).padStart(6)}  ${path.padEnd(34)} ${r.median_s.toFixed(4).padStart(9)} ` +
          `${r.gbps.toFixed(2).padStart(8)}  ${ratio.padStart(10)}`,
      );
    }
  }
  if (args.out) await Deno.writeTextFile(args.out, lines.join("\n") + "\n");
}

await e.close();
await mpi.finalize();
