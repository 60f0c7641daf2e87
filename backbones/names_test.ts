import assert from "node:assert/strict";
import type { LlmConfig } from "./config.ts";
import {
  hfParamNames,
  LAYER_PARAM_KEYS,
  LLAMA_NAMES,
  MISTRAL_NAMES,
  nameTable,
  QWEN2_NAMES,
} from "./names.ts";

const BASE: LlmConfig = {
  arch: "llama",
  vocabSize: 16,
  hiddenSize: 8,
  intermediateSize: 12,
  numLayers: 1,
  numHeads: 2,
  numKvHeads: 1,
  headDim: 4,
  rmsNormEps: 1e-6,
  ropeTheta: 10000,
  tieWordEmbeddings: false,
  slidingWindow: null,
  attentionBias: false,
  maxPositions: 64,
};

/** The HF names of layer 0 of a LLaMA checkpoint, as transformers writes them. */
const LLAMA_LAYER0 = [
  "model.layers.0.input_layernorm.weight",
  "model.layers.0.self_attn.q_proj.weight",
  "model.layers.0.self_attn.k_proj.weight",
  "model.layers.0.self_attn.v_proj.weight",
  "model.layers.0.self_attn.o_proj.weight",
  "model.layers.0.post_attention_layernorm.weight",
  "model.layers.0.mlp.gate_proj.weight",
  "model.layers.0.mlp.up_proj.weight",
  "model.layers.0.mlp.down_proj.weight",
];

const sorted = (xs: string[]) => [...xs].sort();

Deno.test("hfParamNames: LLaMA and Mistral checkpoints", () => {
  const want = ["model.embed_tokens.weight", ...LLAMA_LAYER0, "model.norm.weight", "lm_head.weight"];
  assert.deepEqual(sorted(hfParamNames(BASE)), sorted(want));
  assert.deepEqual(sorted(hfParamNames({ ...BASE, arch: "mistral", slidingWindow: 4 })), sorted(want));
  const two = hfParamNames({ ...BASE, numLayers: 2 });
  assert.equal(two.length, 2 + 9 * 2 + 1);
  assert.ok(two.includes("model.layers.1.mlp.down_proj.weight"));
  assert.equal(new Set(two).size, two.length, "names are unique");
});

Deno.test("hfParamNames: Qwen2 has q/k/v biases (no o_proj bias); tied embeddings drop lm_head", () => {
  const names = hfParamNames({ ...BASE, arch: "qwen2", attentionBias: true, tieWordEmbeddings: true });
  const want = [
    "model.embed_tokens.weight",
    ...LLAMA_LAYER0,
    "model.layers.0.self_attn.q_proj.bias",
    "model.layers.0.self_attn.k_proj.bias",
    "model.layers.0.self_attn.v_proj.bias",
    "model.norm.weight",
  ];
  assert.deepEqual(sorted(names), sorted(want));
});

Deno.test("hfParamNames: LLaMA's attention_bias biases q, k, v and o", () => {
  const names = hfParamNames({ ...BASE, attentionBias: true });
  for (const p of ["q", "k", "v", "o"]) assert.ok(names.includes(`model.layers.0.self_attn.${p}_proj.bias`));
  assert.equal(names.length, 2 + 9 + 4 + 1);
});

Deno.test("name tables: one per architecture, every key mapped, layer names indexed by {i}", () => {
  assert.equal(nameTable("llama"), LLAMA_NAMES);
  assert.equal(nameTable("mistral"), MISTRAL_NAMES);
  assert.equal(nameTable("qwen2"), QWEN2_NAMES);
  for (const t of [LLAMA_NAMES, MISTRAL_NAMES, QWEN2_NAMES]) {
    assert.deepEqual(sorted(Object.keys(t.layer)), sorted([...LAYER_PARAM_KEYS]));
    const layerNames = Object.values(t.layer).filter((n) => n !== null);
    for (const n of layerNames) assert.match(n, /^model\.layers\.\{i\}\./);
    assert.equal(new Set(layerNames).size, layerNames.length);
  }
  // Weights exist in every architecture; only the biases differ.
  for (const k of LAYER_PARAM_KEYS.filter((k) => !k.startsWith("b"))) {
    assert.ok(MISTRAL_NAMES.layer[k] && QWEN2_NAMES.layer[k] && LLAMA_NAMES.layer[k], k);
  }
  assert.equal(QWEN2_NAMES.layer.bo, null);
  assert.equal(MISTRAL_NAMES.layer.bq, null);
});
