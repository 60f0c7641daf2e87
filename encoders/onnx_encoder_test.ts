import assert from "node:assert/strict";
import { assertClose } from "../core/testing.ts";
import { onnxFixturePath, readOnnxExpected } from "../tests/fixtures/onnx/onnx_fixtures.ts";
import { OnnxEncoder } from "./onnx_encoder.ts";

const ENCODER = onnxFixturePath("encoder.onnx");

Deno.test("OnnxEncoder: features match PyTorch's for B = 1 and B = 2", async () => {
  const expected = await readOnnxExpected();
  const enc = await OnnxEncoder.load(ENCODER);
  try {
    assert.equal(enc.path, ENCODER);
    assert.deepEqual(enc.inputNames, ["pixels"]);
    assert.deepEqual(enc.outputNames, ["features"]);
    assert.deepEqual(enc.inputShape, ["B", 3, 8, 8]);
    for (const [name, c] of Object.entries(expected.cases)) {
      assert.deepEqual(c.features.dims, [c.pixels.dims[0], 4, 6], `${name}: fixture shape`);
      const out = await enc.run(Float32Array.from(c.pixels.data), c.pixels.dims);
      assert.ok(out.data instanceof Float32Array);
      assert.deepEqual(out.dims, c.features.dims, name);
      assertClose(out.data, c.features.data, { atol: 1e-5, rtol: 1e-5, label: name });
    }
  } finally {
    await enc.close();
  }
});

Deno.test("OnnxEncoder: the same input and output named explicitly; wrong names list the model's", async () => {
  const enc = await OnnxEncoder.load(ENCODER, { inputName: "pixels", outputName: "features" });
  const out = await enc.run(new Float32Array(192).fill(0.5), [1, 3, 8, 8]);
  assert.deepEqual(out.dims, [1, 4, 6]);
  await enc.close();
  await assert.rejects(
    OnnxEncoder.load(ENCODER, { inputName: "pixel_values" }),
    /^Error: OnnxEncoder: .*encoder\.onnx has no input named "pixel_values"; its inputs are "pixels"/,
  );
  await assert.rejects(
    OnnxEncoder.load(ENCODER, { outputName: "pooler_output" }),
    /OnnxEncoder: .*has no output named "pooler_output"; its outputs are "features"/,
  );
});

Deno.test("OnnxEncoder: a wrong input shape names the expected one", async () => {
  const enc = await OnnxEncoder.load(ENCODER);
  try {
    await assert.rejects(
      enc.run(new Float32Array(3 * 12 * 12), [1, 3, 12, 12]),
      /^Error: OnnxEncoder: .*encoder\.onnx: input "pixels" expects shape \[B, 3, 8, 8\].*got \[1, 3, 12, 12\]/,
    );
    await assert.rejects(enc.run(new Float32Array(4 * 64), [1, 4, 8, 8]), /expects shape \[B, 3, 8, 8\]/);
  } finally {
    await enc.close();
  }
  await assert.rejects(enc.run(new Float32Array(192), [1, 3, 8, 8]), /OnnxEncoder: .* is closed/);
});

Deno.test("OnnxEncoder: a missing file is named with the fix", async () => {
  await assert.rejects(
    OnnxEncoder.load("models/siglip.onnx"),
    /^Error: OnnxEncoder: model file not found: models\/siglip\.onnx \(looked at .*\); check the path .* export the model/,
  );
});

Deno.test("OnnxEncoder: a model with integer outputs is pointed to OnnxVisualTokenizer", async () => {
  await assert.rejects(
    OnnxEncoder.load(onnxFixturePath("tokenizer.onnx")),
    /OnnxEncoder: .*tokenizer\.onnx: output "codes" is int64, not float32 features; .*OnnxVisualTokenizer/,
  );
});
