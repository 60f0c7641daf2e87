/**
 * Matmul speed on this machine's adapter beside a CPU reference measured in the same run
 * (bench/matmul_ref.py: PyTorch CPU, else numpy), with each result checked against the CPU reference.
 *
 *     deno run -A bench/matmul_speed.ts [--json] [--no-ref] [--kernel auto|tiled|texture]
 *
 * Cases: M = N = K = 256, 512, 1024, and 1024 with b transposed, in f32 and (where the adapter has
 * shader-f16) f16. Timing: encode `reps` matmuls, wait once, divide; `reps` makes a trial last
 * ~0.3 s (one wait costs ~11 ms); the median of 5 trials. With `--json`, one object per case:
 * {op, shape: [M, N, K], transB, dtype, kernel, median_ms, gflops, max_abs_err, ref_ms, ref_gflops,
 * ref_impl, ratio_vs_ref}, where ratio_vs_ref = median_ms / ref_ms (above 1: slower than the reference).
 * @module
 */

import { parseArgs } from "node:util";
import { roundToF16 } from "../core/dtype.ts";
import { Engine } from "../core/engine.ts";
import { maxAbsDiff, randn } from "../core/testing.ts";
import { matmul, type MatmulKernel } from "../core/kernels/matmul/matmul.ts";
import { matmulCpu } from "../core/kernels/matmul/matmul_cpu.ts";
import { medianMs } from "./timing.ts";

/** One benchmarked product: a [M, K] @ b [K, N] (b stored [N, K] with transB). */
interface Case {
  M: number;
  N: number;
  K: number;
  transB: boolean;
  dtype: "f32" | "f16";
}

/** What bench/matmul_ref.py prints. */
interface RefResult {
  impl: string;
  threads: number;
  cases: (Case & { median_ms: number; gflops: number })[];
}

const { values: args } = parseArgs({
  // `deno task bench -- --json` passes the "--" through.
  args: Deno.args.filter((a) => a !== "--"),
  options: {
    json: { type: "boolean", default: false },
    "no-ref": { type: "boolean", default: false },
    kernel: { type: "string", default: "auto" },
  },
});
const kernel = args.kernel as MatmulKernel;

/** The first Python that imports torch, else the first that imports numpy, else null. */
async function findPython(): Promise<string | null> {
  const candidates = [Deno.env.get("PYTHON"), "python3", "/usr/bin/python3"].filter((p): p is string => !!p);
  const imports = async (py: string, mod: string) => {
    try {
      return (await new Deno.Command(py, { args: ["-c", `import ${mod}`], stderr: "null" }).output()).success;
    } catch {
      return false;
    }
  };
  for (const py of candidates) if (await imports(py, "torch")) return py;
  for (const py of candidates) if (await imports(py, "numpy")) return py;
  return null;
}

async function reference(cases: Case[]): Promise<RefResult | null> {
  const py = await findPython();
  if (!py) {
    console.error("no CPU reference: neither torch nor numpy imports (apt-get install python3-torch)");
    return null;
  }
  const script = new URL("./matmul_ref.py", import.meta.url).pathname;
  const r = await new Deno.Command(py, { args: [script, JSON.stringify(cases)], stderr: "inherit" }).output();
  if (!r.success) return null;
  return JSON.parse(new TextDecoder().decode(r.stdout));
}

const e = await Engine.create();
const cases: Case[] = [];
for (const dtype of e.hasF16 ? ["f32", "f16"] as const : ["f32"] as const) {
  for (const [n, transB] of [[256, false], [512, false], [1024, false], [1024, true]] as const) {
    cases.push({ M: n, N: n, K: n, transB, dtype });
  }
}
const ref = args["no-ref"] ? null : await reference(cases);
if (!args.json) {
  console.log(
    `adapter: ${e.info.description}; load average ${Deno.readTextFileSync("/proc/loadavg").trim()}`,
  );
  if (ref) console.log(`reference: ${ref.impl}, ${ref.threads} threads`);
}

for (const [i, c] of cases.entries()) {
  const { M, N, K, transB, dtype } = c;
  const as = randn(M * K, 1), bs = randn(K * N, 2);
  const a = e.tensor(as, [M, K], dtype), b = e.tensor(bs, transB ? [N, K] : [K, N], dtype);
  const ms = await medianMs(e, () => matmul(a, b, { transB, kernel }));
  // Checked on the first 16 rows against the CPU reference on the same (f16-rounded) inputs.
  const rows = Math.min(M, 16);
  const out = e.tidy(() => matmul(a, b, { transB, kernel }));
  const got = (await out.read()).subarray(0, rows * N);
  const host = (x: Float32Array) => dtype === "f16" ? roundToF16(Float32Array.from(x)) : x;
  const want = matmulCpu(host(as).subarray(0, rows * K), host(bs), { M: rows, N, K, transB });
  const gflops = 2 * M * N * K / ms / 1e6;
  const r = ref?.cases[i];
  const rec = {
    op: "matmul",
    shape: [M, N, K],
    transB,
    dtype,
    kernel: kernel === "auto" ? (e.info.isFallbackAdapter ? "auto (texture)" : "auto (tiled)") : kernel,
    median_ms: ms,
    gflops,
    max_abs_err: maxAbsDiff(got, want),
    ref_ms: r?.median_ms ?? null,
    ref_gflops: r?.gflops ?? null,
    ref_impl: ref?.impl ?? null,
    ratio_vs_ref: r ? ms / r.median_ms : null,
  };
  if (args.json) console.log(JSON.stringify(rec));
  else {
    const vs = r
      ? `  ref ${r.gflops.toFixed(1).padStart(6)} GFLOP/s  ratio ${rec.ratio_vs_ref!.toFixed(2)}`
      : "";
    console.log(
      `${(M + "x" + N + "x" + K + (transB ? " transB" : "")).padEnd(21)} ${dtype}  ${
        ms.toFixed(2).padStart(8)
      } ms ` +
        `${gflops.toFixed(2).padStart(7)} GFLOP/s  err ${rec.max_abs_err.toExponential(1)}${vs}`,
    );
  }
  out.dispose();
  a.dispose();
  b.dispose();
}
