import assert from "node:assert/strict";
import { gpuTest } from "../core/testing.ts";
import type { Engine } from "../core/engine.ts";
import type { Tensor } from "../core/tensor.ts";
import { loadParams, type LoadProgress, saveParams, writeHfFolder } from "./params.ts";
import { Checkpoint, type SafeTensorInput, writeSafetensors } from "./safetensors.ts";
import { bf16Reference } from "./testdata/bf16_reference.ts";

async function inTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "asvr_io_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Writes `tensors` to dir/ckpt.safetensors and opens it. */
async function checkpointOf(dir: string, tensors: SafeTensorInput[]): Promise<Checkpoint> {
  await writeSafetensors(`${dir}/ckpt.safetensors`, tensors);
  return await Checkpoint.open(`${dir}/ckpt.safetensors`);
}

const W = Float32Array.from([0.1, -0.2, 1 / 3, 4.5, 1e-3, -7]); // [2, 3]
const B = Float32Array.from([0.25, -1.75, 3.1]); // [3]

function freshParams(e: Engine): Map<string, Tensor> {
  return new Map([
    ["layer.weight", e.param(new Float32Array(6), [2, 3], { name: "layer.weight" })],
    ["layer.bias", e.param(new Float32Array(3), [3], { dtype: "f16", name: "layer.bias" })],
    ["ids", e.tensor(new Int32Array(4), [4], "i32")],
  ]);
}

gpuTest("loadParams: f32 and f16 params from F32/BF16/F16/I64 tensors, with a prefix", async (e) => {
  await inTempDir(async (dir) => {
    const ckpt = await checkpointOf(dir, [
      { name: "model.layer.weight", dtype: "BF16", shape: [2, 3], data: W },
      { name: "model.layer.bias", dtype: "F32", shape: [3], data: B },
      { name: "model.ids", dtype: "I64", shape: [4], data: Int32Array.from([3, -1, 0, 70000]) },
      { name: "vision.other", dtype: "F16", shape: [1], data: Float32Array.from([1]) }, // outside the prefix
    ]);
    const params = freshParams(e);
    const progress: LoadProgress[] = [];
    await loadParams(params, ckpt, { prefix: "model.", onProgress: (p) => progress.push(p) });
    ckpt.close();
    // One report per tensor loaded, in order, counting stored bytes (BF16 12 + F32 12 + I64 32).
    assert.deepEqual(progress.map((p) => [p.name, p.tensors, p.totalTensors, p.bytes, p.totalBytes]), [
      ["model.layer.weight", 1, 3, 12, 56],
      ["model.layer.bias", 2, 3, 24, 56],
      ["model.ids", 3, 3, 56, 56],
    ]);
    assert.deepEqual(Array.from(await params.get("layer.weight")!.read()), Array.from(W, bf16Reference));
    assert.deepEqual(
      Array.from(await params.get("layer.bias")!.read()),
      Array.from(B, (x) => Math.f16round(x)),
    );
    assert.deepEqual(Array.from(await params.get("ids")!.read()), [3, -1, 0, 70000]);
    for (const t of params.values()) t.dispose();
  });
});

gpuTest("loadParams: all missing names in ONE error (first 20 + count); allowMissing globs", async (e) => {
  await inTempDir(async (dir) => {
    const ckpt = await checkpointOf(dir, [{
      name: "layers.0.w",
      dtype: "F32",
      shape: [2],
      data: Float32Array.from([1, 2]),
    }]);
    const params = new Map<string, Tensor>();
    for (let i = 0; i < 25; i++) params.set(`layers.${i}.w`, e.param(new Float32Array(2).fill(9), [2]));
    await assert.rejects(loadParams(params, ckpt), (err: Error) => {
      assert.match(
        err.message,
        /^loadParams from .*ckpt\.safetensors:\n24 param\(s\) missing from the checkpoint: /,
      );
      assert.match(err.message, /"layers\.1\.w", "layers\.2\.w"/);
      assert.match(err.message, /"layers\.20\.w" \.\.\. and 4 more/);
      assert.ok(!err.message.includes('"layers.21.w"'));
      assert.match(err.message, /the checkpoint name closest to "layers\.1\.w" is "layers\.0\.w"/);
      return true;
    });
    // nothing was written by the failed load
    assert.deepEqual(Array.from(await params.get("layers.0.w")!.read()), [9, 9]);
    await loadParams(params, ckpt, { allowMissing: ["layers.*.w"] });
    assert.deepEqual(Array.from(await params.get("layers.0.w")!.read()), [1, 2]);
    assert.deepEqual(Array.from(await params.get("layers.7.w")!.read()), [9, 9]);
    await assert.rejects(
      loadParams(params, ckpt, { allowMissing: ["layers.1*.w"] }),
      /13 param\(s\) missing.*"layers\.2\.w"/,
    );
    ckpt.close();
    for (const t of params.values()) t.dispose();
  });
});

