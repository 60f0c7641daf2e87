import assert from "node:assert/strict";
import { backward } from "../core/autograd.ts";
import { assertClose, gpuTest, randn } from "../core/testing.ts";
import { patchEmbed } from "./patch_embed.ts";

/** A direct stride-p convolution, flattened to [B, N, C] (N over the output grid, row-major). */
function convCpu(
  px: Float32Array,
  w: Float32Array,
  bias: Float32Array | null,
  B: number,
  H: number,
  W: number,
  C: number,
  p: number,
): Float64Array {
  const gh = Math.floor(H / p), gw = Math.floor(W / p);
  const out = new Float64Array(B * gh * gw * C);
  for (let b = 0; b < B; b++) {
    for (let oy = 0; oy < gh; oy++) {
      for (let ox = 0; ox < gw; ox++) {
        for (let c = 0; c < C; c++) {
          let s = bias ? bias[c] : 0;
          for (let ch = 0; ch < 3; ch++) {
            for (let i = 0; i < p; i++) {
              for (let j = 0; j < p; j++) {
                s += px[((b * 3 + ch) * H + oy * p + i) * W + ox * p + j] * w[((c * 3 + ch) * p + i) * p + j];
              }
            }
          }
          out[((b * gh + oy) * gw + ox) * C + c] = s;
        }
      }
    }
  }
  return out;
}

/** d(sum(conv * g)) / dw and / dbias, by the same direct loops. */
function convWeightGradCpu(
  px: Float32Array,
  g: Float32Array,
  B: number,
  H: number,
  W: number,
  C: number,
  p: number,
): { dw: Float64Array; db: Float64Array } {
  const gh = Math.floor(H / p), gw = Math.floor(W / p);
  const dw = new Float64Array(C * 3 * p * p), db = new Float64Array(C);
  for (let b = 0; b < B; b++) {
    for (let oy = 0; oy < gh; oy++) {
      for (let ox = 0; ox < gw; ox++) {
        for (let c = 0; c < C; c++) {
          const gc = g[((b * gh + oy) * gw + ox) * C + c];
          db[c] += gc;
          for (let ch = 0; ch < 3; ch++) {
            for (let i = 0; i < p; i++) {
              for (let j = 0; j < p; j++) {
                dw[((c * 3 + ch) * p + i) * p + j] += gc *
                  px[((b * 3 + ch) * H + oy * p + i) * W + ox * p + j];
              }
            }
          }
        }
      }
    }
  }
  return { dw, db };
}

const CASES = [
  { B: 2, H: 8, W: 8, C: 5, p: 4, bias: true },
  { B: 1, H: 6, W: 9, C: 4, p: 3, bias: false },
  // Not a multiple of p: the last rows and columns are dropped, as by the conv (384 / 14 in SigLIP).
  { B: 2, H: 11, W: 11, C: 3, p: 3, bias: true },
];

for (const k of CASES) {
  gpuTest(
    `patchEmbed [${k.B}, 3, ${k.H}, ${k.W}] p ${k.p}: conv loop forward, weight and bias gradients`,
    async (e) => {
      const { B, H, W, C, p } = k;
      const gh = Math.floor(H / p), gw = Math.floor(W / p);
      const pxs = randn(B * 3 * H * W, 1);
      const ws = randn(C * 3 * p * p, 2, 0.3);
      const bs = k.bias ? randn(C, 3) : null;
      const gs = randn(B * gh * gw * C, 4);
      const w = e.param(ws, [C, 3, p, p]);
      const b = bs ? e.param(bs, [C]) : null;
      const y = await e.tidy(async () => {
        const out = patchEmbed(e.tensor(pxs, [B, 3, H, W]), w, b, p);
        assert.deepEqual(out.shape, [B, gh * gw, C]);
        backward(out, e.tensor(gs, out.shape));
        return await out.read();
      });
      assertClose(y, convCpu(pxs, ws, bs, B, H, W, C, p), { atol: 1e-4, label: "y" });
      const ref = convWeightGradCpu(pxs, gs, B, H, W, C, p);
      assertClose(await w.grad!.read(), ref.dw, { atol: 1e-4, label: "dw" });
      if (b) assertClose(await b.grad!.read(), ref.db, { atol: 1e-4, label: "db" });
      w.dispose();
      b?.dispose();
    },
  );
}

gpuTest("patchEmbed: a weight of the wrong patch size is refused", (e) => {
  e.tidy(() => {
    const w = e.tensor(new Float32Array(2 * 3 * 9), [2, 3, 3, 3]);
    assert.throws(
      () => patchEmbed(e.tensor(new Float32Array(3 * 16), [1, 3, 4, 4]), w, null, 2),
      /patchEmbed: weight f32\[2,3,3,3\] must be \[C, 3, 2, 2\]/,
    );
  });
});
