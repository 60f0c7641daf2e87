/**
 * Run by dist/mpi_test.ts under `mpirun -np 2` (any size works): each rank runs every collective on known
 * arrays, short ones (one MPI call) and ones longer than `--max-count` (several calls), checks the results,
 * and prints `rank R ok` (or calls `Mpi.abort(1)` on the first wrong one). `--abort CODE`: rank 1 aborts
 * with CODE while the others wait in a barrier.
 * @module
 */

import assert from "node:assert/strict";
import { parseArgs } from "node:util";
import { launcherLocalRank, Mpi } from "../mod.ts";

const args = parseArgs({ options: { "max-count": { type: "string" }, abort: { type: "string" } } });
const maxCount = Number(args.values["max-count"] ?? 5);
const mpi = Mpi.init({ maxCount });
const { rank, size } = mpi;

if (args.values.abort !== undefined) {
  if (rank === 1) mpi.abort(Number(args.values.abort));
  await mpi.barrier(); // never completes: rank 1 is gone, and MPI ends this rank too
  console.log(`rank ${rank} passed a barrier it should not have`);
  Deno.exit(0);
}

/** Sum over ranks of f(r). */
const overRanks = (f: (r: number) => number) =>
  Array.from({ length: size }, (_, r) => f(r)).reduce((a, b) => a + b);

async function checkAllReduce(length: number) {
  const data = Float32Array.from({ length }, (_, i) => rank + i * 0.5);
  const out = await mpi.allReduce(data);
  assert.equal(out, data, "allReduce resolves to its array");
  assert.deepEqual(
    [...data],
    Array.from({ length }, (_, i) => overRanks((r) => r + i * 0.5)),
    `allReduce ${length}`,
  );
}

async function checkReduceScatter(n: number) {
  const input = Float32Array.from({ length: n * size }, (_, j) => rank * 1000 + j);
  const out = await mpi.reduceScatter(input);
  assert.deepEqual(
    [...out],
    Array.from({ length: n }, (_, k) => overRanks((r) => r * 1000 + rank * n + k)),
    `reduceScatter ${n}`,
  );
  // into a given output, a view at an offset of a larger buffer
  const room = new Float32Array(n + 3).fill(-1);
  await mpi.reduceScatter(input, room.subarray(2, 2 + n));
  assert.deepEqual([...room.subarray(2, 2 + n)], [...out], `reduceScatter ${n} into a view`);
  assert.deepEqual(
    [room[0], room[1], room[n + 2]],
    [-1, -1, -1],
    `reduceScatter ${n} wrote outside its output`,
  );
}

async function checkAllGather(n: number) {
  const input = Uint8Array.from({ length: n }, (_, j) => (rank * 16 + j) % 256);
  const out = await mpi.allGather(input);
  assert.deepEqual(
    [...out],
    Array.from({ length: n * size }, (_, i) => (Math.floor(i / n) * 16 + (i % n)) % 256),
    `allGather ${n}`,
  );
  // f16-sized elements from a view at an offset, into a Uint16Array
  const halves = new Uint16Array(n + 1);
  halves.set(Array.from({ length: n }, (_, j) => 0x3c00 + rank * 100 + j), 1);
  const gathered = new Uint16Array(n * size);
  await mpi.allGather(halves.subarray(1), gathered);
  assert.deepEqual(
    [...gathered],
    Array.from({ length: n * size }, (_, i) => 0x3c00 + Math.floor(i / n) * 100 + (i % n)),
    `allGather ${n} of 16-bit elements`,
  );
}

async function checkBroadcast(n: number) {
  const root = size - 1;
  const pattern = Array.from({ length: n }, (_, j) => (j * 7 + 3) % 256);
  const data = rank === root ? Uint8Array.from(pattern) : new Uint8Array(n);
  assert.equal(await mpi.broadcast(data, root), data, "broadcast resolves to its array");
  assert.deepEqual([...data], pattern, `broadcast ${n}`);
}

try {
  assert.ok(["serialized", "multiple"].includes(mpi.threadLevel), `thread level ${mpi.threadLevel}`);
  assert.ok(size >= 2, `size ${size}: run under mpirun -np 2 or more`);
  // one node: the node's ranks are the world's, as the launcher says too
  assert.equal(mpi.localSize, size);
  assert.equal(mpi.localRank, rank);
  const envLocal = launcherLocalRank();
  if (envLocal !== undefined) assert.equal(envLocal, rank);
  assert.equal(Mpi.init(), mpi, "a second init returns the same instance");

  for (const length of [0, 1, maxCount, 2 * maxCount + 3]) {
    await checkAllReduce(length);
    await checkReduceScatter(length);
    await checkAllGather(length);
    await checkBroadcast(length);
  }

  // wrong lengths and roots reject before any MPI call (so every rank stays in step)
  await assert.rejects(mpi.reduceScatter(new Float32Array(size * 2 + 1)), RangeError);
  await assert.rejects(mpi.reduceScatter(new Float32Array(size * 2), new Float32Array(3)), RangeError);
  await assert.rejects(mpi.allGather(new Uint8Array(2), new Uint8Array(2 * size + 1)), RangeError);
  const shared = new Uint8Array(2 * size + 2);
  await assert.rejects(mpi.allGather(shared.subarray(2, 4), shared.subarray(0, 2 * size)), /overlaps/);
  await assert.rejects(mpi.broadcast(new Uint8Array(1), size), RangeError);

  // several collectives called without awaiting in between run in call order on every rank
  const a = new Float32Array([rank, 1]), b = new Uint8Array(3).fill(rank === 0 ? 9 : 0);
  const [sums, bytes] = await Promise.all([mpi.allReduce(a), mpi.broadcast(b, 0), mpi.barrier()]);
  assert.deepEqual([...sums], [overRanks((r) => r), size]);
  assert.deepEqual([...bytes], [9, 9, 9]);

  // the event loop runs while a collective waits: rank 0 enters the barrier 300 ms late, and a 20 ms timer
  // on the other ranks fires before the barrier completes
  if (rank === 0) {
    await new Promise((resolve) => setTimeout(resolve, 300));
    await mpi.barrier();
  } else {
    let fired = false;
    setTimeout(() => fired = true, 20);
    await mpi.barrier();
    assert.ok(fired, "a timer fired while the barrier waited");
  }
  await mpi.barrier();
} catch (e) {
  console.error(`rank ${rank}: ${(e as Error).stack}`);
  mpi.abort(1);
}
console.log(
  `rank ${rank} ok (${mpi.implementation}, ${mpi.library}, ${mpi.version}, thread level ${mpi.threadLevel})`,
);
await mpi.finalize();
