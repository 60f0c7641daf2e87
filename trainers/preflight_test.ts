import assert from "node:assert/strict";
import { join } from "node:path";
import type { RunConfig } from "./config.ts";
import { formatMissing, missingInputs } from "./preflight.ts";

/** A run config with only what the pre-flight reads: an LLM folder, an encoder folder, one stage. */
function runOf(llm: string, encoder: string, data: string): RunConfig {
  return {
    llm: { path: llm },
    encoder: { kind: "siglip", path: encoder },
    visualTokenizers: [],
    data: { tokenizer: null },
    train: { stages: [{ data, imageRoot: null }], evalData: null },
  } as unknown as RunConfig;
}

Deno.test("model folders: PyTorch weights only, other safetensors names, or none, each with its fix", async () => {
  const dir = await Deno.makeTempDir({ prefix: "asvr_preflight_" });
  try {
    const folder = async (name: string, files: string[]) => {
      await Deno.mkdir(join(dir, name));
      for (const f of ["config.json", ...files]) await Deno.writeTextFile(join(dir, name, f), "{}");
      return join(dir, name);
    };
    const data = join(dir, "rows.json");
    await Deno.writeTextFile(data, "[]");
    const bin = await folder("vicuna", [
      "pytorch_model-00001-of-00002.bin",
      "pytorch_model-00002-of-00002.bin",
    ]);
    const good = await folder("siglip", ["model.safetensors"]);
    let missing = await missingInputs(runOf(bin, good, data));
    assert.equal(missing.length, 1);
    assert.equal(missing[0].field, "llm.path");
    assert.match(
      missing[0].fix,
      /only PyTorch weights \(pytorch_model-00001-of-00002\.bin, pytorch_model-00002-of-00002\.bin\).*convert/,
    );
    assert.match(
      missing[0].fix,
      /AutoModelForCausalLM\.from_pretrained\('.*vicuna'\)\.save_pretrained\('.*vicuna', safe_serialization=True\)/,
    );
    const renamed = await folder("renamed", ["weights.safetensors"]);
    const empty = await folder("empty", []);
    missing = await missingInputs(runOf(empty, renamed, data));
    assert.deepEqual(missing.map((m) => m.field), ["llm.path", "encoder.path"]);
    assert.match(
      missing[0].fix,
      /config\.json but no weights: model\.safetensors or model\.safetensors\.index\.json/,
    );
    assert.match(
      missing[1].fix,
      /but weights\.safetensors: rename a single weights file to model\.safetensors/,
    );
    assert.match(formatMissing(missing), /2 inputs are missing.*\n {2}llm\.path = .*empty\n {6}config\.json/);
    const sharded = await folder("sharded", ["model.safetensors.index.json"]);
    assert.deepEqual(await missingInputs(runOf(sharded, good, data)), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
