import assert from "node:assert/strict";
import {
  applyOverrides,
  type AsvrConfigInput,
  defineConfig,
  parseConfig,
  setConfigValue,
  type VisionEncoderSlotConfig,
} from "./config.ts";
import { tinyConfig } from "./testing.ts";

const SRC = "cfg.ts";
const base = (): AsvrConfigInput => tinyConfig("cb.safetensors");

/** The tiny config with `patch` merged into the slot `slot` (a field set to undefined is removed). */
function withSlot(slot: keyof AsvrConfigInput, patch: unknown): Record<string, unknown> {
  const c = structuredClone(base()) as unknown as Record<string, unknown>;
  if (typeof patch === "object" && patch !== null && !Array.isArray(patch)) {
    const merged: Record<string, unknown> = { ...(c[slot] as object), ...patch };
    for (const [k, v] of Object.entries(patch)) if (v === undefined) delete merged[k];
    c[slot] = merged;
  } else c[slot] = patch;
  return c;
}

function fails(value: unknown, pattern: RegExp): void {
  assert.throws(() => parseConfig(value, SRC), (err: Error) => {
    assert.match(err.message, pattern);
    assert.ok(err.message.startsWith(`${SRC}: `), `the error starts with the source: ${err.message}`);
    return true;
  });
}

Deno.test("parseConfig fills the defaults of every slot and takes the head's sizes from its tokenizer", () => {
  const cfg = parseConfig(base(), SRC);
  const enc = cfg.encoder as VisionEncoderSlotConfig;
  assert.equal(enc.kind, "siglip");
  assert.equal(enc.layer, -2);
  assert.equal(enc.keepCls, false);
  assert.equal(enc.input, "continuous");
  assert.equal(enc.inputTokenizer, "semantic");
  assert.equal(enc.config?.act, "gelu_tanh"); // SigLIP's default activation
  assert.equal(enc.config?.layerNormEps, 1e-6);
  assert.equal(cfg.llm.config?.headDim, 16); // 32 / 2 heads
  assert.equal(cfg.llm.config?.numKvHeads, 1);
  assert.equal(cfg.llm.config?.ropeTheta, 10000);
  assert.equal(cfg.llm.config?.tieWordEmbeddings, false);
  const tok = cfg.visualTokenizers[0];
  assert.equal(tok.kind === "rq" && tok.encoder, "input");
  const head = cfg.head as { kind: string; depths: number; codebookSizes: number[]; target: string };
  assert.equal(head.kind, "asvr_depth");
  assert.equal(head.depths, 2); // from the tokenizer, not the head's default of 8
  assert.deepEqual(head.codebookSizes, [8, 8]);
  assert.equal(head.target, "semantic");
  assert.deepEqual(cfg.loss, { textWeight: 1, visualWeight: 1, alignment: "same", textOnlyRows: "mask" });
  assert.deepEqual(parseConfig(cfg, SRC), cfg, "parsing a parsed config changes nothing");
});

Deno.test("parseConfig: a parsed config with LoRA, an ONNX tokenizer and quantized input parses to itself", () => {
  const c = base();
  const cfg = parseConfig({
    ...c,
    encoder: { ...c.encoder, input: "quantized" },
    llm: { ...c.llm, lora: { rank: 4 } },
    visualTokenizers: [...c.visualTokenizers!, { kind: "onnx", name: "pixel", model: "p.onnx" }],
  }, SRC);
  assert.equal(cfg.llm.lora?.alpha, 8);
  assert.deepEqual(parseConfig(cfg, SRC), cfg);
});

Deno.test("parseConfig: top-level defaults are the LLaVA baseline", () => {
  const { visualTokenizers: _t, head: _h, loss: _l, ...rest } = base();
  const cfg = parseConfig(rest, SRC);
  assert.deepEqual(cfg.visualTokenizers, []);
  assert.deepEqual(cfg.head, { kind: "none" });
  assert.equal(cfg.loss.alignment, "same");
});

Deno.test("defineConfig is the identity", () => {
  const c = base();
  assert.equal(defineConfig(c), c);
});

