import assert from "node:assert/strict";
import {
  isRqTokenizer,
  parseVisualTokenizerConfig,
  rqTokenizers,
  tokenizerFile,
  tokenizerSizes,
  type VisualTokenizerConfig,
} from "./visual_config.ts";

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
    [{ ...base, kind: "vq" }, /cfg\.tok\.kind: unknown kind \(got "vq"\); use one of "rq", "onnx"$/],
    [{ name: "x" }, /cfg\.tok\.kind: unknown kind \(missing\); use one of "rq", "onnx"/],
    [
      { ...base, layer: "last" },
      /cfg\.tok\.layer: expected an integer >= 0 \(the encoder layer, e\.g\. 26\) or "pixels" \(got "last"\)/,
    ],
    [{ ...base, layer: -1 }, /cfg\.tok\.layer: .* \(got -1\)/],
    [{ ...base, depths: 0 }, /cfg\.tok\.depths: .*expected number to be >=1 \(got 0\)/],
    [
      { ...base, codebookSize: 70000 },
      /cfg\.tok\.codebookSize: Too big: at most 65536 \(targets are cached as u16; e\.g\. 16384\) \(got 70000\)/,
    ],
    [{ ...base, sharedCodebook: "no" }, /cfg\.tok\.sharedCodebook: .*expected boolean.* \(got "no"\)/],
    [
      { kind: "rq", name: "semantic" },
      /cfg\.tok\.codebooks: expected the path of a codebooks \.safetensors file .*tokenizer fit.* \(missing\)/,
    ],
    [{ ...base, name: "" }, /cfg\.tok\.name: .* \(got ""\)/],
    [
      { ...base, codebook: "x" },
      /cfg\.tok\.codebook: unknown field; allowed fields: kind, name, encoder, layer/,
    ],
    // kind "onnx" is checked by onnx_tokenizer.ts's parser, under the same path.
    [{ kind: "onnx", name: "s" }, /cfg\.tok\.model: expected the path of an \.onnx file \(missing\)/],
    [
      { kind: "onnx", name: "s", model: "m.onnx", depths: 8 },
      /cfg\.tok\.depths: unknown field; allowed fields: kind, name, model/,
    ],
    ["rq", /cfg\.tok: .*expected object, received string \(got "rq"\)/],
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

Deno.test("tokenizerSizes, rqTokenizers and tokenizerFile: what the other slots read of the tokenizers", () => {
  const rq = parseVisualTokenizerConfig({
    kind: "rq",
    name: "semantic",
    depths: 2,
    codebookSize: 8,
    codebooks: "c",
  }, "t");
  const onnx = parseVisualTokenizerConfig({ kind: "onnx", name: "pixel", model: "p.onnx" }, "t");
  assert.deepEqual(tokenizerSizes([rq, onnx]), [
    { name: "semantic", depths: 2, codebookSize: 8, hasCodebooks: true },
    { name: "pixel", hasCodebooks: false },
  ]);
  assert.equal(isRqTokenizer(rq), true);
  assert.equal(isRqTokenizer(onnx), false);
  assert.deepEqual(rqTokenizers([onnx, rq]), [rq]);
  assert.deepEqual(tokenizerFile(rq, "visualTokenizers[0]"), {
    field: "visualTokenizers[0].codebooks",
    path: "c",
    fix:
      `fit codebooks with \`deno task tokenizer fit\` (residual k-means on the encoder's features) or give a safetensors file with tensor "codebooks" [D, K, Dc]`,
  });
  assert.deepEqual(tokenizerFile(onnx, "visualTokenizers[1]"), {
    field: "visualTokenizers[1].model",
    path: "p.onnx",
    fix: "an ONNX file of the visual tokenizer",
  });
});
