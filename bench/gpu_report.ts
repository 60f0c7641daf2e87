/**
 * `deno task bench:gpu [--json] [--small]`: the measurements to take on a real GPU, in one run: the
 * adapter's limits and features (and whether `subgroups` is grantable), the latency of an empty
 * readback, f32 and f16 matmul at 4096^3 (against the card's non-tensor-core peak when known), and
 * attention forward+backward; then PyTorch on the same GPU (bench/gpu_ref.py) as the anchor when it
 * imports with CUDA. `--small` shrinks every shape so the script can be checked on a software adapter.
 * @module
 */

import { parseArgs } from "node:util";
import { Engine } from "../core/engine.ts";
import { randn } from "../core/random.ts";
import { backward } from "../core/autograd.ts";
import { maxAbsDiff } from "../core/testing.ts";
import { matmul, type MatmulOptions } from "../core/kernels/matmul/matmul.ts";
import { matmulCpu } from "../core/kernels/matmul/matmul_cpu.ts";
import { attention } from "../core/kernels/attention/attention.ts";
import { medianMs } from "./timing.ts";
import type { Tensor } from "../core/tensor.ts";

const { values: args } = parseArgs({
  args: Deno.args.filter((a) => a !== "--"),
  options: { json: { type: "boolean", default: false }, small: { type: "boolean", default: false } },
});

/** Non-tensor-core peaks in TFLOP/s (dense f32 FMA, f16 FMA without tensor cores), by adapter name. */
const PEAKS: [RegExp, { f32: number; f16: number }][] = [
  [/H100/i, { f32: 67, f16: 134 }],
  [/H200/i, { f32: 67, f16: 134 }],
  [/A100/i, { f32: 19.5, f16: 78 }],
];

const out: Record<string, unknown>[] = [];
function emit(r: Record<string, unknown>): void {
  out.push(r);
  console.log(args.json ? JSON.stringify(r) : Object.entries(r).map(([k, v]) => `${k}=${fmt(v)}`).join("  "));
}
function fmt(v: unknown): string {
  return typeof v === "number" ? (Number.isInteger(v) ? String(v) : v.toPrecision(4)) : JSON.stringify(v);
}

// Adapter, limits, features; is `subgroups` grantable when requested? Asked whether or not the adapter
// lists it: some runtimes grant it unlisted.
const adapter = await navigator.gpu.requestAdapter({ powerPreference: "high-performance" });
const listed = adapter?.features.has("subgroups" as GPUFeatureName) ? "listed" : "not listed";
let subgroups = "no adapter";
if (adapter) {
  try {
    const d = await adapter.requestDevice({ requiredFeatures: ["subgroups" as GPUFeatureName] });
    subgroups = `${d.features.has("subgroups" as GPUFeatureName) ? "granted" : "not granted"} (${listed})`;
    d.destroy();
  } catch (err) {
    subgroups = `refused (${listed}): ${(err as Error).message}`;
  }
}
const e = await Engine.create();
const peak = PEAKS.find(([re]) => re.test(e.info.description))?.[1];
emit({
  what: "adapter",
  description: e.info.description,
  features: e.info.adapterFeatures,
  subgroups,
  kernelSubgroups: e.hasSubgroups,
  maxStorageBufferBindingSize: e.info.limits.maxStorageBufferBindingSize,
  maxBufferSize: e.info.limits.maxBufferSize,
  maxComputeWorkgroupStorageSize: e.info.limits.maxComputeWorkgroupStorageSize,
  maxComputeInvocationsPerWorkgroup: e.info.limits.maxComputeInvocationsPerWorkgroup,
});

// Latency of an empty submit + wait, and of a 4-byte readback.
{
  const t = e.zeros([1]);
  await t.read();
  const waits: number[] = [], reads: number[] = [];
  for (let i = 0; i < 20; i++) {
    let t0 = performance.now();
    await e.sync();
    waits.push(performance.now() - t0);
    t0 = performance.now();
    await t.read();
    reads.push(performance.now() - t0);
  }
  const med = (xs: number[]) => xs.sort((a, b) => a - b)[xs.length >> 1];
  emit({ what: "latency", empty_wait_ms: med(waits), readback_4B_ms: med(reads) });
  t.dispose();
}

/**
 * Times a @ b (a [M, K]) and checks the first rows of its result against `want` (the CPU product of
 * a's first `want.length / N` rows).
 */