Deno.test("parseConfig: top-level and encoder errors name the path and what is allowed", () => {
  fails(5, /the config must be an object with fields encoder, projector, llm/);
  fails(
    { ...base(), trainer: {} },
    /trainer: unknown field; the fields are encoder, projector, llm, visualTokenizers/,
  );
  const { encoder: _e, ...noEncoder } = base();
  fails(noEncoder, /encoder: missing; give an encoder object/);
  fails(
    withSlot("encoder", { kind: "vit" }),
    /encoder\.kind: unknown kind \(got "vit"\); use one of "siglip", "clip", "onnx"/,
  );
  fails(withSlot("encoder", { layer: 1.5 }), /encoder\.layer: .*expected int.* \(got 1\.5\)/);
  fails(
    withSlot("encoder", { layer: 3 }),
    /encoder\.layer is 3, out of range for 2 layers; use 0\.\.2 or -1\.\.-3/,
  );
  fails(
    withSlot("encoder", { input: "discrete" }),
    /encoder\.input: .*"continuous".*"quantized".*\(got "discrete"\)/,
  );
  fails(
    withSlot("encoder", { keepCLS: true }),
    /encoder\.keepCLS: unknown field; allowed fields: kind, path, config, layer, keepCls/,
  );
  fails(
    withSlot("encoder", { path: "/models/siglip" }),
    /encoder: give either path .* or config .*, not both/,
  );
  fails(
    withSlot("encoder", { config: undefined }),
    /encoder: give path \(a Hugging Face vision folder to load\) or config/,
  );
  const cfg = base().encoder as { config: Record<string, unknown> };
  fails(
    withSlot("encoder", { config: { ...cfg.config, hiddenSize: "32" } }),
    /encoder\.config\.hiddenSize: .*expected number.*\(got "32"\)/,
  );
  fails(
    withSlot("encoder", { config: { ...cfg.config, width: 3 } }),
    /encoder\.config\.width: unknown field; allowed fields: hiddenSize/,
  );
  fails(
    withSlot("encoder", { config: { ...cfg.config, numHeads: 3 } }),
    /encoder\.config: hidden_size 32 is not a multiple of num_attention_heads 3/,
  );
  fails(
    withSlot("encoder", { kind: "onnx", config: undefined, layer: undefined }),
    /encoder\.path: .*\(missing\)/,
  );
  fails(
    withSlot("encoder", { kind: "clip", keepCls: true }),
    /encoder\.keepCls is true: the clip encoder's CLS row .*kind "none"/,
  );
});

Deno.test("parseConfig: projector and LLM errors name the path", () => {
  fails(
    withSlot("projector", { kind: "mlp3x" }),
    /projector\.kind: .*\(got "mlp3x"\); use one of "linear", "mlp2x_gelu", "identity"/,
  );
  fails(
    withSlot("projector", { outDim: 64 }),
    /projector\.outDim is 64 but the LLM's width \(llm\.config\.hiddenSize\) is 32/,
  );
  fails(
    withSlot("projector", { inDim: 16 }),
    /projector\.inDim is 16 but the encoder's features are 32 wide/,
  );
  const llm = base().llm as { config: Record<string, unknown> };
  fails({ ...base(), llm: { ...llm, kind: "llama", lora: { rank: 0 } } }, /llm\.lora\.rank: .*>=1 \(got 0\)/);
  fails(
    { ...base(), llm: { ...llm, kind: "llama", lora: { targets: ["qkv"] } } },
    /llm\.lora\.targets\[0\]: .*"q_proj".* \(got "qkv"\)/,
  );
  const wide = { ...llm.config, hiddenSize: 64, numHeads: 4 };
  fails(
    { ...withSlot("projector", { kind: "identity" }), llm: { kind: "llama", config: wide } },
    /projector: an identity projector needs inDim == outDim \(got 32 and 64\)/,
  );
  fails(
    {
      ...withSlot("encoder", { kind: "onnx", path: "enc.onnx", config: undefined, layer: undefined }),
      visualTokenizers: [],
      head: { kind: "none" },
    },
    /projector\.inDim: required with encoder kind "onnx"/,
  );
  fails(
    withSlot("llm", { kind: "gpt2" }),
    /llm\.kind: unknown kind \(got "gpt2"\); use one of "llama", "mistral", "qwen2"/,
  );
  const { vocabSize: _v, ...noVocab } = llm.config;
  fails(withSlot("llm", { config: noVocab }), /llm\.config\.vocabSize: .*\(missing\)/);
  fails(
    withSlot("llm", { config: { ...llm.config, numKvHeads: 3 } }),
    /llm\.config: numKvHeads = 3: must divide numHeads/,
  );
  fails(
    withSlot("llm", { kind: "qwen2", config: { ...llm.config, attentionBias: false } }),
    /llm\.config: attentionBias = false: qwen2 always has q\/k\/v biases/,
  );
});

