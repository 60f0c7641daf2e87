import { assertClose, finiteDiff, gpuTest, randn } from "../../testing.ts";
import { backward } from "../../autograd.ts";
import { roundToF16 } from "../../dtype.ts";
import { permute } from "./permute.ts";
import { permuteBackwardCpu, permuteCpu, permutedShape } from "./permute_cpu.ts";

const cases: [number[], number[]][] = [
  [[7], [0]],
  [[3, 5], [1, 0]],
  [[2, 7, 3, 5], [0, 2, 1, 3]],
  [[2, 3, 4, 5], [2, 0, 1, 3]],
  [[2, 3, 4, 5, 1, 3], [5, 3, 1, 0, 4, 2]],
];

gpuTest("permute: forward and backward match the CPU reference (f32, f16)", async (e) => {
  for (const dtype of e.hasF16 ? ["f32", "f16"] as const : ["f32"] as const) {
    for (const [shape, perm] of cases) {
      const n = shape.reduce((a, b) => a * b, 1);
      const xs = randn(n, 1), gs = randn(n, 2);
      if (dtype === "f16") {
        roundToF16(xs);
        roundToF16(gs);
      }
      const label = `${dtype} [${shape}] by [${perm}]`;
      const w = e.param(xs, shape, { dtype });
      await e.tidy(async () => {
        const y = permute(w, perm);
        assertClose(await y.read(), permuteCpu(xs, shape, perm), { atol: 0, label });
        backward(y, e.tensor(gs, permutedShape(shape, perm), dtype));
      });
      assertClose(await w.grad!.read(), permuteBackwardCpu(gs, shape, perm), { atol: 0, label });
      w.dispose();
    }
  }
});

Deno.test("permute CPU: backward matches finite differences of <g, permute(x)>", () => {
  const shape = [2, 3, 4], perm = [1, 2, 0];
  const xs = randn(24, 5), gs = randn(24, 6);
  const f = (x: Float64Array) => permuteCpu(x, shape, perm).reduce((s, v, i) => s + v * gs[i], 0);
  assertClose(permuteBackwardCpu(gs, shape, perm), finiteDiff(f, xs), { atol: 1e-6 });
});
