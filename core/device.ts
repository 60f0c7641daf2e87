/**
 * Opening the GPU: the adapter's own limits are requested (not WebGPU's 128 MiB / 256 MiB defaults),
 * the `shader-f16` and `timestamp-query` features where the adapter has them, and `subgroups` always
 * (some runtimes grant it without listing it among the adapter's features; where the request fails,
 * the device is opened again without it).
 * @module
 */

/** What the engine asked of the adapter, and what it got. */
export interface DeviceInfo {
  /** The adapter's description (e.g. "NVIDIA H100", "llvmpipe (LLVM 15.0.6, 256 bits)"). */
  description: string;
  /** The vendor string, as the adapter reports it. */
  vendor: string;
  /** The architecture string, as the adapter reports it. */
  architecture: string;
  /** True for a software (CPU) adapter such as Mesa's lavapipe. */
  isFallbackAdapter: boolean;
  /** The smallest subgroup size the adapter may run (4, WebGPU's minimum, where it does not say). */
  subgroupMinSize: number;
  /** Features the adapter offers. */
  adapterFeatures: string[];
  /** Features the engine requested and was granted. */
  requestedFeatures: string[];
  /** The limits the device was created with (the adapter's own maxima for the ones we raise). */
  limits: Record<string, number>;
}

/** Thrown when no WebGPU adapter is present; its message says how to get one. */
export class NoAdapterError extends Error {
  /** An error whose message names the fix; `detail` says what was missing. */
  constructor(detail = "") {
    super(
      "No WebGPU adapter found" + (detail ? ` (${detail})` : "") + ". asvr trains through Deno's WebGPU:\n" +
        "  - on a machine with a GPU, install its Vulkan driver (NVIDIA, AMD, Intel) or use Metal on macOS;\n" +
        "  - without a GPU, install Mesa's software Vulkan driver: `apt-get install mesa-vulkan-drivers`\n" +
        "    (correct but slow; fine for tests and the tiny default);\n" +
        "  - set DENO_WEBGPU_BACKEND=vulkan (or metal, dx12) to choose a backend explicitly.",
    );
    this.name = "NoAdapterError";
  }
}

/** Limits raised to the adapter's maximum instead of WebGPU's defaults. */
export const RAISED_LIMITS = [
  "maxStorageBufferBindingSize",
  "maxBufferSize",
  "maxComputeWorkgroupStorageSize",
  "maxComputeInvocationsPerWorkgroup",
  "maxComputeWorkgroupSizeX",
  "maxComputeWorkgroupSizeY",
  "maxComputeWorkgroupSizeZ",
  "maxComputeWorkgroupsPerDimension",
  "maxStorageBuffersPerShaderStage",
  "maxUniformBufferBindingSize",
  "maxBindGroups",
] as const;

/** The name of a limit the engine raises to the adapter's maximum. */
export type RaisedLimit = (typeof RAISED_LIMITS)[number];

/** Features requested when the adapter offers them. */
const WANTED_FEATURES = ["shader-f16", "timestamp-query"] as const;

/** Options of {@linkcode openDevice}. */
export interface OpenDeviceOptions {
  /** "high-performance" (default) or "low-power". */
  powerPreference?: GPUPowerPreference;
  /**
   * Lower some limits below the adapter's (e.g. `{ maxStorageBufferBindingSize: 1 << 20 }`), to test
   * code paths that split large tensors on an adapter with large limits.
   */
  limitOverrides?: Partial<Record<RaisedLimit, number>>;
  /** Do not request `shader-f16` even when offered. */
  disableF16?: boolean;
  /** Do not request `subgroups` (the kernels then reduce through workgroup memory only). */
  disableSubgroups?: boolean;
}

/** Opens the adapter and a device with its own limits; throws {@linkcode NoAdapterError} if none. */
export async function openDevice(
  options: OpenDeviceOptions = {},
): Promise<{ device: GPUDevice; info: DeviceInfo }> {
  if (typeof navigator === "undefined" || !("gpu" in navigator)) {
    throw new NoAdapterError("navigator.gpu is missing in this runtime");
  }
  const adapter = await navigator.gpu.requestAdapter({
    powerPreference: options.powerPreference ?? "high-performance",
  });
  if (!adapter) throw new NoAdapterError();
  const requiredLimits: Record<string, number> = {};
  for (const name of RAISED_LIMITS) {
    const max = (adapter.limits as unknown as Record<string, number>)[name];
    if (typeof max !== "number") continue;
    const want = options.limitOverrides?.[name];
    requiredLimits[name] = want === undefined ? max : Math.min(max, want);
  }
  const requestedFeatures: string[] = WANTED_FEATURES.filter((f) =>
    adapter.features.has(f) && !(f === "shader-f16" && options.disableF16)
  );
  const open = (features: string[]) =>
    adapter.requestDevice({ requiredFeatures: features as GPUFeatureName[], requiredLimits });
  let device: GPUDevice | null = null;
  if (!options.disableSubgroups) {
    try {
      device = await open([...requestedFeatures, "subgroups"]);
    } catch {
      // Not grantable here: open without it below.
    }
    if (device?.features.has("subgroups")) requestedFeatures.push("subgroups");
  }
  device ??= await open(requestedFeatures);
  const limits: Record<string, number> = {};
  for (const key in device.limits) {
    const v = (device.limits as unknown as Record<string, number>)[key];
    if (typeof v === "number") limits[key] = v;
  }
  // Overrides lower what kernels may assume even where the adapter grants more.
  for (const [k, v] of Object.entries(options.limitOverrides ?? {})) limits[k] = Math.min(limits[k] ?? v, v);
  const ai = adapter.info;
  return {
    device,
    info: {
      description: ai.description || ai.device || "unknown",
      vendor: ai.vendor,
      architecture: ai.architecture,
      isFallbackAdapter: (ai as unknown as { isFallbackAdapter?: boolean }).isFallbackAdapter ?? false,
      subgroupMinSize: (ai as unknown as { subgroupMinSize?: number }).subgroupMinSize ?? 4,
      adapterFeatures: [...adapter.features].sort(),
      requestedFeatures: [...requestedFeatures],
      limits,
    },
  };
}