Deno.test("parseConfig: tokenizer, head and loss errors name the path", () => {
  const tok = (over: Record<string, unknown>) => ({
    kind: "rq",
    name: "semantic",
    layer: 1,
    depths: 2,
    codebookSize: 8,
    codebooks: "cb",
    ...over,
  });
  fails(
    { ...base(), visualTokenizers: {} },
    /visualTokenizers: expected an array of visual tokenizer configs/,
  );
  fails(
    { ...base(), visualTokenizers: [tok({}), tok({ name: "pixel", depths: 0 })] },
    /visualTokenizers\[1\]\.depths: .*expected number to be >=1 \(got 0\)/,
  );
  fails(
    { ...base(), visualTokenizers: [tok({}), tok({})] },
    /visualTokenizers\[1\]\.name is "semantic", already the name of visualTokenizers\[0\]/,
  );
  fails(
    { ...base(), visualTokenizers: [tok({ layer: 5 })] },
    /visualTokenizers\[0\]\.layer is 5 but the encoder has 2 layers/,
  );
  fails(withSlot("head", { layers: 0 }), /head\.layers: .*>0.*\(got 0\)/);
  fails(
    withSlot("head", { kind: "transformer" }),
    /head\.kind: unknown head kind "transformer"; use one of "none", "linear", "asvr_depth", "dual"/,
  );
  fails(
    withSlot("head", { target: "pixel" }),
    /head\.target is "pixel", which names no visual tokenizer \(visualTokenizers has: "semantic"\)/,
  );
  fails(
    withSlot("head", { depths: 3 }),
    /head\.depths is 3 but visualTokenizers\[0\] \("semantic"\) has depths 2; they must be equal/,
  );
  fails(
    withSlot("head", { codebookSizes: [8, 16] }),
    /head\.codebookSizes\[1\] is 16 but visualTokenizers\[0\] \("semantic"\) has codebookSize 8/,
  );
  fails(
    { ...base(), head: { kind: "dual", appearance: { kind: "linear" }, semantic: { kind: "linear" } } },
    /head\.appearance\.target is "pixel", which names no visual tokenizer/,
  );
  fails(
    { ...base(), visualTokenizers: [{ kind: "onnx", name: "semantic", model: "tok.onnx" }] },
    /head\.target: visualTokenizers\[0\] \("semantic"\) has no codebooks, but the asvr_depth head teacher-forces/,
  );
  fails(
    withSlot("loss", { alignment: "prev" }),
    /loss\.alignment: .*one of "same"\|"next" \(got "prev"\)/,
  );
  fails(withSlot("loss", { weight: 1 }), /loss\.weight: unknown field; allowed fields: textWeight/);
});

