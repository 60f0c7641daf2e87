/**
 * `deno task info`: prints the WebGPU adapter, its backend, features and limits, and what the engine
 * requested of it. Exits 1 with the fix when there is no adapter. Under an MPI launcher
 * (`mpirun -np 2 dist/gpu_pin.sh deno task info`) each rank prefixes its lines with its local rank
 * and says which GPU it was pinned to, if any.
 * @module
 */

import { Engine } from "../core/engine.ts";
import { NoAdapterError } from "../core/device.ts";
import { isLaunchedByMpi, launcherLocalRank, launcherWorldSize } from "../dist/launcher.ts";

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
    `requested: ${i.requestedFeatures.join(", ") || "(none)"}; f16 tensors ${e.hasF16 ? "on" : "off"}; ` +
    `subgroups in kernels ${e.hasSubgroups ? "on" : "off"} (smallest subgroup ${i.subgroupMinSize})`,
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

/**
 * Under an MPI launcher, the line saying this rank's place and the GPU it was pinned to (the PCI
 * address `dist/gpu_pin.sh` put in `DRI_PRIME` for Mesa's Vulkan device-select layer), and the prefix
 * for each of its lines; `undefined` without a launcher. Reads only the launcher's variables: no MPI
 * library is loaded.
 */
export function describeLaunch(
  env: (name: string) => string | undefined = (name) => Deno.env.get(name),
): { prefix: string; line: string } | undefined {
  if (!isLaunchedByMpi(env)) return undefined;
  const localRank = launcherLocalRank(env);
  const worldSize = launcherWorldSize(env);
  const rank = localRank === undefined ? "local rank unknown" : `local rank ${localRank}`;
  const of = worldSize === undefined ? "" : ` of ${worldSize} ranks`;
  const driPrime = env("DRI_PRIME");
  const pin = driPrime === undefined || driPrime === ""
    ? "not pinned: every rank may share one GPU; run under dist/gpu_pin.sh"
    : `DRI_PRIME=${driPrime}` +
      (env("MESA_VK_DEVICE_SELECT_FORCE_DEFAULT_DEVICE") === "1" ? ", only that device visible" : "");
  return { prefix: `[${rank}] `, line: `rank:      ${rank}${of} (${pin})` };
}

if (import.meta.main) {
  const launch = describeLaunch();
  const prefix = launch?.prefix ?? "";
  try {
    const e = await Engine.create();
    const lines = launch ? [launch.line, ...describeEngine(e)] : describeEngine(e);
    console.log(lines.map((l) => prefix + l).join("\n"));
    await e.close();
  } catch (err) {
    if (err instanceof NoAdapterError) {
      if (launch) console.error(prefix + launch.line);
      console.error(err.message);
      Deno.exit(1);
    }
    throw err;
  }
}
