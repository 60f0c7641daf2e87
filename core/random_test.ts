import assert from "node:assert/strict";
import { rng, shuffleInPlace } from "./random.ts";

Deno.test("shuffleInPlace: a permutation in place, the same for the same draws, every order about equally often", () => {
  const a = Int32Array.from([0, 1, 2, 3, 4, 5, 6, 7]);
  assert.equal(shuffleInPlace(a, rng(3)), a);
  assert.deepEqual(Array.from(a).sort(), [0, 1, 2, 3, 4, 5, 6, 7]);
  assert.deepEqual(shuffleInPlace([0, 1, 2, 3, 4, 5, 6, 7], rng(3)), Array.from(a));
  assert.deepEqual(shuffleInPlace([7], rng(0)), [7]);
  // 6000 shuffles of 3 elements: each of the 6 orders ~1000 times.
  const r = rng(11), counts = new Map<string, number>();
  for (let k = 0; k < 6000; k++) {
    const key = shuffleInPlace(["a", "b", "c"], r).join("");
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  assert.equal(counts.size, 6);
  for (const [order, n] of counts) assert.ok(n > 850 && n < 1150, `${order}: ${n}`);
});