gpuTest("loadParams: unexpected tensors under the prefix are one error unless ignored", async (e) => {
  await inTempDir(async (dir) => {
    const ckpt = await checkpointOf(dir, [
      { name: "m.a", dtype: "F32", shape: [1], data: Float32Array.from([1]) },
      { name: "m.extra1", dtype: "F32", shape: [1], data: Float32Array.from([1]) },
      { name: "m.rotary.inv_freq", dtype: "F32", shape: [1], data: Float32Array.from([1]) },
      { name: "other.b", dtype: "F32", shape: [1], data: Float32Array.from([1]) },
    ]);
    const params = new Map([["a", e.param([0], [1])]]);
    await assert.rejects(
      loadParams(params, ckpt, { prefix: "m." }),
      /2 checkpoint tensor\(s\) under prefix "m\." match no param: "m\.extra1", "m\.rotary\.inv_freq"\n.*ignoreUnexpected/,
    );
    await assert.rejects(
      loadParams(params, ckpt, { prefix: "m.", ignoreUnexpected: ["*.inv_freq"] }),
      /1 checkpoint tensor\(s\) under prefix "m\." match no param: "m\.extra1"\n/,
    );
    await loadParams(params, ckpt, { prefix: "m.", ignoreUnexpected: ["*.inv_freq", "extra1"] });
    await loadParams(params, ckpt, { prefix: "m.", ignoreUnexpected: true });
    assert.deepEqual(Array.from(await params.get("a")!.read()), [1]);
    ckpt.close();
    params.get("a")!.dispose();
  });
});

gpuTest("loadParams: shape and dtype mismatches name the tensor, both shapes and the file", async (e) => {
  await inTempDir(async (dir) => {
    const ckpt = await checkpointOf(dir, [
      { name: "w", dtype: "F16", shape: [3, 2], data: new Float32Array(6) },
      { name: "ids", dtype: "F32", shape: [2], data: new Float32Array(2) },
    ]);
    const params = new Map([["w", e.param(new Float32Array(6).fill(5), [2, 3])], [
      "ids",
      e.tensor([0, 0], [2], "i32"),
    ]]);
    await assert.rejects(loadParams(params, ckpt), (err: Error) => {
      assert.match(
        err.message,
        /"w" in \S*ckpt\.safetensors has shape \[3,2\], the param "w" expects \[2,3\]/,
      );
      assert.match(err.message, /"ids" in \S*ckpt\.safetensors holds floats \(F32\), the param "ids" is i32/);
      return true;
    });
    assert.deepEqual(Array.from(await params.get("w")!.read()), [5, 5, 5, 5, 5, 5]);
    ckpt.close();
    for (const t of params.values()) t.dispose();
  });
});

gpuTest("saveParams round trip (F32, BF16; f16 params stay F16), format metadata", async (e) => {
  await inTempDir(async (dir) => {
    const params = new Map([
      ["w", e.param(W, [2, 3])],
      ["h", e.param(B, [3], { dtype: "f16" })],
      ["ids", e.tensor([1, -2], [2], "i32")],
    ]);
    const progress: LoadProgress[] = [];
    await saveParams(`${dir}/p.safetensors`, params, {
      prefix: "model.",
      metadata: { step: "3" },
      onProgress: (p) => progress.push(p),
    });
    // One report per tensor as it is read back, in file order, in stored bytes (F16 6, I32 8, F32 24).
    assert.deepEqual(progress.map((p) => [p.name, p.tensors, p.bytes, p.totalBytes]), [
      ["model.h", 1, 6, 38],
      ["model.ids", 2, 14, 38],
      ["model.w", 3, 38, 38],
    ]);
    const ckpt = await Checkpoint.open(`${dir}/p.safetensors`);
    assert.deepEqual(ckpt.names(), ["model.h", "model.ids", "model.w"]);
    assert.deepEqual(ckpt.files[0].metadata, { format: "pt", step: "3" });
    assert.equal(ckpt.info("model.w").dtype, "F32");
    assert.equal(ckpt.info("model.h").dtype, "F16");
    assert.equal(ckpt.info("model.ids").dtype, "I32");
    assert.deepEqual(Array.from(await ckpt.read("model.w")), Array.from(W));
    assert.deepEqual(Array.from(await ckpt.read("model.h")), Array.from(B, (x) => Math.f16round(x)));
    assert.deepEqual(Array.from(await ckpt.read("model.ids")), [1, -2]);
    ckpt.close();

    await saveParams(`${dir}/p.safetensors`, params, { dtype: "BF16" });
    const back = await Checkpoint.open(`${dir}/p.safetensors`);
    assert.equal(back.info("w").dtype, "BF16");
    assert.equal(back.info("h").dtype, "BF16");
    const fresh = new Map([["w", e.param(new Float32Array(6), [2, 3])], ["h", e.param([0, 0, 0], [3])], [
      "ids",
      e.tensor([0, 0], [2], "i32"),
    ]]);
    await loadParams(fresh, back);
    back.close();
    assert.deepEqual(Array.from(await fresh.get("w")!.read()), Array.from(W, bf16Reference));
    assert.deepEqual(
      Array.from(await fresh.get("h")!.read()),
      Array.from(B, (x) => bf16Reference(Math.f16round(x))),
    );
    assert.deepEqual(Array.from(await fresh.get("ids")!.read()), [1, -2]);
    for (const t of [...params.values(), ...fresh.values()]) t.dispose();
  });
});

