import assert from "node:assert/strict";
import { gpuTest } from "../../testing.ts";
import { attentionKernel, engineAttentionKernel, setAttentionKernel, setTunedKernel } from "./attention.ts";
import type { AttentionDims } from "./attention_cpu.ts";
import { formatTuning, tuneAttention } from "./attention_tune.ts";

gpuTest("tuneAttention: times each implementation and makes the fastest auto's choice", async (e) => {
  const d: AttentionDims = { B: 1, NH: 4, NKV: 2, T: 32, HS: 16 };
  try {
    const t = await tuneAttention(e, d, "f32", {}, { trials: 1, trialMs: 5 });
    assert.deepEqual(Object.keys(t.ms).sort(), ["flash", "fused", "matmul"]);
    for (const ms of Object.values(t.ms)) assert.ok(ms > 0 && Number.isFinite(ms), `${ms}`);
    assert.equal(t.ms[t.best], Math.min(...Object.values(t.ms)));
    assert.equal(attentionKernel(e, d, "f32"), t.best);
    // The nearest T tuned applies; another head size, dtype or mask keeps the built-in choice.
    assert.equal(attentionKernel(e, { ...d, T: 100, B: 4 }, "f32"), t.best);
    const builtIn = (dd: AttentionDims, dtype: "f32" | "f16", opts = {}) => {
      setAttentionKernel(e, "auto");
      const k = attentionKernel(e, dd, dtype, opts);
      setTunedKernel(e, d, "f32", {}, t.best);
      return k;
    };
    for (
      const [dd, dtype, opts] of [[{ ...d, HS: 8 }, "f32", {}], [d, "f16", {}], [d, "f32", {
        window: 8,
      }]] as const
    ) {
      assert.equal(attentionKernel(e, dd, dtype, opts), builtIn(dd, dtype, opts));
    }
    assert.match(
      formatTuning(t),
      /^B1 NH4\/2 T32 HS16 f32: flash [\d.]+ ms, matmul [\d.]+ ms, fused [\d.]+ ms -> \w+$/,
    );
    // A forced kernel and setAttentionKernel come first.
    assert.equal(attentionKernel(e, d, "f32", { kernel: "fused" }), "fused");
    const forced = t.best === "flash" ? "fused" : "flash";
    setAttentionKernel(e, forced);
    assert.equal(engineAttentionKernel(e), forced);
    assert.equal(attentionKernel(e, d, "f32"), forced);
    setAttentionKernel(e, "auto");
    assert.equal(engineAttentionKernel(e), "auto");
  } finally {
    setAttentionKernel(e, "auto");
  }
});

gpuTest("setTunedKernel: the nearest T by ratio, within reach; matmul only where its scores fit", (e) => {
  const d: AttentionDims = { B: 2, NH: 8, NKV: 8, T: 64, HS: 32 };
  try {
    setTunedKernel(e, d, "f32", {}, "flash");
    setTunedKernel(e, { ...d, T: 1024 }, "f32", {}, "fused");
    assert.equal(attentionKernel(e, { ...d, T: 200 }, "f32"), "flash"); // 200/64 < 1024/200
    assert.equal(attentionKernel(e, { ...d, T: 400 }, "f32"), "fused");
    assert.equal(attentionKernel(e, { ...d, T: 16 }, "f32"), "flash"); // 4x away: still in reach
    // Further than TUNED_REACH from every T measured: the built-in choice (never fused here).
    setTunedKernel(e, { ...d, T: 32 }, "f32", {}, "fused");
    assert.equal(attentionKernel(e, { ...d, T: 8 }, "f32"), "fused");
    assert.notEqual(attentionKernel(e, { ...d, T: 4 }, "f32"), "fused");
    // T not a multiple of 4 is another class: the built-in choice (never fused at these shapes) until measured.
    setTunedKernel(e, { ...d, T: 400 }, "f32", {}, "fused");
    assert.notEqual(attentionKernel(e, { ...d, T: 401 }, "f32"), "fused");
    setTunedKernel(e, { ...d, T: 399 }, "f32", {}, "fused");
    assert.equal(attentionKernel(e, { ...d, T: 401 }, "f32"), "fused");
    setTunedKernel(e, { ...d, T: 1024 }, "f32", {}, "matmul"); // replaces T 1024's entry
    assert.equal(attentionKernel(e, { ...d, T: 1024 }, "f32"), "matmul");
    // Scores of one kv group far over any buffer: the matmul path cannot take it.
    const huge = { ...d, NH: 64, NKV: 1, T: 1 << 16 };
    setTunedKernel(e, huge, "f32", {}, "matmul");
    assert.notEqual(attentionKernel(e, huge, "f32"), "matmul");
    setAttentionKernel(e, "auto"); // forgets the measured choices: the built-in one for these f32 shapes
    assert.equal(attentionKernel(e, { ...d, T: 200 }, "f32"), "matmul");
  } finally {
    setAttentionKernel(e, "auto");
  }
});
