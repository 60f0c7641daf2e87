import assert from "node:assert/strict";
import { parseVisualTokenizerConfig, type VisualTokenizerConfig } from "./visual_config.ts";

Deno.test("parseVisualTokenizerConfig fills the rq defaults of the semantic recipe", () => {
  const cfg = parseVisualTokenizerConfig(
    { kind: "rq", name: "semantic", codebooks: "cb.safetensors" },
    "head.tokenizer",
  );
  assert.deepEqual(cfg, {
    kind: "rq",
    name: "semantic",
    encoder: "input",
    layer: 26,
    depths: 8,
    codebookSize: 16384,
    sharedCodebook: false,
    codebooks: "cb.safetensors",
  });
});

Deno.test("parseVisualTokenizerConfig keeps given values: pixel tokenizer, shared codebook, onnx", () => {
  const pixel = {
    kind: "rq",
    name: "pixel",
    encoder: "models/siglip",
    layer: "pixels",
    depths: 4,
    codebookSize: 65536,
    sharedCodebook: true,
    codebooks: "p.safetensors",
  };
  assert.deepEqual(parseVisualTokenizerConfig(pixel, "t"), pixel);
  assert.deepEqual(parseVisualTokenizerConfig({ ...pixel, layer: 6 }, "t"), { ...pixel, layer: 6 });
  const onnx = { kind: "onnx", name: "semantic", model: "tok.onnx", outputName: "codes" };
  assert.deepEqual(parseVisualTokenizerConfig(onnx, "t"), onnx);
});

Deno.test("parseVisualTokenizerConfig errors name the path, the field, the value and what is allowed", () => {
  const base = { kind: "rq", name: "semantic", codebooks: "cb.safetensors" };
  const cases: [unknown, RegExp][] = [
    [{ ...base, kind: "vq" }, /cfg\.tok\.kind is "vq"; it must be one of "rq", "onnx"$/],
    [{ name: "x" }, /cfg\.tok\.kind is missing; it must be one of "rq", "onnx"/],
    [
      { ...base, layer: "last" },
      /cfg\.tok\.layer is "last"; it must be an integer >= 0 \(the encoder layer, e\.g\. 26\) or "pixels"/,
    ],
    [{ ...base, layer: -1 }, /cfg\.tok\.layer is -1/],
    [{ ...base, depths: 0 }, /cfg\.tok\.depths is 0; it must be an integer >= 1/],
    [
      { ...base, codebookSize: 70000 },
      /cfg\.tok\.codebookSize is 70000; it must be an integer in \[1, 65536\] \(targets are cached as u16/,
    ],
    [{ ...base, sharedCodebook: "no" }, /cfg\.tok\.sharedCodebook is "no"; it must be true or false/],
    [
      { kind: "rq", name: "semantic" },
      /cfg\.tok\.codebooks is missing; it must be the path of a codebooks \.safetensors file/,
    ],
    [{ ...base, name: "" }, /cfg\.tok\.name is ""/],
    [
      { ...base, codebook: "x" },
      /cfg\.tok: unknown field "codebook" for a visual tokenizer of kind "rq"; allowed: kind, name, encoder, layer/,
    ],
    // kind "onnx" is checked by onnx_tokenizer.ts's parser, under the same path.
    [
      { kind: "onnx", name: "s" },
      /cfg\.tok: onnx tokenizer model is missing; it must be the path of an \.onnx file/,
    ],
    [
      { kind: "onnx", name: "s", model: "m.onnx", depths: 8 },
      /cfg\.tok: onnx tokenizer has unknown field\(s\) depths/,
    ],
    ["rq", /cfg\.tok: a visual tokenizer config must be an object with a "kind"/],
  ];
  for (const [value, re] of cases) {
    assert.throws(() => parseVisualTokenizerConfig(value, "cfg.tok"), re, JSON.stringify(value));
  }
});

Deno.test("VisualTokenizerConfig kinds are handled exhaustively", () => {
  const describe = (c: VisualTokenizerConfig): string => {
    switch (c.kind) {
      case "rq":
        return `${c.name}: RQ ${c.depths}x${c.codebookSize} of layer ${c.layer}`;
      case "onnx":
        return `${c.name}: ONNX ${c.model}`;
      default: {
        const never: never = c;
        return never;
      }
    }
  };
  assert.equal(
    describe(parseVisualTokenizerConfig({ kind: "rq", name: "semantic", codebooks: "c" }, "t")),
    "semantic: RQ 8x16384 of layer 26",
  );
});
