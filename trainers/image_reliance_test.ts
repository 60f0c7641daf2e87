import assert from "node:assert/strict";
import { gpuTest } from "../core/testing.ts";
import { AsvrModel } from "../models/asvr_model.ts";
import { TINY, tinyBatch, tinyConfig, writeTinyCodebooks } from "../models/testing.ts";
import { imageReliance } from "./image_reliance.ts";

gpuTest("imageReliance: no gap when every row shows the same image, a gap when they differ", async (e) => {
  const dir = await Deno.makeTempDir();
  try {
    const model = await AsvrModel.build(e, tinyConfig(await writeTinyCodebooks(dir)));
    const batch = tinyBatch([true, true, false, true], 3);
    const distinct = await imageReliance(model, [batch]);
    assert.equal(distinct.batches, 1);
    assert.ok(Math.abs(distinct.gap) > 1e-4, `random weights read their images: ${JSON.stringify(distinct)}`);
    assert.ok(Math.abs(distinct.gap - (distinct.shuffled - distinct.own) / distinct.own) < 1e-12);
    // The same image in every row: rotating changes nothing.
    const size = 3 * TINY.image * TINY.image;
    const same = new Float32Array(batch.pixels!.length);
    for (let r = 0; r < 4; r++) same.set(batch.pixels!.subarray(0, size), r * size);
    const none = await imageReliance(model, [{ ...batch, pixels: same }]);
    assert.equal(none.own, none.shuffled);
    assert.equal(none.gap, 0);
    await assert.rejects(() => imageReliance(model, [tinyBatch([true, false], 4)]), /two or more image rows/);
    await model.dispose();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
