import assert from "node:assert/strict";
import type { Engine } from "../engine.ts";
import { assertClose, gpuTestSubgroups, randn } from "../testing.ts";
import { subgroupArgsWgsl, subgroupInitWgsl, workgroupReduceWgsl } from "./workgroup_reduce.ts";

// One workgroup of `wg` threads per block of x: thread i holds x[block, i]; ROUNDS reductions in a row
// (sum, max, sum of squares, ...), each round's values depending on the previous results, so a round
// that read slots another round was still writing would show.
const ROUNDS = 6;

function code(wg: number, sg: boolean): string {
  return `
@group(0) @binding(0) var<storage, read> x: array<f32>;         // [B, wg]
@group(0) @binding(1) var<storage, read_write> out: array<f32>; // [B, wg, 2 * ROUNDS]
${workgroupReduceWgsl(wg, sg)}
@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32${subgroupArgsWgsl(sg)}) {
  ${subgroupInitWgsl(sg)}
  let b = wid.x;
  var v = x[b * ${wg}u + lid];
  for (var k = 0u; k < ${ROUNDS}u; k++) {
    let s = reduceSum(lid, v);
    let m = reduceMax(lid, v - s);
    out[(b * ${wg}u + lid) * ${2 * ROUNDS}u + 2u * k] = s;
    out[(b * ${wg}u + lid) * ${2 * ROUNDS}u + 2u * k + 1u] = m;
    v = v * 0.5 + m * 0.25 - f32(k);
  }
}`;
}

// The same rounds on the CPU; every thread of a block gets the same results.
function reference(xs: Float32Array, wg: number): Float32Array {
  const B = xs.length / wg;
  const out = new Float32Array(B * wg * 2 * ROUNDS);
  for (let b = 0; b < B; b++) {
    const v = Array.from(xs.subarray(b * wg, (b + 1) * wg));
    for (let k = 0; k < ROUNDS; k++) {
      const s = v.reduce((a, c) => a + c, 0);
      const m = Math.max(...v.map((c) => c - s));
      for (let i = 0; i < wg; i++) {
        out[(b * wg + i) * 2 * ROUNDS + 2 * k] = s;
        out[(b * wg + i) * 2 * ROUNDS + 2 * k + 1] = m;
        v[i] = v[i] * 0.5 + m * 0.25 - k;
      }
    }
  }
  return out;
}

async function check(e: Engine, wg: number, sg: boolean): Promise<void> {
  const B = 5;
  const xs = randn(B * wg, wg, 2);
  const x = e.tensor(xs, [B, wg]);
  const out = e.empty([B, wg, 2 * ROUNDS]);
  e.run({ label: "workgroup_reduce_test", code: code(wg, sg), bindings: [x, out], workgroups: [B] });
  const got = await out.read();
  assertClose(got, reference(xs, wg), { atol: 1e-3, rtol: 1e-4, label: `wg ${wg} subgroups ${sg}` });
  x.dispose();
  out.dispose();
}

gpuTestSubgroups("workgroupReduceWgsl: sums and maxima to every thread, rounds in a row", async (e) => {
  for (const wg of [1, 2, 4, 16, 64, 128, 256]) await check(e, wg, e.hasSubgroups);
});

Deno.test("workgroupReduceWgsl: the two variants differ", () => {
  assert.notEqual(workgroupReduceWgsl(256, true), workgroupReduceWgsl(256, false));
  assert.match(workgroupReduceWgsl(256, true), /subgroupAdd/);
  assert.doesNotMatch(workgroupReduceWgsl(256, false), /subgroup/);
  assert.doesNotMatch(workgroupReduceWgsl(1, true), /subgroupAdd/);
  assert.equal(subgroupArgsWgsl(false) + subgroupInitWgsl(false), "");
});
