// The custom head of examples/custom_head.ts: registered by importing the module, parsed and built like
// a built-in kind, its loss checked against a CPU computation, and a few AdamW steps make it fall.
import assert from "node:assert/strict";
import { assertClose, gpuTest, randInt, randn } from "../core/testing.ts";
import { CosineHead, trainCosineHead } from "../examples/custom_head.ts";
import { buildHead } from "../heads/mod.ts";
import { parseHeadConfig } from "../heads/mod.ts";
import { registeredHeadKinds } from "../heads/mod.ts";

Deno.test("custom head: its kind is registered and its config parses with its own defaults and errors", () => {
  assert.ok(registeredHeadKinds().includes("cosine_recon"));
  assert.deepEqual(parseHeadConfig({ kind: "cosine_recon" }, "head"), {
    kind: "cosine_recon",
    width: 512,
    codebookDim: 1152,
    target: "semantic",
  });
  assert.throws(
    () => parseHeadConfig({ kind: "cosine_recon", width: -2 }, "model.head"),
    /model\.head\.width: /,
  );
});

gpuTest("custom head: built by buildHead, its loss is mean(1 - cos) over supervised patches", async (e) => {
  const B = 1, N = 4, DL = 6, D = 2, K = 5, Dc = 3;
  const head = buildHead(e, parseHeadConfig({ kind: "cosine_recon", width: 8, codebookDim: Dc }, "head"), {
    llmWidth: DL,
    seed: 2,
  });
  assert.ok(head instanceof CosineHead);
  const hidden = randn(B * N * DL, 7), books = randn(D * K * Dc, 8);
  const codes = randInt(B * N * D, K, 9);
  codes[2 * D] = codes[2 * D + 1] = -100; // patch 2 unsupervised
  const loss = await e.tidy(async () => {
    const out = head.loss(e.tensor(hidden, [B, N, DL]), {
      semantic: { codes: e.tensor(codes, [B, N, D], "i32"), codebooks: e.tensor(books, [D, K, Dc]) },
    });
    assert.deepEqual(Object.keys(out.terms), ["visual_cosine"]);
    return (await out.total.read())[0];
  });
  // CPU: p = W2 gelu(W1 h + b1) + b2, r = sum_d books[d][k_d], loss = sum over supervised (1 - cos) / (B*N).
  const P = new Map<string, Float32Array>();
  for (const [n, t] of head.params()) P.set(n, (await t.read()) as Float32Array);
  const lin = (x: number[], pre: string) => {
    const w = P.get(`${pre}weight`)!, b = P.get(`${pre}bias`)!;
    return Array.from(b, (bo, o) => x.reduce((acc, xi, i) => acc + w[o * x.length + i] * xi, bo));
  };
  const erfGelu = (v: number) => 0.5 * v * (1 + erfApprox(v / Math.SQRT2));
  let want = 0;
  for (let i = 0; i < B * N; i++) {
    if (codes[i * D] < 0) continue;
    const p = lin(lin(Array.from(hidden.slice(i * DL, (i + 1) * DL)), "mlp.0.").map(erfGelu), "mlp.2.");
    const r = new Array<number>(Dc).fill(0);
    for (let d = 0; d < D; d++) {
      for (let j = 0; j < Dc; j++) r[j] += books[(d * K + codes[i * D + d]) * Dc + j];
    }
    const dot = p.reduce((a, v, j) => a + v * r[j], 0);
    const norm = (v: number[]) => Math.sqrt(v.reduce((a, x) => a + x * x, 0));
    want += 1 - dot / (norm(p) * norm(r));
  }
  want /= B * N;
  assertClose([loss], [want], { atol: 1e-5, rtol: 1e-4, label: "cosine loss" });
  for (const t of head.params().values()) t.dispose();
});

gpuTest("custom head: a few AdamW steps reduce its loss", async (e) => {
  const losses = await trainCosineHead(e, 8);
  assert.ok(losses.at(-1)! < 0.5 * losses[0], `loss did not fall: ${losses.map((v) => v.toFixed(3))}`);
});

/** erf by Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7), independent of the framework's helpers. */
function erfApprox(x: number): number {
  const t = 1 / (1 + 0.3275911 * Math.abs(x));
  const y = 1 -
    ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t *
      Math.exp(-x * x);
  return x < 0 ? -y : y;
}
