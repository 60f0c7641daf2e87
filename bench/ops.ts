/**
 * `deno task bench [-- --json]`: times the engine's main kernels (matmul through bench/matmul_speed.ts,
 * and a training step of a small LLaMA and ViT through bench/models.ts) on this machine's adapter beside
 * PyTorch CPU on the same shapes in the same run, and checks each result against its CPU reference.
 * With `--json`, one JSON object per line (see {@linkcode BenchRecord}); otherwise a table. With
 * `--no-subgroups`, the softmax, RMSNorm and cross-entropy rows run without subgroup operations (to
 * compare with the default, which uses them where the device grants them).
 * @module
 */

import { parseArgs } from "node:util";
import { Engine } from "../core/engine.ts";
import { randInt, randn } from "../core/random.ts";
import { backward } from "../core/autograd.ts";
import { maxAbsDiff } from "../core/testing.ts";
import type { Tensor } from "../core/tensor.ts";
import { attention } from "../core/kernels/attention/attention.ts";
import { attentionCpu } from "../core/kernels/attention/attention_cpu.ts";
import { softmax } from "../core/kernels/softmax/softmax.ts";
import { softmaxForwardCpu } from "../core/kernels/softmax/softmax_cpu.ts";
import { rmsNorm } from "../core/kernels/rmsnorm/rmsnorm.ts";
import { rmsNormForwardCpu } from "../core/kernels/rmsnorm/rmsnorm_cpu.ts";
import { crossEntropy } from "../core/kernels/cross_entropy/cross_entropy.ts";
import { crossEntropyForwardCpu } from "../core/kernels/cross_entropy/cross_entropy_cpu.ts";
import { type BenchRecord, medianMs, referenceTimings } from "./timing.ts";

const { values: args } = parseArgs({
  // `deno task bench -- --json` passes the "--" through.
  args: Deno.args.filter((a) => a !== "--"),
  options: {
    json: { type: "boolean", default: false },
    "no-ref": { type: "boolean", default: false },
    "no-subgroups": { type: "boolean", default: false },
  },
});

/** Runs another bench script of this folder in its own process, with the same flags. */
async function runScript(name: string): Promise<void> {
  const r = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL(name, import.meta.url).pathname,
      ...Deno.args.filter((a) => a !== "--" && a !== "--no-subgroups"),
    ],
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  if (!r.success) Deno.exit(r.code);
}

// Matmul first (bench/matmul_speed.ts); the small-model training steps last (bench/models.ts).
await runScript("./matmul_speed.ts");

const e = await Engine.create({ disableSubgroups: args["no-subgroups"] });
const records: BenchRecord[] = [];
const ref = args["no-ref"] ? new Map() : await referenceTimings();

function emit(r: BenchRecord, refKey: string): void {
  const rr = ref.get(refKey);
  if (rr) {
    r.ref_ms = rr.median_ms;
    r.ref_impl = rr.impl;
    r.ratio_vs_ref = r.median_ms / rr.median_ms;
  }
  records.push(r);
  if (args.json) console.log(JSON.stringify(r));
  else {
    const rate = r.gflops !== undefined ? `${r.gflops.toFixed(2)} GFLOP/s` : `${r.gbps!.toFixed(2)} GB/s`;
    const vs = r.ratio_vs_ref !== undefined ? `  ${r.ratio_vs_ref.toFixed(2)}x torch-cpu time` : "";
    console.log(
      `${r.op.padEnd(24)} ${r.shape.join("x").padEnd(16)} ${r.dtype}  ${
        r.median_ms.toFixed(2).padStart(9)
      } ms  ` +
        `${rate.padStart(16)}  err ${r.max_abs_err.toExponential(1)}${vs}`,
    );
  }
}

async function readAll(t: Tensor): Promise<Float32Array> {
  return Float32Array.from(await t.read());
}

if (!args.json) console.log(`adapter: ${e.info.description}; subgroups ${e.hasSubgroups ? "on" : "off"}`);

