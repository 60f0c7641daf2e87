/**
 * Attention speed on this machine's adapter: forward + backward (causal, through autograd) of the three
 * implementations, `fused` (one thread per row), `matmul` (score blocks through the matmul kernels)
 * and `flash` (FlashAttention-2 style blocks of rows per workgroup), beside PyTorch CPU on the same
 * shapes in the same run (bench/attention_ref.py), each output checked against the CPU reference.
 *
 *     deno run -A bench/attention_speed.ts [--json] [--no-ref] [--dtype f32|f16] [--shapes '[[B, NH, T, HS], ...]']
 *
 * Default shapes: short sequences in large batches (the ASVR depth head's T = 8, the embedded study's
 * text), a T that is not a multiple of 4, and longer ones (T 256, 1024). With `--json`, one object per
 * shape: {op, shape, dtype, fused_ms, matmul_ms, flash_ms, auto, fused_err, matmul_err, flash_err, ref_ms,
 * ref_impl}. `--dtype f16` runs the kernels on f16 tensors; PyTorch's figure stays f32.
 * @module
 */

import { parseArgs } from "node:util";
import { backward } from "../core/autograd.ts";
import { Engine } from "../core/engine.ts";
import { roundToF16 } from "../core/dtype.ts";
import { maxAbsDiff, randn } from "../core/testing.ts";
import { attention, attentionKernel } from "../core/kernels/attention/attention.ts";
import { attentionCpu } from "../core/kernels/attention/attention_cpu.ts";
import { medianMs, referenceTimings } from "./timing.ts";

const DEFAULT_SHAPES = [
  [512, 4, 8, 32],
  [64, 4, 16, 32],
  [16, 4, 64, 32],
  [8, 4, 97, 32],
  [8, 4, 128, 32],
  [1, 8, 256, 64],
  [1, 8, 1024, 128],
];

const { values: args } = parseArgs({
  args: Deno.args.filter((a) => a !== "--"),
  options: {
    json: { type: "boolean", default: false },
    "no-ref": { type: "boolean", default: false },
    shapes: { type: "string" },
    dtype: { type: "string", default: "f32" },
  },
});
const shapes = args.shapes ? JSON.parse(args.shapes) as number[][] : DEFAULT_SHAPES;
if (args.dtype !== "f32" && args.dtype !== "f16") throw new Error(`--dtype: f32 or f16, got ${args.dtype}`);
const dtype: "f32" | "f16" = args.dtype;

const ref = args["no-ref"]
  ? new Map<string, { median_ms: number; impl: string }>()
  : await referenceTimings("attention_ref.py", [JSON.stringify(shapes)]);
const e = await Engine.create();
if (!args.json) console.log(`adapter: ${e.info.description}; fwd + bwd, causal, ${dtype}`);
for (const [B, NH, T, HS] of shapes) {
  const n = B * NH * T * HS;
  // f16: the CPU reference sees the f16-rounded inputs.
  const host = [randn(n, 3, 0.5), randn(n, 4, 0.5), randn(n, 5)].map((x) =>
    dtype === "f16" ? roundToF16(x) : x
  );
  const [q, k, v] = host.map((x) => e.tensor(x, [B, NH, T, HS], dtype));
  for (const t of [q, k, v]) t.requiresGrad = true;
  const want = attentionCpu(host[0], host[1], host[2], { B, NH, NKV: NH, T, HS }).out;
  const ms: Record<string, number> = {}, err: Record<string, number> = {};
  for (const kernel of ["fused", "matmul", "flash"] as const) {
    ms[kernel] = await medianMs(e, () => {
      const o = attention(q, k, v, { kernel });
      backward(o, e.full(o.shape, 1, dtype));
    });
    err[kernel] = maxAbsDiff(await e.tidy(() => e.noGrad(() => attention(q, k, v, { kernel }))).read(), want);
  }
  const key = [B, NH, T, HS].join("x"), r = ref.get(`attention_fwd_bwd ${key}`), refMs = r?.median_ms ?? null;
  const rec = {
    op: "attention_fwd_bwd",
    shape: [B, NH, T, HS],
    dtype,
    fused_ms: ms.fused,
    matmul_ms: ms.matmul,
    flash_ms: ms.flash,
    auto: attentionKernel(e, { B, NH, NKV: NH, T, HS }, dtype),
    fused_err: err.fused,
    matmul_err: err.matmul,
    flash_err: err.flash,
    ref_ms: refMs,
    ref_impl: r?.impl ?? null,
  };
  if (args.json) console.log(JSON.stringify(rec));
  else {
    const vs = refMs === null ? "" : `  torch-cpu ${refMs.toFixed(1).padStart(7)} ms`;
    const col = (name: string) => `${name} ${ms[name].toFixed(1).padStart(7)} ms`;
    console.log(
      `${key.padEnd(14)} ${col("fused")}  ${col("matmul")}  ${col("flash")}  ` +
        `fused/matmul ${(ms.fused / ms.matmul).toFixed(2)}  flash/best ${
          (ms.flash / Math.min(ms.fused, ms.matmul)).toFixed(2)
        }  auto ${rec.auto.padEnd(6)}  ` +
        `err ${Math.max(err.fused, err.matmul).toExponential(1)} flash ${err.flash.toExponential(1)}${vs}`,
    );
  }
  for (const t of [q, k, v]) t.dispose();
}
