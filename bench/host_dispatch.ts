/**
 * `deno run -A bench/host_dispatch.ts [--json] [--n 2000] [--rounds 5] [--max-pending N]`: the host (CPU) cost of recording one
 * compute dispatch, without waiting for the GPU. Each round records `n` calls inside a tidy scope and submits
 * them (`Engine.flush`, no wait; `--max-pending` sets `Engine.maxPendingDispatches`); the GPU is waited for after the timed part. Reports microseconds per dispatch
 * (median of the rounds, with min and max), the time per dispatch until the GPU has finished (the timed part plus
 * the wait) and the queue submits per round, for:
 * - `elementwise`: a tiny WGSL kernel through `Engine.run`, with different uniform params on every call;
 * - `scale`: the library's `scale` op (an elementwise kernel whose WGSL is a fixed string);
 * - `matmul`: the public `matmul` on small operands ([32, 64] @ [64, 32], f32).
 * @module
 */

import { parseArgs } from "node:util";
import { Engine } from "../core/engine.ts";
import type { Tensor } from "../core/tensor.ts";
import { matmul } from "../core/kernels/matmul/matmul.ts";
import { scale } from "../core/kernels/elementwise/elementwise.ts";
import { randn } from "../core/random.ts";

const { values: args } = parseArgs({
  args: Deno.args,
  options: {
    json: { type: "boolean", default: false },
    n: { type: "string", default: "2000" },
    rounds: { type: "string", default: "5" },
    "max-pending": { type: "string" },
  },
});
const n = Number(args.n), rounds = Number(args.rounds);

/** One result line of `--json`. */
export interface HostDispatchRecord {
  case: string;
  /** Median over rounds of host microseconds per dispatch. */
  us_per_dispatch: number;
  min_us: number;
  max_us: number;
  /** Median over rounds of microseconds per dispatch until the GPU has finished (recording, submits, wait). */
  total_us: number;
  /** Dispatches per round. */
  dispatches: number;
  /** Queue submits per round. */
  submits: number;
  /** Engine.maxPendingDispatches during the run. */
  max_pending: number;
  device: string;
}

const e = await Engine.create();
if (args["max-pending"]) e.maxPendingDispatches = Number(args["max-pending"]);

const ELEMENTWISE = `
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
struct P { n: u32, k: u32, s: f32 }
@group(0) @binding(2) var<uniform> p: P;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  if (gid.x < p.n) { y[gid.x] = x[gid.x] * p.s + f32(p.k); }
}`;

const f32Word = (v: number) => new Uint32Array(new Float32Array([v]).buffer)[0];

async function measure(name: string, fn: (i: number) => void): Promise<HostDispatchRecord> {
  const round = () =>
    e.noGrad(() =>
      e.tidy(() => {
        for (let i = 0; i < n; i++) fn(i);
      })
    );
  round(); // warm-up: pipelines, pool
  await e.sync();
  const times: number[] = [], totals: number[] = [];
  let dispatches = 0, submits = 0;
  for (let r = 0; r < rounds; r++) {
    const s0 = e.stats;
    const t0 = performance.now();
    round();
    e.flush();
    const dt = performance.now() - t0;
    const s1 = e.stats;
    await e.sync();
    const total = performance.now() - t0;
    dispatches = s1.dispatches - s0.dispatches;
    submits = s1.submits - s0.submits;
    times.push((dt * 1000) / dispatches);
    totals.push((total * 1000) / dispatches);
  }
  times.sort((a, b) => a - b);
  totals.sort((a, b) => a - b);
  return {
    case: name,
    us_per_dispatch: times[Math.floor(times.length / 2)],
    min_us: times[0],
    max_us: times[times.length - 1],
    total_us: totals[Math.floor(totals.length / 2)],
    dispatches,
    submits,
    max_pending: e.maxPendingDispatches,
    device: e.info.description,
  };
}

const x = e.tensor(randn(256, 1), [256]);
const y = e.empty([256]);
const a = e.tensor(randn(32 * 64, 2), [32, 64]);
const b = e.tensor(randn(64 * 32, 3), [64, 32]);

const results = [
  await measure("elementwise", (i) =>
    e.run({
      label: "bench_elementwise",
      code: ELEMENTWISE,
      bindings: [x, y],
      params: [256, i, f32Word(0.5)],
      workgroups: [4],
    })),
  await measure("scale", (i) => void scale(x, 1 + i * 1e-3)),
  await measure("matmul", () => void (matmul(a, b) as Tensor)),
];

if (args.json) { for (const r of results) console.log(JSON.stringify(r)); }
else {
  console.log(`${e.info.description}; ${n} dispatches per round, median of ${rounds} rounds`);
  for (const r of results) {
    console.log(
      `${r.case.padEnd(12)} ${r.us_per_dispatch.toFixed(1).padStart(7)} us/dispatch ` +
        `(min ${r.min_us.toFixed(1)}, max ${
          r.max_us.toFixed(1)
        })  ${r.submits} submits / ${r.dispatches} dispatches`,
    );
  }
}
for (const t of [x, y, a, b]) t.dispose();
e.destroy();
