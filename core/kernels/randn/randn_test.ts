import assert from "node:assert/strict";
import { gpuTest } from "../../testing.ts";
import { randnGpu } from "./randn.ts";
import { randnHashCpu, uniformAt } from "./randn_cpu.ts";

gpuTest("randnGpu: equals the CPU reference element for element, f32 and f16, over a 2-D grid", async (e) => {
  // 70001 elements / 256 threads = 274 groups; 17 million take the y dimension of the grid too.
  for (const [n, dtype, tol] of [[70001, "f32", 2e-5], [1000, "f16", 4e-3]] as const) {
    const got = await randnGpu(e, [n], 1234, 0.5, dtype).read();
    const want = randnHashCpu(n, 1234, 0.5);
    for (let i = 0; i < n; i++) {
      assert.ok(
        Math.abs(got[i] - want[i]) <= tol * (1 + Math.abs(want[i])),
        `element ${i}: ${got[i]} vs ${want[i]}`,
      );
    }
  }
  const big = 17_000_001;
  const tail = (await randnGpu(e, [big], 7).read()).subarray(big - 5);
  const want = randnHashCpu(big, 7).subarray(big - 5);
  for (let i = 0; i < 5; i++) {
    assert.ok(Math.abs(tail[i] - want[i]) < 1e-4, `tail ${i}: ${tail[i]} vs ${want[i]}`);
  }
});

gpuTest("randnGpu: moments of N(0, std^2), different seeds differ", async (e) => {
  const n = 200_000;
  const x = Float32Array.from(await randnGpu(e, [n], 1, 2).read());
  const mean = x.reduce((s, v) => s + v, 0) / n;
  const std = Math.sqrt(x.reduce((s, v) => s + (v - mean) ** 2, 0) / n);
  assert.ok(Math.abs(mean) < 0.02, `mean ${mean}`);
  assert.ok(Math.abs(std - 2) < 0.02, `std ${std}`);
  const y = await randnGpu(e, [8], 2, 2).read();
  assert.notDeepEqual(Array.from(y), Array.from(x.subarray(0, 8)));
});

Deno.test("uniformAt: in (0, 1], no value repeats over the first 100000 counters", () => {
  const seen = new Set<number>();
  for (let i = 0; i < 100_000; i++) {
    const u = uniformAt(3, i);
    assert.ok(u > 0 && u <= 1);
    seen.add(u);
  }
  assert.ok(seen.size > 99_000, `only ${seen.size} distinct values`);
});
