import assert from "node:assert/strict";
import { backward, zeroGrad } from "../core/autograd.ts";
import { AdamW } from "../core/kernels/adamw/adamw.ts";
import { erf } from "../core/kernels/elementwise/elementwise_cpu.ts";
import { assertClose, gpuTest, randInt, randn } from "../core/testing.ts";
import { type LinearHeadConfig, parseHeadConfig } from "./mod.ts";
import { LinearHead } from "./linear.ts";

const B = 2, N = 4, DL = 10, W = 12, SIZES = [6, 9];
const D = SIZES.length;

function config(): LinearHeadConfig {
  return parseHeadConfig(
    { kind: "linear", width: W, depths: D, codebookSizes: SIZES },
    "head",
  ) as LinearHeadConfig;
}

/** The linear head's loss on the CPU (f64): s = gelu(P h + b), CE of heads.d per depth, mean over depths. */
function lossCpu(p: Map<string, Float32Array>, hidden: Float32Array, codes: Int32Array): number {
  const R = B * N;
  const sums = new Array<number>(D).fill(0), counts = new Array<number>(D).fill(0);
  for (let r = 0; r < R; r++) {
    const s = Array.from({ length: W }, (_, o) => {
      let a = p.get("proj.bias")![o];
      for (let i = 0; i < DL; i++) a += p.get("proj.weight")![o * DL + i] * hidden[r * DL + i];
      return 0.5 * a * (1 + erf(a / Math.SQRT2));
    });
    for (let d = 0; d < D; d++) {
      const t = codes[r * D + d];
      if (t < 0) continue;
      const logits = Array.from({ length: SIZES[d] }, (_, v) => {
        let a = p.get(`heads.${d}.bias`)![v];
        for (let i = 0; i < W; i++) a += p.get(`heads.${d}.weight`)![v * W + i] * s[i];
        return a;
      });
      const m = Math.max(...logits);
      sums[d] += m + Math.log(logits.reduce((acc, v) => acc + Math.exp(v - m), 0)) - logits[t];
      counts[d]++;
    }
  }
  return sums.reduce((acc, s, d) => acc + s / counts[d], 0) / D;
}

gpuTest(
  "LinearHead: parameter names, loss against a CPU reference, and a few AdamW steps reduce it",
  async (e) => {
    const head = LinearHead.create(e, config(), { llmWidth: DL, seed: 5 });
    assert.deepEqual([...head.params().keys()], [
      "proj.weight",
      "proj.bias",
      "heads.0.weight",
      "heads.0.bias",
      "heads.1.weight",
      "heads.1.bias",
    ]);
    assert.deepEqual(head.params().get("heads.1.weight")!.shape, [9, W]);
    const hidden = randn(B * N * DL, 1);
    const codes = randInt(B * N * D, 6, 2);
    codes[3 * D + 1] = -100;
    const h = e.tensor(hidden, [B, N, DL]);
    // The linear head does not read the codebooks: any [D, K, Dc] tensor will do.
    const targets = { semantic: { codes: e.tensor(codes, [B, N, D], "i32"), codebooks: e.zeros([D, 1, 1]) } };
    for (const t of [h, targets.semantic.codes, targets.semantic.codebooks]) e.untrack(t);

    const host = new Map<string, Float32Array>();
    for (const [n, t] of head.params()) host.set(n, (await t.read()) as Float32Array);
    const params = [...head.params().values()];
    const opt = new AdamW(params, { lr: 2e-2 });
    const losses: number[] = [];
    for (let step = 0; step < 6; step++) {
      const l = e.tidy(() => {
        const out = head.loss(h, targets);
        assert.deepEqual(Object.keys(out.terms), ["visual_semantic"]);
        backward(out.total);
        opt.step();
        zeroGrad(params);
        return out.total;
      });
      losses.push((await l.read())[0]);
      l.dispose();
    }
    assertClose([losses[0]], [lossCpu(host, hidden, codes)], { atol: 1e-5, rtol: 1e-5, label: "loss" });
    assert.ok(losses.at(-1)! < losses[0] - 0.2, `loss did not fall: ${losses.map((v) => v.toFixed(3))}`);
    for (const t of [h, targets.semantic.codes, targets.semantic.codebooks, ...params]) t.dispose();
  },
);
