/**
 * `deno task info`: prints the WebGPU adapter, its backend, features and limits, and what the engine
 * requested of it. Exits 1 with the fix when there is no adapter.
 * @module
 */

import { Engine } from "../core/engine.ts";
import { NoAdapterError } from "../core/device.ts";

/** The report `deno task info` prints, as lines. */
export function describeEngine(e: Engine): string[] {
  const i = e.info;
  const backend = Deno.env.get("DENO_WEBGPU_BACKEND") ?? "default (Vulkan/Metal/DX12 by platform)";
  const mib = (n: number) => `${(n / 2 ** 20).toFixed(0)} MiB`;
  const lines = [
    `adapter:   ${i.description}${i.isFallbackAdapter ? " (software adapter: correct, slow)" : ""}`,
    `vendor:    ${i.vendor || "-"}  architecture: ${i.architecture || "-"}`,
    `backend:   ${backend}`,
    `features:  ${i.adapterFeatures.join(", ")}`,
    `requested: ${i.requestedFeatures.join(", ") || "(none)"}; f16 tensors ${e.hasF16 ? "on" : "off"}`,
    `limits requested at the adapter's maximum:`,
    `  maxStorageBufferBindingSize  ${mib(i.limits.maxStorageBufferBindingSize)}`,
    `  maxBufferSize                ${mib(i.limits.maxBufferSize)}`,
  ];
  for (
    const k of [
      "maxComputeWorkgroupStorageSize",
      "maxComputeInvocationsPerWorkgroup",
      "maxComputeWorkgroupSizeX",
      "maxComputeWorkgroupsPerDimension",
      "maxStorageBuffersPerShaderStage",
      "maxTextureDimension2D",
    ]
  ) {
    lines.push(`  ${k.padEnd(32)} ${i.limits[k]}`);
  }
  return lines;
}

if (import.meta.main) {
  try {
    const e = await Engine.create();
    console.log(describeEngine(e).join("\n"));
    e.destroy();
  } catch (err) {
    if (err instanceof NoAdapterError) {
      console.error(err.message);
      Deno.exit(1);
    }
    throw err;
  }
}
