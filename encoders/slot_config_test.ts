import assert from "node:assert/strict";
import {
  gpuVisionSlot,
  keepsClsRow,
  onnxEncoderSlot,
  parseEncoderSlot,
  type VisionEncoderSlotConfig,
} from "./slot_config.ts";

const SIZES = {
  hiddenSize: 32,
  intermediateSize: 64,
  numLayers: 2,
  numHeads: 2,
  imageSize: 28,
  patchSize: 7,
};

Deno.test("parseEncoderSlot fills the defaults and the family's sizes; parsing is idempotent", () => {
  const enc = parseEncoderSlot({ kind: "clip", config: SIZES }, "encoder") as VisionEncoderSlotConfig;
  assert.deepEqual(enc, {
    kind: "clip",
    config: { ...SIZES, layerNormEps: 1e-5, act: "quick_gelu" }, // CLIP's defaults
    layer: -2,
    keepCls: false,
    input: "continuous",
    inputTokenizer: "semantic",
  });
  assert.deepEqual(parseEncoderSlot(enc, "encoder"), enc);
  const loaded = parseEncoderSlot({ kind: "siglip", path: "/m/siglip", layer: undefined }, "encoder");
  assert.deepEqual(parseEncoderSlot(loaded, "encoder"), loaded);
  assert.equal("layer" in loaded && loaded.layer, -2);
  const onnx = { kind: "onnx", path: "enc.onnx", outputName: "features" };
  assert.deepEqual(parseEncoderSlot({ ...onnx, inputName: undefined }, "encoder"), onnx);
});

Deno.test("parseEncoderSlot: errors name the path, the value and what is allowed", () => {
  const bad = (value: unknown, re: RegExp) => assert.throws(() => parseEncoderSlot(value, "encoder"), re);
  bad(
    { kind: "vit", path: "p" },
    /encoder\.kind: unknown kind \(got "vit"\); use one of "siglip", "clip", "onnx"/,
  );
  bad({ kind: "siglip", path: "p", layer: 1.5 }, /encoder\.layer: .*expected int.* \(got 1\.5\)/);
  bad({ kind: "siglip", config: SIZES, layer: 3 }, /encoder\.layer is 3, out of range for 2 layers/);
  bad(
    { kind: "siglip", config: { ...SIZES, numHeads: 3 } },
    /encoder\.config: hidden_size 32 is not a multiple/,
  );
  bad({ kind: "siglip", config: { ...SIZES, width: 3 } }, /encoder\.config\.width: unknown field/);
  bad({ kind: "siglip", path: "p", config: SIZES }, /encoder: give either path .* or config .*, not both/);
  bad({ kind: "siglip" }, /encoder: give path \(a Hugging Face vision folder to load\) or config/);
  bad(
    { kind: "onnx", layer: -2, path: "e.onnx" },
    /encoder\.layer: unknown field; allowed fields: kind, path/,
  );
  bad("siglip", /encoder: .*expected object, received string/);
});

Deno.test("gpuVisionSlot, onnxEncoderSlot and keepsClsRow: what the other slots read of the encoder", () => {
  const clip = parseEncoderSlot({ kind: "clip", path: "p", keepCls: true }, "encoder");
  const siglip = parseEncoderSlot({ kind: "siglip", path: "p", keepCls: true }, "encoder");
  const onnx = parseEncoderSlot({ kind: "onnx", path: "e.onnx" }, "encoder");
  assert.equal(gpuVisionSlot(clip), clip);
  assert.equal(gpuVisionSlot(onnx), null);
  assert.equal(onnxEncoderSlot(onnx), onnx);
  assert.equal(onnxEncoderSlot(clip), null);
  assert.equal(keepsClsRow(clip), true);
  assert.equal(keepsClsRow(siglip), false); // SigLIP has no CLS token
  assert.equal(keepsClsRow(onnx), false);
});