async function timeMatmul(a: Tensor, b: Tensor, opts: MatmulOptions, want: ArrayLike<number>) {
  const M = a.shape[0], K = a.shape[1], N = want.length / 4;
  const ms = await medianMs(e, () => matmul(a, b, opts));
  const got = (await e.tidy(() => matmul(a, b, opts)).read()).subarray(0, want.length);
  const tflops = 2 * M * N * K / ms / 1e9;
  return {
    median_ms: ms,
    tflops,
    fraction_of_peak: peak ? tflops / peak[a.dtype as "f32" | "f16"] : null,
    max_abs_err: maxAbsDiff(got, want),
  };
}

// Matmul n^3, f32 and f16, with each storage-buffer kernel (tiled and vec4; 64 x 64 and 128 x 128 tiles),
// b as stored and transposed (x @ W^T, the layers' product), and f16 with packed f16 products.
const n = args.small ? 256 : 4096;
for (const dtype of e.hasF16 ? ["f32", "f16"] as const : ["f32"] as const) {
  const as = randn(n * n, 1), bs = randn(n * n, 2);
  const a = e.tensor(as, [n, n], dtype), b = e.tensor(bs, [n, n], dtype);
  const cases: MatmulOptions[] = [
    ...(["tiled", "tiled128", "vec4", "vec4_128"] as const).map((kernel) => ({ kernel })),
    { kernel: "tiled128", transB: true },
    { kernel: "vec4_128", transB: true },
    ...(dtype === "f16"
      ? [false, true].map((transB) => ({ kernel: "vec4_128" as const, transB, packedF16: true }))
      : []),
  ];
  for (const opts of cases) {
    // b^T's first 4 rows times b, so one CPU reference serves both layouts (b is square).
    const want = matmulCpu(as.subarray(0, 4 * n), bs, { M: 4, N: n, K: n, transB: opts.transB });
    emit({
      what: "matmul",
      shape: [n, n, n],
      dtype,
      kernel: opts.kernel,
      transB: opts.transB ?? false,
      packedF16: opts.packedF16 ?? false,
      ...await timeMatmul(a, b, opts, want),
    });
  }
  a.dispose();
  b.dispose();
}

// A product with few output tiles (LoRA's x @ A^T: N = 128, K = 4096): K split into parts or not.
{
  const [M, N, K] = args.small ? [64, 16, 512] : [2048, 128, 4096];
  for (const dtype of e.hasF16 ? ["f32", "f16"] as const : ["f32"] as const) {
    const as = randn(M * K, 1), bs = randn(N * K, 2);
    const a = e.tensor(as, [M, K], dtype), b = e.tensor(bs, [N, K], dtype);
    const want = matmulCpu(as.subarray(0, 4 * K), bs, { M: 4, N, K, transB: true });
    for (const splitK of [1, undefined]) {
      const opts: MatmulOptions = { transB: true, splitK };
      emit({
        what: "matmul_few_tiles",
        shape: [M, N, K],
        dtype,
        splitK: splitK ?? "auto",
        ...await timeMatmul(a, b, opts, want),
      });
    }
    a.dispose();
    b.dispose();
  }
}

// Attention forward + backward, causal.
{
  const [B, NH, T, HS] = args.small ? [1, 4, 128, 64] : [1, 32, 2048, 128];
  for (const dtype of e.hasF16 ? ["f32", "f16"] as const : ["f32"] as const) {
    const size = B * NH * T * HS;
    const [q, k, v] = [3, 4, 5].map((s) => e.tensor(randn(size, s, 0.5), [B, NH, T, HS], dtype));
    for (const t of [q, k, v]) t.requiresGrad = true;
    for (const kernel of ["fused", "matmul", "flash"] as const) {
      const ms = await medianMs(e, () => {
        const o = attention(q, k, v, { kernel });
        backward(o, e.full(o.shape, 1, dtype));
      });
      const flops = B * NH * 4 * T * T * HS * 3.5 / 2;
      emit({
        what: "attention_fwd_bwd",
        shape: [B, NH, T, HS],
        dtype,
        kernel,
        median_ms: ms,
        tflops: flops / ms / 1e9,
      });
    }
    for (const t of [q, k, v]) t.dispose();
  }
}

// PyTorch on the same GPU, when present.
try {
  const script = new URL("./gpu_ref.py", import.meta.url).pathname;
  const r = await new Deno.Command("python3", {
    args: [script, args.small ? "small" : "full"],
    stderr: "inherit",
  })
    .output();
  for (const line of new TextDecoder().decode(r.stdout).split("\n")) if (line.trim()) emit(JSON.parse(line));
} catch (err) {
  emit({ what: "torch_reference", error: (err as Error).message });
}
e.destroy();
