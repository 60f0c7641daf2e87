import assert from "node:assert/strict";
import { Engine } from "../core/engine.ts";
import { gpuTest } from "../core/testing.ts";
import { attentionKernel, setAttentionKernel, setTunedKernel } from "../core/kernels/attention/attention.ts";
import type { AttentionDims } from "../core/kernels/attention/attention_cpu.ts";
import {
  forgetTunedMatmuls,
  isTunedMatmul,
  type ProductShape,
  setTunedMatmul,
} from "../core/kernels/matmul/matmul.ts";
import { parseSchema } from "../schema/parse.ts";
import { DataParallel } from "./data_parallel.ts";
import {
  countKernelChoices,
  kernelChoicesOf,
  kernelChoicesSchema,
  restoreKernelChoices,
  setKernelChoices,
  shareKernelChoices,
} from "./kernel_choices.ts";
import { Rendezvous } from "./testdata/fake_collectives.ts";

const d: AttentionDims = { B: 2, NH: 4, NKV: 2, T: 64, HS: 16 };
const product: ProductShape = {
  dtype: "f32",
  packedF16: false,
  batch: 1,
  M: 256,
  N: 64,
  K: 512,
  transA: false,
  transB: true,
};

gpuTest(
  "kernel choices: saved as JSON, checked, and restored on another engine, or shared by rank 0",
  async (e) => {
    const other = await Engine.create();
    try {
      // The implementation auto would not pick by itself, so that the restored choice shows.
      const pick = attentionKernel(e, d, "f32") === "flash" ? "fused" : "flash";
      setTunedKernel(e, d, "f32", {}, pick);
      setTunedMatmul(e, product, { kernel: "vec4", splitK: 2 });
      const saved = JSON.parse(JSON.stringify(kernelChoicesOf(e)));
      assert.equal(countKernelChoices(saved), "1 attention shape and 1 matmul product");
      assert.equal(countKernelChoices({ attention: [], matmul: [] }), "");
      assert.deepEqual(parseSchema(kernelChoicesSchema, saved, "kernelChoices"), saved);

      assert.notEqual(attentionKernel(other, d, "f32"), pick);
      assert.ok(!isTunedMatmul(other, product));
      setKernelChoices(other, saved);
      assert.equal(attentionKernel(other, { ...d, T: 100 }, "f32"), pick); // the nearest T measured
      assert.ok(isTunedMatmul(other, product));
      setKernelChoices(other, { attention: [], matmul: [] }); // replaces, not adds
      assert.notEqual(attentionKernel(other, d, "f32"), pick);
      assert.ok(!isTunedMatmul(other, product));

      // Rank 1 (the other engine) ends with rank 0's choices, whatever it measured itself.
      setTunedKernel(other, d, "f32", {}, pick === "flash" ? "fused" : "flash");
      const dps = new Rendezvous(2).endpoints().map((c) => new DataParallel(c));
      await Promise.all([shareKernelChoices(e, dps[0]), shareKernelChoices(other, dps[1])]);
      assert.deepEqual(kernelChoicesOf(other), kernelChoicesOf(e));
      await shareKernelChoices(e, null); // one process: nothing to do

      // A resume restores them on the adapter they were measured on (or where an older checkpoint
      // does not say), and leaves out those measured on another.
      assert.equal(saved.adapter, other.info.description);
      const restored = (c: typeof saved) => {
        setKernelChoices(other, { attention: [], matmul: [] });
        const line = restoreKernelChoices(other, c);
        return { line, kept: isTunedMatmul(other, product) };
      };
      const keptLine =
        "kernel choices measured earlier in this run, kept: 1 attention shape and 1 matmul product";
      assert.deepEqual(restored(saved), { line: keptLine, kept: true });
      const { adapter: _, ...older } = saved;
      assert.deepEqual(restored(older), { line: keptLine, kept: true });
      assert.deepEqual(restored({ ...saved, adapter: "Another GPU" }), {
        line: "kernel choices measured earlier in this run on Another GPU not kept: this adapter is " +
          `${other.info.description} (--tune measures them here)`,
        kept: false,
      });
      assert.equal(restoreKernelChoices(other, { attention: [], matmul: [] }), null);

      // A damaged entry is refused, naming it.
      const bad = structuredClone(saved);
      bad.matmul[0].choice.kernel = "vec8";
      assert.throws(
        () => parseSchema(kernelChoicesSchema, bad, "kernelChoices"),
        /kernelChoices\.matmul\[0\]\.choice\.kernel/,
      );
      bad.matmul[0].choice = { kernel: "vec4", splitK: 0 };
      assert.throws(() => parseSchema(kernelChoicesSchema, bad, "kernelChoices"), /splitK/);
    } finally {
      for (const x of [e, other]) {
        setAttentionKernel(x, "auto");
        forgetTunedMatmuls(x);
      }
      await other.close();
    }
  },
);
