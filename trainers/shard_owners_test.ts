import assert from "node:assert/strict";
import { rng } from "../core/testing.ts";
import { shardLoads, shardOwners } from "./shard_owners.ts";

/** `count` tensor sizes in [1, max], from a seeded generator. */
function sizesOf(count: number, max: number, seed: number): number[] {
  const r = rng(seed);
  return Array.from({ length: count }, () => 1 + Math.floor(r() * max));
}

Deno.test("shardOwners: the module doc's example, by its rule (largest first, to the least loaded)", () => {
  // 40 -> rank 0; 30 -> rank 1; 20 -> rank 1 (30 < 40); 10 -> rank 0 (40 < 50).
  assert.deepEqual(shardOwners([10, 40, 30, 20], 2), [0, 0, 1, 1]);
  assert.deepEqual(shardLoads([10, 40, 30, 20], 2), [50, 50]);
});

Deno.test("shardOwners: every rank computes the same owners from the sizes alone", () => {
  const sizes = sizesOf(50, 1000, 3);
  const first = shardOwners(sizes, 4);
  for (let k = 0; k < 3; k++) assert.deepEqual(shardOwners([...sizes], 4), first);
  // Equal sizes: ties go to the lowest rank, in index order.
  assert.deepEqual(shardOwners([5, 5, 5, 5, 5], 3), [0, 1, 2, 0, 1]);
  // The input is left as it was.
  const copy = [...sizes];
  shardOwners(sizes, 3);
  assert.deepEqual(sizes, copy);
});

Deno.test("shardOwners: every tensor has one owner in range, and the loads add up", () => {
  for (const world of [1, 2, 3, 5, 8]) {
    const sizes = sizesOf(37, 500, world);
    const owners = shardOwners(sizes, world);
    assert.equal(owners.length, sizes.length);
    for (const r of owners) assert.ok(Number.isInteger(r) && r >= 0 && r < world, `owner ${r} of ${world}`);
    const loads = shardLoads(sizes, world);
    assert.equal(loads.length, world);
    assert.equal(loads.reduce((a, b) => a + b, 0), sizes.reduce((a, b) => a + b, 0));
    const byHand = new Array<number>(world).fill(0);
    owners.forEach((r, i) => byHand[r] += sizes[i]);
    assert.deepEqual(loads, byHand);
  }
});

Deno.test("shardOwners: balanced: the loads differ by at most the largest tensor", () => {
  for (let seed = 1; seed <= 20; seed++) {
    const world = 2 + (seed % 6);
    const sizes = sizesOf(10 + seed * 3, seed % 2 ? 100 : 100_000, seed);
    const loads = shardLoads(sizes, world);
    const spread = Math.max(...loads) - Math.min(...loads);
    assert.ok(spread <= Math.max(...sizes), `seed ${seed}: loads ${loads}, largest ${Math.max(...sizes)}`);
  }
  // One huge tensor and many small: the huge one's rank takes nothing more.
  const owners = shardOwners([1000, 1, 1, 1, 1, 1, 1], 2);
  assert.equal(owners[0], 0);
  assert.deepEqual(owners.slice(1), [1, 1, 1, 1, 1, 1]);
  // Every rank gets work when there are at least as many tensors as ranks of equal size.
  assert.ok(shardLoads([7, 7, 7, 7], 4).every((l) => l === 7));
});

Deno.test("shardOwners: one rank owns everything; more ranks than tensors leave some empty", () => {
  assert.deepEqual(shardOwners([3, 1, 4, 1, 5], 1), [0, 0, 0, 0, 0]);
  assert.deepEqual(shardOwners([], 3), []);
  assert.deepEqual(shardOwners([2, 9], 4), [1, 0]);
  assert.deepEqual(shardLoads([2, 9], 4), [9, 2, 0, 0]);
});

Deno.test("shardOwners: a world that is not an integer >= 1 throws", () => {
  for (const world of [0, -1, 1.5, NaN, Infinity]) {
    assert.throws(() => shardOwners([1, 2], world), (err: Error) => {
      assert.ok(err instanceof RangeError);
      assert.match(err.message, /world .* is not >= 1/);
      return true;
    });
  }
  assert.throws(() => shardLoads([1, 2], 0), RangeError);
});
