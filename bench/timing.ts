/**
 * The benchmarks' timing: GPU work's median time per call (core/timing.ts), their result records and
 * the PyTorch CPU reference's timings.
 * @module
 */

export { medianMs } from "../core/timing.ts";

/** One result line of `deno task bench -- --json`. */
export interface BenchRecord {
  op: string;
  shape: number[];
  dtype: string;
  median_ms: number;
  gflops?: number;
  gbps?: number;
  max_abs_err: number;
  ref_ms?: number;
  ref_impl?: string;
  /** GPU time over the reference's time (above 1: slower than the reference). */
  ratio_vs_ref?: number;
}

/**
 * Runs a PyTorch CPU reference script of this folder (default bench/ops_ref.py) with `args` and returns
 * its records by op and shape ("op BxNHx..."), or an empty map.
 */
export async function referenceTimings(
  script = "ops_ref.py",
  args: string[] = [],
): Promise<Map<string, { median_ms: number; impl: string }>> {
  const out = new Map<string, { median_ms: number; impl: string }>();
  try {
    const here = new URL(".", import.meta.url).pathname;
    const r = await new Deno.Command("/usr/bin/python3", {
      args: [here + script, ...args],
      stderr: "inherit",
    })
      .output();
    for (const line of new TextDecoder().decode(r.stdout).split("\n")) {
      if (!line.trim()) continue;
      const rec = JSON.parse(line);
      if (rec.error) {
        console.error(`reference timings unavailable: ${rec.error}`);
        continue;
      }
      out.set(`${rec.op} ${rec.shape.join("x")}`, { median_ms: rec.median_ms, impl: rec.impl });
    }
  } catch (err) {
    console.error(`reference timings unavailable (${(err as Error).message}); apt-get install python3-torch`);
  }
  return out;
}
