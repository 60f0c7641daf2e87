import assert from "node:assert/strict";
import { backward } from "../../autograd.ts";
import type { Engine } from "../../engine.ts";
import { assertClose, gpuTest, randn } from "../../testing.ts";
import {
  forgetTunedMatmuls,
  isTunedMatmul,
  matmul,
  type ProductShape,
  recordMatmulShapes,
  setTunedMatmul,
  takeRecordedShapes,
} from "./matmul.ts";
import { matmulCpu } from "./matmul_cpu.ts";
import { choiceName, formatMatmulTuning, tuneMatmul } from "./matmul_tune.ts";

/** The labels of the matmul kernels `fn` dispatches (the engine's profiler). */
async function matmulLabels(e: Engine, fn: () => void): Promise<string[]> {
  e.startProfiling();
  e.tidy(fn);
  return (await e.stopProfiling()).map((t) => t.label).filter((l) => l.startsWith("matmul")).sort();
}

gpuTest("recordMatmulShapes: the distinct products of auto calls, forward and backward, as run", (e) => {
  const x = e.tensor(randn(2 * 8 * 16, 1), [2, 8, 16]), w = e.tensor(randn(12 * 16, 2), [12, 16]);
  x.requiresGrad = w.requiresGrad = true;
  const step = () => e.tidy(() => backward(matmul(x, w, { transB: true })));
  try {
    step(); // not recording
    recordMatmulShapes(e, true);
    step();
    step(); // the same products again: recorded once
    e.tidy(() => matmul(x, w, { transB: true, kernel: "tiled" })); // a forced kernel: not recorded
    const shapes = takeRecordedShapes(e).map((s) => [s.M, s.N, s.K, s.batch, s.transA, s.transB]);
    assert.deepEqual(
      shapes.sort(),
      [
        [16, 12, 16, 1, false, true], // y [16, 12] = x [16, 16] @ w^T (the batch merged into rows)
        [16, 16, 12, 1, false, false], // dx [16, 16] = dy [16, 12] @ w [12, 16]
        [12, 16, 16, 1, true, false], // dw [12, 16] = dy^T @ x: the batch sum is one longer K
      ].sort(),
    );
    assert.deepEqual(takeRecordedShapes(e), []); // taken
    recordMatmulShapes(e, false);
    step();
    assert.deepEqual(takeRecordedShapes(e), []);
  } finally {
    recordMatmulShapes(e, false);
    x.dispose();
    w.dispose();
  }
});

gpuTest(
  "tuneMatmul: times the choices that take a product; auto then runs the fastest, correctly",
  async (e) => {
    const [M, N, K] = [64, 32, 512];
    const s: ProductShape = {
      dtype: "f32",
      packedF16: false,
      batch: 1,
      M,
      N,
      K,
      transA: false,
      transB: true,
    };
    try {
      const t = await tuneMatmul(e, s, { trials: 1, trialMs: 5 });
      const expect = [...(e.info.isFallbackAdapter ? ["texture"] : []), "vec4_128", "vec4", "vec4/2"];
      assert.deepEqual(Object.keys(t.ms), expect); // K 512: one split of parts 256 deep
      assert.equal(t.ms[choiceName(t.best)], Math.min(...Object.values(t.ms)));
      assert.ok(isTunedMatmul(e, s));
      assert.match(formatMatmulTuning(t), /^matmul 64x512 @ 32x512\^T f32: \w+ [\d.]+ ms, .* -> \S+$/);

      // A forced choice shows which kernel auto runs: at the nearest M tuned, with a correct result.
      const a = randn(48 * K, 3), b = randn(N * K, 4);
      const at = e.tensor(a, [48, K]), bt = e.tensor(b, [N, K]);
      const want = matmulCpu(a, b, { M: 48, N, K, transB: true });
      const run = async () => {
        const y = e.noGrad(() => matmul(at, bt, { transB: true }));
        assertClose(await y.read(), want, { atol: 1e-3 });
        y.dispose();
      };
      setTunedMatmul(e, s, { kernel: "vec4", splitK: 2 });
      if (e.device.features.has("timestamp-query")) {
        assert.deepEqual(
          await matmulLabels(e, () => matmul(at, bt, { transB: true })),
          ["matmul_splitk_sum", "matmul_vec4_64_splitk"],
        );
      }
      await run();
      setTunedMatmul(e, { ...s, M: 40 }, { kernel: "tiled", splitK: 1 }); // nearer 48 than 64 is
      if (e.device.features.has("timestamp-query")) {
        assert.deepEqual(await matmulLabels(e, () => matmul(at, bt, { transB: true })), ["matmul_tiled64"]);
        // Another N is another product: the adapter's own choice.
        const other = e.tensor(randn(16 * K, 5), [16, K]);
        const auto = await matmulLabels(e, () => matmul(at, other, { transB: true }));
        assert.equal(auto.length, 1);
        assert.notEqual(auto[0], "matmul_tiled64");
        other.dispose();
        // Rows more than TUNED_REACH times fewer than any measured: the adapter's own choice too.
        const few = e.tensor(randn(8 * K, 8), [8, K]);
        const fewLabels = await matmulLabels(e, () => matmul(few, bt, { transB: true }));
        assert.equal(fewLabels.length, 1);
        assert.notEqual(fewLabels[0], "matmul_tiled64");
        few.dispose();
      }
      await run();
      // A measured choice that cannot take the call's shape (vec4 needs K % 4 == 0) is passed over.
      const odd = { ...s, K: 510 };
      setTunedMatmul(e, odd, { kernel: "vec4", splitK: 1 });
      const ao = randn(48 * 510, 6), bo = randn(N * 510, 7);
      const got = e.tidy(() =>
        matmul(e.tensor(ao, [48, 510]), e.tensor(bo, [N, 510]), { transB: true }).read()
      );
      assertClose(await got, matmulCpu(ao, bo, { M: 48, N, K: 510, transB: true }), { atol: 1e-3 });
      forgetTunedMatmuls(e);
      assert.ok(!isTunedMatmul(e, s));
      for (const x of [at, bt]) x.dispose();
    } finally {
      forgetTunedMatmuls(e);
    }
  },
);
