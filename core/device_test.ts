import assert from "node:assert/strict";
import { Engine } from "./engine.ts";
import { testEngine } from "./testing.ts";

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
  name: "device: disableSubgroups opens the device without them, f16 as it was",
  ...gpu,
  fn: async () => {
    const on = await testEngine();
    const e = await Engine.create({ disableSubgroups: true });
    try {
      assert.equal(e.hasSubgroups, false);
      assert.ok(!e.info.requestedFeatures.includes("subgroups"));
      assert.ok(!e.device.features.has("subgroups"));
      assert.equal(e.hasF16, on.hasF16);
      assert.equal(e.setSubgroups(true), false);
      assert.equal(e.hasSubgroups, false, "cannot be turned on without the feature");
    } finally {
      await e.close();
    }
  },
});

Deno.test({
  name: "device: setSubgroups turns the kernels' subgroup operations off and back on",
  ...gpu,
  fn: async () => {
    const e = await testEngine();
    const granted = e.info.requestedFeatures.includes("subgroups");
    assert.equal(e.setSubgroups(false), granted);
    assert.equal(e.hasSubgroups, false);
    assert.equal(e.setSubgroups(true), false);
    assert.equal(e.hasSubgroups, granted);
  },
});

Deno.test({
  name: "device: disableF16 leaves subgroups as they were",
  ...gpu,
  fn: async () => {
    const on = await testEngine();
    const noF16 = await Engine.create({ disableF16: true });
    try {
      assert.equal(noF16.hasF16, false);
      assert.equal(noF16.hasSubgroups, on.hasSubgroups);
    } finally {
      await noF16.close();
    }
  },
});
