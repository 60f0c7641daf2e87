import assert from "node:assert/strict";
import { rng, shuffleInPlace } from "../core/random.ts";
import { GROUP_BATCHES, groupByLength, rowLengthEstimate } from "./length_groups.ts";
import type { LlavaRow } from "./llava_json.ts";

/** n rows with seeded lengths in [1, 200], their shuffled order. */
function setup(n: number, seed = 1): { lengths: number[]; order: Int32Array } {
  const r = rng(seed);
  const lengths = Array.from({ length: n }, () => 1 + Math.floor(r() * 200));
  return { lengths, order: shuffleInPlace(Int32Array.from(lengths.keys()), r) };
}

/** Positions a batch is padded to, summed over the full batches of `order`. */
function paddedPositions(order: Int32Array, lengths: number[], B: number): number {
  let sum = 0;
  for (let s = 0; s + B <= order.length; s += B) {
    sum += B * Math.max(...Array.from(order.subarray(s, s + B), (i) => lengths[i]));
  }
  return sum;
}

Deno.test("groupByLength: a permutation whose batches hold neighbouring lengths of their group", () => {
  const B = 4, n = B * GROUP_BATCHES * 2 + 7; // two whole groups and a partial one with a partial batch
  const { lengths, order } = setup(n);
  const out = groupByLength(order, lengths, B, rng(5));
  assert.deepEqual(Array.from(out).sort((a, b) => a - b), Array.from(lengths.keys()));
  const group = B * GROUP_BATCHES;
  for (let g0 = 0; g0 < n; g0 += group) {
    // The group's rows are the same rows as the shuffled order's, only rearranged.
    const end = Math.min(g0 + group, n);
    assert.deepEqual(
      Array.from(out.subarray(g0, end)).sort((a, b) => a - b),
      Array.from(order.subarray(g0, end)).sort((a, b) => a - b),
    );
    // Full batches cover disjoint length ranges: sorted by length, each is a run of consecutive rows.
    const ranges: [number, number][] = [];
    for (let s = g0; s + B <= end; s += B) {
      const ls = Array.from(out.subarray(s, s + B), (i) => lengths[i]);
      ranges.push([Math.min(...ls), Math.max(...ls)]);
    }
    ranges.sort((a, b) => a[0] - b[0]);
    for (let k = 1; k < ranges.length; k++) assert.ok(ranges[k][0] >= ranges[k - 1][1], `group at ${g0}`);
  }
  // The trailing partial batch holds the last group's shortest rows.
  const tail = Array.from(out.subarray(n - 3), (i) => lengths[i]);
  const lastGroup = Array.from(out.subarray(2 * group), (i) => lengths[i]);
  assert.ok(Math.max(...tail) <= Math.min(...lastGroup.slice(0, -3)));
  // Far less padding than the shuffled order.
  const before = paddedPositions(order, lengths, B), after = paddedPositions(out, lengths, B);
  assert.ok(after < 0.8 * before, `${after} vs ${before}`);
});

Deno.test("groupByLength: batch order within a group follows the random draws, not the lengths", () => {
  const B = 2, { lengths, order } = setup(B * GROUP_BATCHES);
  const a = groupByLength(order, lengths, B, rng(1));
  assert.deepEqual(a, groupByLength(order, lengths, B, rng(1)));
  assert.notDeepEqual(a, groupByLength(order, lengths, B, rng(2)));
  // Not simply longest first.
  const firsts = Array.from({ length: GROUP_BATCHES }, (_, k) => lengths[a[k * B]]);
  assert.notDeepEqual(firsts, [...firsts].sort((x, y) => y - x));
});

Deno.test("groupByLength: batch size 1 keeps every row; a bad batch size is an error", () => {
  const { lengths, order } = setup(10);
  const out = groupByLength(order, lengths, 1, rng(0));
  assert.deepEqual(Array.from(out).sort((a, b) => a - b), Array.from(lengths.keys()));
  assert.throws(
    () => groupByLength(order, lengths, 0, rng(0)),
    /batchSize must be a positive integer, got 0/,
  );
});

Deno.test("rowLengthEstimate: words of every turn plus the image's positions", () => {
  const row: LlavaRow = {
    file: "d.json",
    index: 0,
    id: "a",
    image: "a.png",
    conversations: [
      { from: "human", value: "<image>\nWhat colour is  the circle?" },
      { from: "gpt", value: "red" },
    ],
  };
  assert.equal(rowLengthEstimate(row, 16), 5 + 1 + 16);
  const { image: _, ...textOnly } = row;
  assert.equal(rowLengthEstimate(textOnly, 16), 6);
});
