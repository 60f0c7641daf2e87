import assert from "node:assert/strict";
import { gpuTest, randn } from "./testing.ts";
import { matmul } from "./kernels/matmul/matmul.ts";
import { softmax } from "./kernels/softmax/softmax.ts";
import { formatKernelTimes } from "./profiler.ts";

gpuTest(
  "profiling: GPU time per kernel label, counting only the dispatches made while it runs",
  async (e) => {
    if (!e.device.features.has("timestamp-query")) return;
    const a = e.tensor(randn(64 * 64, 1), [64, 64]);
    e.noGrad(() => softmax(a)).dispose(); // before: not measured
    e.startProfiling();
    const outs = e.noGrad(() => [matmul(a, a), matmul(a, a), matmul(a, a), softmax(a)]);
    const times = await e.stopProfiling();
    e.noGrad(() => softmax(a)).dispose(); // after: not measured
    const calls = Object.fromEntries(times.map((t) => [t.label, t.calls]));
    const mm = Object.keys(calls).filter((l) => l.startsWith("matmul"));
    assert.equal(mm.reduce((s, l) => s + calls[l], 0), 3, JSON.stringify(calls));
    assert.equal(calls.softmax, 1);
    for (const t of times) assert.ok(t.ms >= 0 && Number.isFinite(t.ms), JSON.stringify(t));
    assert.ok(times.some((t) => t.ms > 0));
    const table = formatKernelTimes(times);
    assert.match(table, /^kernel +calls +total ms/);
    assert.match(table, /\nsoftmax +1 /);
    await assert.rejects(() => e.stopProfiling(), /not started/);
    for (const t of [a, ...outs]) t.dispose();
  },
);
