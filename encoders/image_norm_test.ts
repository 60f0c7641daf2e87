import assert from "node:assert/strict";
import { CLIP_NORM, SIGLIP_NORM } from "../data/preprocess.ts";
import { imageNorm } from "./image_norm.ts";

Deno.test("imageNorm: each family's normalization, the same as the preprocessing's", () => {
  assert.deepEqual(imageNorm({ arch: "siglip" }), SIGLIP_NORM);
  assert.deepEqual(imageNorm({ arch: "clip" }), CLIP_NORM);
});
