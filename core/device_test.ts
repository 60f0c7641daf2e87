import assert from "node:assert/strict";
import { Engine } from "./engine.ts";
import { testEngine, testEngineWithoutSubgroups } from "./testing.ts";

const gpu = { sanitizeResources: false, sanitizeOps: false };

// Whether this adapter grants `subgroups` when asked, listed among its features or not.
async function subgroupsGrantable(): Promise<boolean> {
  const adapter = await navigator.gpu.requestAdapter({ powerPreference: "high-performance" });
  try {
    const d = await adapter!.requestDevice({ requiredFeatures: ["subgroups" as GPUFeatureName] });
    const granted = d.features.has("subgroups");
    d.destroy();
    return granted;
  } catch {
    return false;
  }
}

Deno.test({
  name: "device: subgroups are requested even when the adapter does not list them",
  ...gpu,
  fn: async () => {
    const e = await testEngine();
    assert.equal(e.hasSubgroups, await subgroupsGrantable());
    assert.equal(e.hasSubgroups, e.info.requestedFeatures.includes("subgroups"));
    assert.equal(e.hasSubgroups, e.device.features.has("subgroups"));
    // Deno's WebGPU grants them on Mesa's lavapipe, the adapter of CPU-only machines.
    if (/llvmpipe/i.test(e.info.description)) assert.equal(e.hasSubgroups, true);
  },
});

Deno.test({
  name: "device: disableSubgroups opens the device without them",
  ...gpu,
  fn: async () => {
    const e = await testEngineWithoutSubgroups();
    assert.equal(e.hasSubgroups, false);
    assert.ok(!e.info.requestedFeatures.includes("subgroups"));
    assert.ok(!e.device.features.has("subgroups"));
  },
});

Deno.test({
  name: "device: disableSubgroups leaves f16 as it was",
  ...gpu,
  fn: async () => {
    const on = await testEngine(), off = await testEngineWithoutSubgroups();
    assert.equal(off.hasF16, on.hasF16);
    const noF16 = await Engine.create({ disableF16: true });
    try {
      assert.equal(noF16.hasF16, false);
      assert.equal(noF16.hasSubgroups, on.hasSubgroups);
    } finally {
      noF16.destroy();
    }
  },
});