Deno.test("parseConfig: cross-slot checks of the discrete-input ablation and the encoder's tokenizers", () => {
  assert.equal(
    (parseConfig(withSlot("encoder", { input: "quantized" }), SRC).encoder as { input: string }).input,
    "quantized",
  );
  fails(
    withSlot("encoder", { input: "quantized", inputTokenizer: "pixel" }),
    /encoder\.inputTokenizer is "pixel", but encoder\.input "quantized" needs an rq visual tokenizer of that name \(rq tokenizers: "semantic"\)/,
  );
  fails(
    {
      ...withSlot("encoder", { kind: "onnx", path: "enc.onnx", config: undefined, layer: undefined }),
      projector: { kind: "linear", inDim: 6 },
    },
    /visualTokenizers\[0\]\.encoder is "input" \(the VLM's own encoder\), but encoder\.kind is "onnx"/,
  );
});

Deno.test("setConfigValue: typed overrides from strings", () => {
  const c = base();
  const before = structuredClone(c);
  assert.deepEqual(setConfigValue(c, "head.kind", "none").head, { kind: "none" });
  const linear = setConfigValue(c, "head.kind", "linear").head as {
    kind: string;
    depths: number;
    width: number;
  };
  assert.equal(linear.kind, "linear"); // asvr_depth's fields do not fit a linear head: it starts afresh ...
  assert.equal(linear.depths, 2); // ... and still follows its tokenizer
  assert.equal(linear.width, 2048);
  assert.equal(setConfigValue(c, "loss.visualWeight", "0.5").loss.visualWeight, 0.5);
  assert.equal(setConfigValue(c, "loss.alignment", "next").loss.alignment, "next");
  assert.equal(
    (setConfigValue(c, "encoder.input", "quantized").encoder as { input: string }).input,
    "quantized",
  );
  assert.equal(
    (setConfigValue(c, "encoder.kind", "clip").encoder as { config?: { act: string } }).config?.act,
    "quick_gelu",
  ); // sizes kept
  assert.equal(setConfigValue(c, "llm.config.numLayers", "3").llm.config?.numLayers, 3);
  const deeper = applyOverrides(c, ["visualTokenizers[0].depths=3", "visualTokenizers.0.codebookSize=16"]);
  assert.deepEqual(deeper.head.codebookSizes, [16, 16, 16]);
  assert.deepEqual(
    setConfigValue(c, "head.codebookSizes", "[8, 8]").head.codebookSizes,
    [8, 8],
  );
  assert.deepEqual(c, before, "the given config is not modified");
});

Deno.test("setConfigValue: an unknown key or a wrong type is an error naming the path", () => {
  const c = base();
  const bad = (key: string, value: string, pattern: RegExp) =>
    assert.throws(() => setConfigValue(c, key, value), (err: Error) => {
      assert.match(err.message, pattern);
      return true;
    });
  bad("head.widht", "3", /head\.widht: unknown field; allowed fields: kind, width/);
  bad("loss.textWeight", "abc", /loss\.textWeight: .*expected number, received string \(got "abc"\)/);
  bad("head.layers", "true", /head\.layers: .*expected number.*\(got true\)/);
  bad("encoder.kind", "vit", /encoder\.kind: unknown kind \(got "vit"\)/);
  bad("trainer.lr", "1e-4", /trainer: unknown field; the fields are encoder, projector, llm/);
  bad("llm.path", "/models/vicuna", /llm: give either path .* or config .*, not both/);
  bad("head..x", "1", /key "head\.\.x" is not a config path; write it like head\.kind/);
  bad("visualTokenizers[5].depths", "2", /visualTokenizers\[5\] is past the end of an array of 1/);
  bad("head.width.x", "1", /head\.width is 32, not an object/);
  assert.throws(
    () => applyOverrides(c, ["head.kind"]),
    /"head\.kind" is not key=value; write it like head\.kind=none/,
  );
});

Deno.test("--set: invalid JSON is an error naming the key; prototype keys are refused", () => {
  const c = tinyConfig("tok.safetensors", { head: { kind: "asvr_depth" } });
  assert.throws(
    () => applyOverrides(c, ["head.codebookSizes=[512,512"]),
    /--set: head\.codebookSizes=\[512,512: invalid JSON \(.+\); write arrays like \[512,512\]/,
  );
  assert.throws(() => applyOverrides(c, ['head.target="semantic']), /head\.target="semantic: invalid JSON/);
  // Plain words and names starting with a digit stay strings.
  assert.equal(applyOverrides(c, ["head.kind=none"]).head.kind, "none");
  for (const key of ["__proto__.x", "head.__proto__.polluted", "loss.constructor.prototype.y"]) {
    assert.throws(() => applyOverrides(c, [`${key}=1`]), /is not a config field/, key);
  }
  assert.equal(({} as Record<string, unknown>).polluted, undefined);
});
