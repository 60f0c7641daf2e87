import assert from "node:assert/strict";
import { join } from "node:path";
import { assertClose, gpuTest, randInt, randn } from "../core/testing.ts";
import { Decoder } from "../backbones/decoder.ts";
import { LORA_TARGETS } from "../backbones/lora.ts";
import { Checkpoint } from "../io/safetensors.ts";
import { readJsonFile } from "../io/json.ts";
import { AsvrModel } from "./asvr_model.ts";
import { parseConfig } from "./config.ts";
import { exportModel } from "./export.ts";
import { TINY, tinyConfig, writeTinyCodebooks } from "./testing.ts";

const [B, T] = [2, 6];

/** The LLM's logits [B, T, V] on `ids`, read back. */
async function logitsOf(llm: Decoder, ids: Int32Array): Promise<Float32Array> {
  const e = llm.engine;
  return Float32Array.from(
    await e.noGrad(() =>
      e.tidy(() => llm.logits(llm.forward(llm.embed(e.tensor(ids, [B, T], "i32"))))).read()
    ),
  );
}

gpuTest(
  "exportModel: one LLaVA-layout folder, LoRA merged, whose LLM loads back with the adapted logits",
  async (e) => {
    const dir = await Deno.makeTempDir();
    try {
      const books = await writeTinyCodebooks(dir);
      const base = tinyConfig(books);
      const lora = { rank: 2, alpha: 8, targets: [...LORA_TARGETS] };
      const model = await AsvrModel.build(e, parseConfig({ ...base, llm: { ...base.llm, lora } }, "test"));
      // Trained-looking adapters: B is zero when made, which would make the merge a no-op.
      let seed = 10;
      for (const [name, t] of model.params()) {
        if (name.endsWith("lora_B.weight")) {
          e.write(t, randn(t.size, ++seed, 0.3));
        }
      }
      const ids = randInt(B * T, TINY.vocab, 4);
      const adapted = await logitsOf(model.llm, ids);
      const projector = await model.params().get("model.mm_projector.0.weight")!.read();

      const out = join(dir, "hf");
      const r = await exportModel(model, out, { dtype: "F32", maxShardBytes: 200_000 });
      assert.equal(r.dtype, "F32");
      assert.ok(r.mergedLora);
      assert.equal(model.llm.lora, null);
      const files = [...Deno.readDirSync(out)].map((f) => f.name).sort();
      assert.ok(
        files.includes("model.safetensors.index.json") && files.includes("model-00001-of-00002.safetensors"),
        `${files}`,
      );

      const ckpt = await Checkpoint.open(out);
      try {
        assert.ok(!ckpt.names().some((n) => n.includes("lora_")), "no adapter tensors");
        assert.equal(ckpt.names().length, model.params().size); // the model's, adapters merged away
        assert.ok(ckpt.names().some((n) => n.startsWith("model.vision_tower.vision_tower.")));
        assert.ok(ckpt.names().some((n) => n.startsWith("visual_head.")));
        assertClose(await ckpt.read("model.mm_projector.0.weight"), projector, { atol: 0, rtol: 0 });
      } finally {
        ckpt.close();
      }
      const config = await readJsonFile(join(out, "config.json"), "export") as Record<string, unknown>;
      assert.equal(config.model_type, "llama");
      assert.equal(config.mm_projector_type, "mlp2x_gelu");
      assert.equal(config.mm_hidden_size, TINY.vitWidth);
      assert.equal(config.mm_vision_select_layer, -2);
      assert.equal((config.asvr as { head: { kind: string } }).head.kind, "asvr_depth");

      // The exported folder's LLM (a plain decoder: the multimodal weights are skipped) computes what the
      // adapted one did.
      const back = await Decoder.load(e, out);
      assertClose(await logitsOf(back, ids), adapted, {
        atol: 2e-5,
        rtol: 1e-4,
        label: "exported vs adapted logits",
      });
      back.dispose();

      // BF16 stores every float tensor as BF16.
      await exportModel(model, join(dir, "bf16"), { dtype: "BF16" });
      const bf = await Checkpoint.open(join(dir, "bf16"));
      assert.deepEqual(new Set(bf.names().map((n) => bf.info(n).dtype)), new Set(["BF16"]));
      bf.close();
      await model.dispose();
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);
