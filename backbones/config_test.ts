import assert from "node:assert/strict";
import { checkLlmConfig, type LlmConfig, llmConfigFromHf, llmConfigToHf } from "./config.ts";

// The config.json files of real checkpoints, as published (extra keys included).
const VICUNA_7B = {
  _name_or_path: "vicuna-7b-v1.5",
  architectures: ["LlamaForCausalLM"],
  bos_token_id: 1,
  eos_token_id: 2,
  hidden_act: "silu",
  hidden_size: 4096,
  initializer_range: 0.02,
  intermediate_size: 11008,
  max_position_embeddings: 4096,
  model_type: "llama",
  num_attention_heads: 32,
  num_hidden_layers: 32,
  num_key_value_heads: 32,
  pad_token_id: 0,
  pretraining_tp: 1,
  rms_norm_eps: 1e-5,
  rope_scaling: null,
  tie_word_embeddings: false,
  torch_dtype: "float16",
  transformers_version: "4.31.0",
  use_cache: true,
  vocab_size: 32000,
};

const MISTRAL_7B = {
  architectures: ["MistralForCausalLM"],
  bos_token_id: 1,
  eos_token_id: 2,
  hidden_act: "silu",
  hidden_size: 4096,
  initializer_range: 0.02,
  intermediate_size: 14336,
  max_position_embeddings: 32768,
  model_type: "mistral",
  num_attention_heads: 32,
  num_hidden_layers: 32,
  num_key_value_heads: 8,
  rms_norm_eps: 1e-5,
  rope_theta: 10000.0,
  sliding_window: 4096,
  tie_word_embeddings: false,
  torch_dtype: "bfloat16",
  transformers_version: "4.34.0.dev0",
  use_cache: true,
  vocab_size: 32000,
};

const QWEN2_05B = {
  architectures: ["Qwen2ForCausalLM"],
  attention_dropout: 0.0,
  bos_token_id: 151643,
  eos_token_id: 151643,
  hidden_act: "silu",
  hidden_size: 896,
  initializer_range: 0.02,
  intermediate_size: 4864,
  max_position_embeddings: 131072,
  max_window_layers: 24,
  model_type: "qwen2",
  num_attention_heads: 14,
  num_hidden_layers: 24,
  num_key_value_heads: 2,
  rms_norm_eps: 1e-6,
  rope_theta: 1000000.0,
  sliding_window: 131072,
  tie_word_embeddings: true,
  torch_dtype: "bfloat16",
  transformers_version: "4.40.1",
  use_cache: true,
  use_sliding_window: false,
  vocab_size: 151936,
};

Deno.test("llmConfigFromHf: Vicuna-7B v1.5 (model_type llama)", () => {
  const want: LlmConfig = {
    arch: "llama",
    vocabSize: 32000,
    hiddenSize: 4096,
    intermediateSize: 11008,
    numLayers: 32,
    numHeads: 32,
    numKvHeads: 32,
    headDim: 128,
    rmsNormEps: 1e-5,
    ropeTheta: 10000, // absent in the file: HF's default
    tieWordEmbeddings: false,
    slidingWindow: null,
    attentionBias: false,
    maxPositions: 4096,
  };
  assert.deepEqual(llmConfigFromHf(VICUNA_7B, "vicuna/config.json"), want);
});

Deno.test("llmConfigFromHf: Mistral-7B keeps its sliding window and grouped-query heads", () => {
  const cfg = llmConfigFromHf(MISTRAL_7B, "mistral/config.json");
  assert.equal(cfg.arch, "mistral");
  assert.equal(cfg.slidingWindow, 4096);
  assert.equal(cfg.numKvHeads, 8);
  assert.equal(cfg.headDim, 128);
  assert.equal(cfg.intermediateSize, 14336);
  assert.equal(cfg.attentionBias, false);
  // Mistral v0.2+ writes null: full causal attention.
  assert.equal(llmConfigFromHf({ ...MISTRAL_7B, sliding_window: null }, "m").slidingWindow, null);
  // Absent: HF's default window.
  const { sliding_window: _, ...noWindow } = MISTRAL_7B;
  assert.equal(llmConfigFromHf(noWindow, "m").slidingWindow, 4096);
});

Deno.test("llmConfigFromHf: Qwen2-0.5B has q/k/v biases, tied embeddings, no window", () => {
  const cfg = llmConfigFromHf(QWEN2_05B, "qwen2/config.json");
  assert.equal(cfg.arch, "qwen2");
  assert.equal(cfg.attentionBias, true);
  assert.equal(cfg.tieWordEmbeddings, true);
  assert.equal(cfg.slidingWindow, null); // use_sliding_window: false
  assert.equal(cfg.headDim, 64);
  assert.equal(cfg.ropeTheta, 1e6);
  assert.equal(cfg.rmsNormEps, 1e-6);
});

Deno.test("llmConfigFromHf: defaults, head_dim and transformers-5 rope_parameters", () => {
  const { num_key_value_heads: _k, rms_norm_eps: _e, ...bare } = VICUNA_7B;
  const cfg = llmConfigFromHf(bare, "c");
  assert.equal(cfg.numKvHeads, 32); // defaults to num_attention_heads
  assert.equal(cfg.rmsNormEps, 1e-6);
  assert.equal(llmConfigFromHf({ ...VICUNA_7B, head_dim: 64 }, "c").headDim, 64);
  const v5 = { ...VICUNA_7B, rope_parameters: { rope_type: "default", rope_theta: 500000 } };
  assert.equal(llmConfigFromHf(v5, "c").ropeTheta, 500000);
  assert.equal(llmConfigFromHf({ ...VICUNA_7B, attention_bias: true }, "c").attentionBias, true);
});

