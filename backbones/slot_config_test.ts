import assert from "node:assert/strict";
import { parseLlmSlot } from "./slot_config.ts";

const SIZES = { vocabSize: 64, hiddenSize: 32, intermediateSize: 64, numLayers: 2, numHeads: 2 };

Deno.test("parseLlmSlot fills HF's sizes and the LoRA defaults; a parsed slot parses to itself", () => {
  const llm = parseLlmSlot({ kind: "mistral", config: SIZES, lora: { rank: 4 } }, "llm");
  assert.equal(llm.config?.numKvHeads, 2); // HF's default: numHeads
  assert.equal(llm.config?.headDim, 16);
  assert.equal(llm.config?.slidingWindow, 4096); // Mistral's default window
  assert.deepEqual(llm.lora, {
    rank: 4,
    alpha: 8,
    targets: ["q_proj", "k_proj", "v_proj", "o_proj"],
    seed: 0,
  });
  assert.deepEqual(parseLlmSlot(llm, "llm"), llm);
  const loaded = parseLlmSlot({ kind: "llama", path: "/m/vicuna", config: undefined }, "llm");
  assert.deepEqual(loaded, { kind: "llama", path: "/m/vicuna" });
});

Deno.test("parseLlmSlot: errors name the path, the value and what is allowed", () => {
  const bad = (value: unknown, re: RegExp) => assert.throws(() => parseLlmSlot(value, "llm"), re);
  bad(
    { kind: "gpt2", path: "p" },
    /llm\.kind: unknown kind \(got "gpt2"\); use one of "llama", "mistral", "qwen2"/,
  );
  bad({ kind: "llama", config: { ...SIZES, vocabSize: undefined } }, /llm\.config\.vocabSize: .*\(missing\)/);
  bad(
    { kind: "llama", config: { ...SIZES, numKvHeads: 3 } },
    /llm\.config: numKvHeads = 3: must divide numHeads/,
  );
  bad({ kind: "llama", path: "p", lora: { rank: 0 } }, /llm\.lora\.rank: .*>=1 \(got 0\)/);
  bad(
    { kind: "llama", path: "p", lora: { ranks: 2 } },
    /llm\.lora\.ranks: unknown field; allowed fields: rank/,
  );
  bad({ kind: "llama", path: "p", config: SIZES }, /llm: give either path .* or config .*, not both/);
  bad({ kind: "llama" }, /llm: give path \(a Hugging Face model folder to load\) or config/);
});
