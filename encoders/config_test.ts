import assert from "node:assert/strict";
import { type VisionConfig, visionConfigFromHf, visionConfigToHf } from "./config.ts";

// google/siglip-so400m-patch14-384's vision_config as published: defaults omitted.
const SO400M = {
  hidden_size: 1152,
  image_size: 384,
  intermediate_size: 4304,
  model_type: "siglip_vision_model",
  num_attention_heads: 16,
  num_hidden_layers: 27,
  patch_size: 14,
};

// openai/clip-vit-large-patch14-336's vision_config fields.
const CLIP_L336 = {
  model_type: "clip_vision_model",
  hidden_act: "quick_gelu",
  hidden_size: 1024,
  image_size: 336,
  intermediate_size: 4096,
  layer_norm_eps: 1e-5,
  num_attention_heads: 16,
  num_hidden_layers: 24,
  patch_size: 14,
  projection_dim: 768,
};

Deno.test("visionConfigFromHf: SigLIP vision config, omitted fields take transformers' defaults", () => {
  const cfg = visionConfigFromHf(SO400M, "so400m/config.json");
  assert.deepEqual(
    cfg,
    {
      arch: "siglip",
      hiddenSize: 1152,
      intermediateSize: 4304,
      numLayers: 27,
      numHeads: 16,
      imageSize: 384,
      patchSize: 14,
      layerNormEps: 1e-6,
      act: "gelu_tanh",
    } satisfies VisionConfig,
  );
});

Deno.test("visionConfigFromHf: CLIP vision config", () => {
  const cfg = visionConfigFromHf(CLIP_L336, "clip/config.json");
  assert.deepEqual(
    cfg,
    {
      arch: "clip",
      hiddenSize: 1024,
      intermediateSize: 4096,
      numLayers: 24,
      numHeads: 16,
      imageSize: 336,
      patchSize: 14,
      layerNormEps: 1e-5,
      act: "quick_gelu",
    } satisfies VisionConfig,
  );
  // CLIP's defaults differ from SigLIP's: patch 32, eps 1e-5, quick GELU.
  const bare = visionConfigFromHf({ model_type: "clip_vision_model" }, "c.json");
  assert.equal(bare.patchSize, 32);
  assert.equal(bare.layerNormEps, 1e-5);
  assert.equal(bare.act, "quick_gelu");
  assert.equal(visionConfigFromHf({ model_type: "siglip_vision_model" }, "s.json").patchSize, 16);
});

Deno.test("visionConfigFromHf: full model configs with a nested vision_config", () => {
  const siglip = visionConfigFromHf(
    { model_type: "siglip", text_config: { hidden_size: 1152 }, vision_config: SO400M },
    "siglip/config.json",
  );
  assert.equal(siglip.arch, "siglip");
  assert.equal(siglip.numLayers, 27);
  // A nested vision_config without its own model_type takes the outer family.
  const { model_type: _, ...inner } = CLIP_L336;
  const clip = visionConfigFromHf({ model_type: "clip", vision_config: inner }, "clip/config.json");
  assert.equal(clip.arch, "clip");
  assert.equal(clip.hiddenSize, 1024);
  assert.throws(
    () => visionConfigFromHf({ model_type: "clip", vision_config: SO400M }, "mixed.json"),
    /mixed\.json: vision_config\.model_type "siglip_vision_model" does not match "clip"/,
  );
  assert.throws(
    () => visionConfigFromHf({ model_type: "siglip" }, "nov.json"),
    /nov\.json: model_type "siglip" needs a "vision_config" object/,
  );
});

Deno.test("visionConfigFromHf: unknown model_type refused, listing the supported ones", () => {
  assert.throws(
    () => visionConfigFromHf({ model_type: "llama", hidden_size: 4096 }, "llm/config.json"),
    (err: Error) => {
      assert.match(err.message, /llm\/config\.json: model_type "llama" is not a supported vision encoder/);
      for (const t of ["siglip_vision_model", "clip_vision_model", "siglip", "clip"]) {
        assert.ok(err.message.includes(t), `message lists ${t}: ${err.message}`);
      }
      return true;
    },
  );
  assert.throws(() => visionConfigFromHf({}, "empty.json"), /empty\.json: model_type undefined/);
  assert.throws(
    () => visionConfigFromHf([1], "arr.json"),
    /arr\.json: a vision config must be a JSON object/,
  );
});

Deno.test("visionConfigFromHf: bad fields named with the file and the fix", () => {
  const bad = (patch: Record<string, unknown>, re: RegExp) =>
    assert.throws(() => visionConfigFromHf({ ...SO400M, ...patch }, "m/config.json"), re);
  bad({ hidden_size: -4 }, /m\/config\.json\.hidden_size: .*expected number to be >0 \(got -4\)/);
  bad({ patch_size: "14" }, /m\/config\.json\.patch_size: .*expected number, received string \(got "14"\)/);
  bad({ layer_norm_eps: 0 }, /m\/config\.json\.layer_norm_eps: .*expected number to be >0 \(got 0\)/);
  bad({ num_channels: 1 }, /m\/config\.json\.num_channels: expected 3 \(RGB images\) \(got 1\)/);
  bad(
    { hidden_act: "relu" },
    /m\/config\.json\.hidden_act: expected a supported activation, one of .*gelu_pytorch_tanh.* \(got "relu"\)/,
  );
  bad({ num_attention_heads: 5 }, /hidden_size 1152 is not a multiple of num_attention_heads 5/);
  bad({ image_size: 10 }, /patch_size 14 is larger than image_size 10/);
  assert.throws(
    () => visionConfigFromHf({ model_type: "clip", vision_config: { hidden_size: 0 } }, "n.json"),
    /n\.json\.vision_config\.hidden_size: .*expected number to be >0 \(got 0\)/,
  );
});

Deno.test("visionConfigToHf: reads back to the same config", () => {
  for (const src of [SO400M, CLIP_L336]) {
    const cfg = visionConfigFromHf(src, "x.json");
    assert.deepEqual(visionConfigFromHf(visionConfigToHf(cfg), "y.json"), cfg);
  }
  const gelu = visionConfigFromHf({ ...SO400M, hidden_act: "gelu" }, "g.json");
  assert.equal(gelu.act, "gelu");
  assert.equal(visionConfigToHf(gelu).hidden_act, "gelu");
  assert.equal(visionConfigToHf(visionConfigFromHf(SO400M, "s")).hidden_act, "gelu_pytorch_tanh");
});