Deno.test("llmConfigFromHf: an unknown model_type is refused by name, listing the supported ones", () => {
  assert.throws(
    () => llmConfigFromHf({ ...VICUNA_7B, model_type: "gpt2" }, "gpt2/config.json"),
    (err: Error) =>
      err.message.includes("gpt2/config.json") && err.message.includes('"gpt2"') &&
      ["llama", "mistral", "qwen2"].every((a) => err.message.includes(a)),
  );
  const { model_type: _, ...noType } = VICUNA_7B;
  assert.throws(
    () => llmConfigFromHf(noType, "x/config.json"),
    /x\/config.json: field "model_type" is missing/,
  );
  assert.throws(() => llmConfigFromHf([], "x/config.json"), /x\/config.json: expected a JSON object/);
});

Deno.test("llmConfigFromHf: a missing or invalid field is named with the file", () => {
  const { hidden_size: _, ...noHidden } = VICUNA_7B;
  assert.throws(
    () => llmConfigFromHf(noHidden, "models/v/config.json"),
    /models\/v\/config\.json\.hidden_size: .*expected number, received undefined \(missing\)/,
  );
  assert.throws(
    () => llmConfigFromHf({ ...QWEN2_05B, vocab_size: "151936" }, "q/config.json"),
    /q\/config\.json\.vocab_size: .*expected number, received string \(got "151936"\)/,
  );
  assert.throws(
    () => llmConfigFromHf({ ...MISTRAL_7B, num_attention_heads: 0 }, "m/config.json"),
    /m\/config\.json\.num_attention_heads: .*expected number to be >0 \(got 0\)/,
  );
  assert.throws(
    () => llmConfigFromHf({ ...MISTRAL_7B, sliding_window: 0 }, "m/config.json"),
    /m\/config\.json\.sliding_window: expected a positive integer, or null for full causal attention \(got 0\)/,
  );
});

Deno.test("llmConfigFromHf: unsupported options are refused with the fix", () => {
  const scaled = { ...VICUNA_7B, rope_scaling: { type: "linear", factor: 2 } };
  assert.throws(
    () => llmConfigFromHf(scaled, "c.json"),
    /c\.json\.rope_scaling: RoPE scaling is not supported/,
  );
  assert.throws(
    () => llmConfigFromHf({ ...VICUNA_7B, hidden_act: "gelu" }, "c.json"),
    /c\.json\.hidden_act: the MLP must use "silu" \(SwiGLU\) \(got "gelu"\)/,
  );
  assert.throws(
    () => llmConfigFromHf({ ...VICUNA_7B, mlp_bias: true }, "c.json"),
    /c\.json\.mlp_bias: MLP biases are not supported/,
  );
  assert.throws(
    () => llmConfigFromHf({ ...QWEN2_05B, use_sliding_window: true }, "c.json"),
    /c\.json\.use_sliding_window: Qwen2's per-layer sliding window is not supported/,
  );
  const yarn = { ...VICUNA_7B, rope_parameters: { rope_type: "yarn", rope_theta: 1e4 } };
  assert.throws(() => llmConfigFromHf(yarn, "c.json"), /"rope_parameters.rope_type" is "yarn"/);
  assert.throws(
    () => llmConfigFromHf({ ...VICUNA_7B, num_key_value_heads: 5 }, "c.json"),
    /c.json: numKvHeads = 5: must divide numHeads \(32\)/,
  );
  assert.throws(
    () => llmConfigFromHf({ ...QWEN2_05B, hidden_size: 900 }, "c.json"),
    /"hidden_size" \(900\) is not a multiple of "num_attention_heads" \(14\)/,
  );
});

Deno.test("checkLlmConfig: options an architecture lacks are refused", () => {
  const llama = llmConfigFromHf(VICUNA_7B, "c");
  assert.throws(
    () => checkLlmConfig({ ...llama, slidingWindow: 8 }),
    /slidingWindow = 8: llama has no sliding window/,
  );
  const mistral = llmConfigFromHf(MISTRAL_7B, "c");
  assert.throws(() => checkLlmConfig({ ...mistral, attentionBias: true }), /attentionBias = true: mistral/);
  const qwen = llmConfigFromHf(QWEN2_05B, "c");
  assert.throws(() => checkLlmConfig({ ...qwen, attentionBias: false }), /qwen2 always has q\/k\/v biases/);
  assert.throws(() => checkLlmConfig({ ...llama, headDim: 7 }), /headDim = 7: must be even/);
  assert.throws(
    () => checkLlmConfig({ ...llama, vocabSize: 1.5 }),
    /vocabSize = 1.5: must be a positive integer/,
  );
});

Deno.test("llmConfigToHf: each architecture's config.json reads back to the same config", () => {
  for (
    const [json, cls] of [
      [VICUNA_7B, "LlamaForCausalLM"],
      [MISTRAL_7B, "MistralForCausalLM"],
      [QWEN2_05B, "Qwen2ForCausalLM"],
    ] as const
  ) {
    const cfg = llmConfigFromHf(json, "c");
    const hf = llmConfigToHf(cfg);
    assert.equal(hf.model_type, json.model_type);
    assert.deepEqual(hf.architectures, [cls]);
    assert.deepEqual(llmConfigFromHf(JSON.parse(JSON.stringify(hf)), "saved"), cfg);
  }
});