gpuTest(
  "writeHfFolder: config.json + model.safetensors, then shards; stale weight files removed",
  async (e) => {
    await inTempDir(async (dir) => {
      const params = new Map<string, Tensor>();
      for (let i = 0; i < 4; i++) {
        params.set(`layers.${i}.weight`, e.param(new Float32Array(8).fill(i), [2, 4]));
      }
      const config = { model_type: "llama", hidden_size: 4, architectures: ["LlamaForCausalLM"] };
      await writeHfFolder(dir, config, params, { prefix: "model." });
      assert.deepEqual(JSON.parse(await Deno.readTextFile(`${dir}/config.json`)), config);
      const listing = async () => {
        const names: string[] = [];
        for await (const x of Deno.readDir(dir)) {
          names.push(x.name);
        }
        return names.sort();
      };
      assert.deepEqual(await listing(), ["config.json", "model.safetensors"]);

      await writeHfFolder(dir, config, params, { prefix: "model.", maxShardBytes: 40, dtype: "F16" });
      assert.deepEqual(await listing(), [
        "config.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "model.safetensors.index.json",
      ]);
      const ckpt = await Checkpoint.open(dir);
      assert.equal(ckpt.files.length, 2);
      const fresh = new Map([...params.keys()].map((k) => [k, e.param(new Float32Array(8), [2, 4])]));
      await loadParams(fresh, ckpt, { prefix: "model." });
      ckpt.close();
      for (let i = 0; i < 4; i++) {
        assert.deepEqual(Array.from(await fresh.get(`layers.${i}.weight`)!.read()), new Array(8).fill(i));
      }
      await assert.rejects(writeHfFolder(dir, [1], params), /config must be a plain object/);
      for (const t of [...params.values(), ...fresh.values()]) t.dispose();
    });
  },
);

gpuTest(
  "loadParams: NaN or Inf in F32/F16/BF16 weights name the tensor and index; allowNonFinite",
  async (e) => {
    await inTempDir(async (dir) => {
      for (const dtype of ["F32", "F16", "BF16"] as const) {
        for (const [bad, what] of [[NaN, "NaN"], [-Infinity, "-Infinity"]] as const) {
          const data = Float32Array.from([1, 2, 3, 4, bad, 6]);
          const ckpt = await checkpointOf(dir, [
            { name: "layer.weight", dtype, shape: [2, 3], data },
            { name: "layer.bias", dtype: "F32", shape: [3], data: B },
          ]);
          const params = new Map([
            ["layer.weight", e.param(new Float32Array(6), [2, 3])],
            ["layer.bias", e.param(new Float32Array(3), [3])],
          ]);
          await assert.rejects(loadParams(params, ckpt), (err: Error) => {
            assert.match(
              err.message,
              new RegExp(
                `ckpt\\.safetensors: tensor "layer\\.weight" \\(${dtype} \\[2,3\\]\\) holds ${what} at index 4 ` +
                  `\\(of 6\\).*allowNonFinite: true`,
              ),
            );
            return true;
          });
          assert.deepEqual(Array.from(await params.get("layer.weight")!.read()), [0, 0, 0, 0, 0, 0], dtype);
          await loadParams(params, ckpt, { allowNonFinite: true });
          assert.deepEqual(Array.from(await params.get("layer.weight")!.read()), [1, 2, 3, 4, bad, 6], dtype);
          ckpt.close();
          for (const t of params.values()) t.dispose();
        }
      }
    });
  },
);
