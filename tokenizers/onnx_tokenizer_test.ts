import assert from "node:assert/strict";
import {
  type OnnxExpected,
  onnxFixturePath,
  readOnnxExpected,
} from "../tests/fixtures/onnx/onnx_fixtures.ts";
import {
  codesToInt32,
  type OnnxTokenizerConfig,
  OnnxVisualTokenizer,
  parseOnnxTokenizerConfig,
} from "./onnx_tokenizer.ts";

const cfg = (model: string, extra: Partial<OnnxTokenizerConfig> = {}): OnnxTokenizerConfig => ({
  kind: "onnx",
  name: "tiny_rq",
  model,
  ...extra,
});

/** Residual quantization of features [R, C] with codebooks [D, K, C], written out in plain loops. */
function rqCodes(features: number[], codebooks: OnnxExpected["codebooks"]): number[] {
  const [D, K, C] = codebooks.dims;
  const cb = codebooks.data;
  const codes: number[] = [];
  for (let r0 = 0; r0 < features.length; r0 += C) {
    const r = features.slice(r0, r0 + C);
    for (let d = 0; d < D; d++) {
      let best = 0, bestDist = Infinity;
      for (let k = 0; k < K; k++) {
        let dist = 0;
        for (let c = 0; c < C; c++) dist += (r[c] - cb[(d * K + k) * C + c]) ** 2;
        if (dist < bestDist) [best, bestDist] = [k, dist];
      }
      codes.push(best);
      for (let c = 0; c < C; c++) r[c] -= cb[(d * K + best) * C + c];
    }
  }
  return codes;
}

Deno.test("OnnxVisualTokenizer: codes match PyTorch's (and plain RQ of its features) for B = 1 and B = 2", async () => {
  const expected = await readOnnxExpected();
  const tok = await OnnxVisualTokenizer.load(cfg(onnxFixturePath("tokenizer.onnx")));
  try {
    assert.deepEqual(tok.inputNames, ["pixels"]);
    assert.deepEqual(tok.outputNames, ["codes"]);
    assert.deepEqual(tok.inputShape, ["B", 3, 8, 8]);
    for (const [name, c] of Object.entries(expected.cases)) {
      const B = c.pixels.dims[0];
      // The fixture itself: its codes are the RQ of its features under its codebooks.
      assert.deepEqual(c.codes.data, rqCodes(c.features.data, expected.codebooks), `${name}: fixture`);
      const out = await tok.encode(Float32Array.from(c.pixels.data), c.pixels.dims);
      assert.ok(out.codes instanceof Int32Array);
      assert.deepEqual(out.dims, [B, 4, 2], name);
      assert.deepEqual([...out.codes], c.codes.data, name);
    }
  } finally {
    await tok.close();
  }
});

Deno.test("OnnxVisualTokenizer: float features are refused, saying so", async () => {
  await assert.rejects(
    OnnxVisualTokenizer.load(cfg(onnxFixturePath("encoder.onnx"))),
    /^Error: OnnxVisualTokenizer "tiny_rq": .*encoder\.onnx: output "features" is float32: it outputs float features, not integer codes.*OnnxEncoder/,
  );
});

Deno.test("OnnxVisualTokenizer: int64 codes outside int32 range are refused", async () => {
  const tok = await OnnxVisualTokenizer.load(cfg(onnxFixturePath("codes_overflow.onnx")));
  try {
    await assert.rejects(
      tok.encode(new Float32Array(192), [1, 3, 8, 8]),
      /output "codes": code 85899345\d\d at flat index 0 is outside \[0, 2147483647\]/,
    );
  } finally {
    await tok.close();
  }
});

Deno.test("OnnxVisualTokenizer: bad pixels shapes, names and files are named with the fix", async () => {
  const tok = await OnnxVisualTokenizer.load(cfg(onnxFixturePath("tokenizer.onnx"), { outputName: "codes" }));
  try {
    await assert.rejects(
      tok.encode(new Float32Array(4 * 64), [1, 4, 8, 8]),
      /pixels must be \[B, 3, H, W\]; got \[1, 4, 8, 8\]/,
    );
    await assert.rejects(
      tok.encode(new Float32Array(3 * 256), [1, 3, 16, 16]),
      /OnnxVisualTokenizer "tiny_rq": .*input "pixels" expects shape \[B, 3, 8, 8\].*got \[1, 3, 16, 16\]/,
    );
  } finally {
    await tok.close();
  }
  await assert.rejects(
    OnnxVisualTokenizer.load(cfg(onnxFixturePath("tokenizer.onnx"), { inputName: "image" })),
    /has no input named "image"; its inputs are "pixels": set inputName/,
  );
  await assert.rejects(
    OnnxVisualTokenizer.load(cfg("tokenizers/rq.onnx")),
    /^Error: OnnxVisualTokenizer "tiny_rq": model file not found: tokenizers\/rq\.onnx/,
  );
});

Deno.test("codesToInt32: range checks for int64 and int32 codes", () => {
  assert.deepEqual([...codesToInt32(BigInt64Array.from([0n, 5n, 2147483647n]), "t")], [0, 5, 2147483647]);
  assert.deepEqual([...codesToInt32(Int32Array.from([3, 1]), "t")], [3, 1]);
  assert.throws(
    () => codesToInt32(BigInt64Array.from([1n, 2147483648n]), "t"),
    /^Error: t: code 2147483648 at flat index 1 is outside/,
  );
  assert.throws(() => codesToInt32(BigInt64Array.from([-1n]), "t"), /code -1 at flat index 0/);
  assert.throws(() => codesToInt32(Int32Array.from([0, 0, -7]), "t"), /code -7 at flat index 2/);
});

Deno.test("parseOnnxTokenizerConfig: valid configs pass; bad fields are named with what they must be", () => {
  const ok = { kind: "onnx", name: "rq8", model: "rq8.onnx", outputName: "codes" };
  assert.deepEqual(parseOnnxTokenizerConfig(ok, "tok"), ok);
  assert.deepEqual(parseOnnxTokenizerConfig({ ...ok, inputName: undefined }, "tok"), ok);
  assert.throws(
    () => parseOnnxTokenizerConfig({ kind: "onnx", name: "rq8" }, "tok"),
    /^Error: tok\.model: expected the path of an \.onnx file \(missing\)/,
  );
  assert.throws(
    () => parseOnnxTokenizerConfig({ ...ok, kind: "rq" }, "tok"),
    /tok\.kind: unknown kind \(got "rq"\); use one of "onnx"/,
  );
  assert.throws(
    () => parseOnnxTokenizerConfig({ ...ok, inputName: "" }, "tok"),
    /tok\.inputName: .*>=1 characters \(got ""\)/,
  );
  assert.throws(
    () => parseOnnxTokenizerConfig({ ...ok, modelPath: "x.onnx" }, "tok"),
    /tok\.modelPath: unknown field; allowed fields: kind, name, model, inputName, outputName/,
  );
  assert.throws(
    () => parseOnnxTokenizerConfig("rq8.onnx", "tok"),
    /tok: .*expected object, received string \(got "rq8\.onnx"\)/,
  );
});