// attention forward + backward, B=1, NH=8, T=256, HS=64, causal: both implementations.
{
  const [B, NH, T, HS] = [1, 8, 256, 64];
  const n = B * NH * T * HS;
  const qs = randn(n, 3, 0.5), ks = randn(n, 4, 0.5), vs = randn(n, 5);
  const q = e.tensor(qs, [B, NH, T, HS]), k = e.tensor(ks, [B, NH, T, HS]), v = e.tensor(vs, [B, NH, T, HS]);
  for (const t of [q, k, v]) t.requiresGrad = true;
  const want = attentionCpu(qs, ks, vs, { B, NH, NKV: NH, T, HS }).out;
  for (const kernel of ["fused", "matmul"] as const) {
    const ms = await medianMs(e, () => {
      const o = attention(q, k, v, { kernel });
      backward(o, e.full(o.shape, 1));
    });
    const o = e.tidy(() => e.noGrad(() => attention(q, k, v, { kernel })));
    // 4 T^2 HS per head forward (QK^T, PV), about 2.5x that for the backward; causal halves it.
    const flops = B * NH * (4 * T * T * HS) * 3.5 / 2;
    emit({
      op: `attention_fwd_bwd (${kernel})`,
      shape: [B, NH, T, HS],
      dtype: "f32",
      median_ms: ms,
      gflops: flops / ms / 1e6,
      max_abs_err: maxAbsDiff(await readAll(o), want),
    }, `attention_fwd_bwd ${B}x${NH}x${T}x${HS}`);
    o.dispose();
  }
  for (const t of [q, k, v]) t.dispose();
}

// softmax and RMSNorm, bandwidth-bound: GB/s counts one read and one write of the tensor.
{
  const [R, C] = [512, 32000];
  const xs = randn(R * C, 6);
  const x = e.tensor(xs, [R, C]);
  const ms = await medianMs(e, () => softmax(x));
  const got = await readAll(e.tidy(() => softmax(x)));
  emit({
    op: "softmax",
    shape: [R, C],
    dtype: "f32",
    median_ms: ms,
    gbps: 2 * R * C * 4 / ms / 1e6,
    max_abs_err: maxAbsDiff(got, softmaxForwardCpu(xs, C)),
  }, `softmax ${R}x${C}`);
  x.dispose();
}
{
  const [R, C] = [512, 4096];
  const xs = randn(R * C, 7), ws = randn(C, 8);
  const x = e.tensor(xs, [R, C]), w = e.tensor(ws, [C]);
  const ms = await medianMs(e, () => rmsNorm(x, w));
  const got = await readAll(e.tidy(() => rmsNorm(x, w)));
  emit({
    op: "rmsnorm",
    shape: [R, C],
    dtype: "f32",
    median_ms: ms,
    gbps: 2 * R * C * 4 / ms / 1e6,
    max_abs_err: maxAbsDiff(got, rmsNormForwardCpu(xs, ws, C, 1e-6).y),
  }, `rmsnorm ${R}x${C}`);
  x.dispose();
  w.dispose();
}

// cross-entropy forward + backward, T=512 rows, V=32000.
{
  const [N, V] = [512, 32000];
  const ls = randn(N * V, 9), ts = randInt(N, V, 10);
  const logits = e.tensor(ls, [N, V]), targets = e.tensor(ts, [N], "i32");
  logits.requiresGrad = true;
  const ms = await medianMs(e, () => backward(crossEntropy(logits, targets)));
  const got = await readAll(e.tidy(() => e.noGrad(() => crossEntropy(logits, targets))));
  emit({
    op: "cross_entropy_fwd_bwd",
    shape: [N, V],
    dtype: "f32",
    median_ms: ms,
    gbps: 3 * N * V * 4 / ms / 1e6,
    max_abs_err: maxAbsDiff(got, crossEntropyForwardCpu(ls, ts, V)),
  }, `cross_entropy_fwd_bwd ${N}x${V}`);
  logits.dispose();
  targets.dispose();
}

e.destroy();

await runScript("./models.ts");
