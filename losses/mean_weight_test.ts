import assert from "node:assert/strict";
import { assertClose, gpuTest } from "../core/testing.ts";
import { meanWeight } from "./mean_weight.ts";

gpuTest("meanWeight: 1 / the number of targets that are class ids and not ignored", async (e) => {
  // Counted for 5 classes: 0, 4, 2 -> 3 rows (-100 ignored, 5 and -3 outside [0, 5)).
  const t = e.tensor([0, -100, 4, 5, 2, -3], [6], "i32");
  assertClose(await meanWeight(t, 5).read(), [1 / 3]);
  assertClose(await meanWeight(t, 6).read(), [1 / 4], { label: "5 is a class of 6" });
  assertClose(await meanWeight(t, 5, 0).read(), [1 / 2], { label: "ignore 0: only 4 and 2 count" });
  assert.deepEqual(
    [...await meanWeight(e.tensor([-100, -100], [2], "i32"), 5).read()],
    [1],
    "none counts: 1",
  );
  // More rows than one workgroup's threads.
  const many = Array.from({ length: 1000 }, (_, i) => (i % 4 === 0 ? -100 : i % 7));
  assertClose(await meanWeight(e.tensor(many, [1000], "i32"), 7).read(), [1 / 750]);
  assert.throws(() => meanWeight(e.tensor([1], [1]), 5), /targets must be i32/);
  assert.throws(() => meanWeight(t, 0), /classes must be a positive integer/);
});
