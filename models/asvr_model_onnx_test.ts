import assert from "node:assert/strict";
import { assertClose, gpuTest } from "../core/testing.ts";
import { onnxFixturePath, readOnnxExpected } from "../tests/fixtures/onnx/onnx_fixtures.ts";
import { type AsvrBatch, AsvrModel } from "./asvr_model.ts";
import type { AsvrConfigInput } from "./config.ts";

// The ONNX fixtures: encoder.onnx (pixels [B, 3, 8, 8] -> features [B, 4, 6]) and tokenizer.onnx
// (-> codes [B, 4, 2], K = 5), run on the CPU by precompute().
const CONFIG: AsvrConfigInput = {
  encoder: { kind: "onnx", path: onnxFixturePath("encoder.onnx") },
  projector: { kind: "linear", inDim: 6 },
  llm: {
    kind: "qwen2",
    config: { vocabSize: 32, hiddenSize: 16, intermediateSize: 32, numLayers: 1, numHeads: 2 },
  },
  visualTokenizers: [{ kind: "onnx", name: "semantic", model: onnxFixturePath("tokenizer.onnx") }],
  head: { kind: "linear", width: 16, depths: 2, codebookSizes: [5, 5] },
};

/** Two rows of T = 1 + 4 + 3 tokens: the image at positions 1..4 of row 0; row 1 text only. */
function batch(pixels: Float32Array): AsvrBatch {
  const T = 8;
  const inputIds = Int32Array.from([1, -200, -200, -200, -200, 7, 8, 9, 1, 4, 5, 6, 7, 8, 9, 10]);
  const labels = Int32Array.from(inputIds, (id, j) => (j % T >= 5 || (j >= T && j % T >= 1) ? id : -100));
  return { inputIds, labels, imagePositions: [[1, 2, 3, 4], []], pixels, hasImage: [true, false] };
}

gpuTest("AsvrModel with an ONNX encoder and tokenizer: precompute, then forward", async (e) => {
  const expected = await readOnnxExpected();
  const pixels = Float32Array.from(expected.cases.b2.pixels.data);
  const m = await AsvrModel.build(e, CONFIG);
  const b = batch(pixels);
  assert.throws(
    () => m.forward(b),
    /the ONNX encoder runs on the CPU: call `batch = await model\.precompute\(batch\)` first/,
  );
  const ready = await m.precompute(b);
  // Row 0's features and codes are the fixture's; row 1 (text only) saw a zero image.
  assertClose(ready.features!.subarray(0, 24), expected.cases.b2.features.data.slice(0, 24), { atol: 1e-5 });
  assert.deepEqual(
    Array.from(ready.codes!.semantic.subarray(0, 8)),
    expected.cases.b2.codes.data.slice(0, 8),
  );
  const terms = e.tidy(() => m.forward(ready).terms);
  const values: Record<string, number> = {};
  for (const [k, t] of Object.entries(terms)) values[k] = (await t.read())[0];
  assert.deepEqual(Object.keys(values).sort(), ["text", "total", "visual_semantic"]);
  for (const [k, v] of Object.entries(values)) assert.ok(Number.isFinite(v) && v > 0, `${k} = ${v}`);
  await m.dispose();
});
