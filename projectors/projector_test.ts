import assert from "node:assert/strict";
import { backward } from "../core/autograd.ts";
import { erf } from "../core/kernels/elementwise/elementwise_cpu.ts";
import { assertClose, gpuTest, randn } from "../core/testing.ts";
import {
  parseProjectorConfig,
  Projector,
  PROJECTOR_KINDS,
  type ProjectorKind,
  projectorParamShapes,
} from "./projector.ts";

/** y [R, O] = x [R, I] W^T + b, W [O, I]. */
function linearCpu(
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  b: ArrayLike<number>,
  R: number,
  I: number,
  O: number,
) {
  const y = new Float64Array(R * O);
  for (let r = 0; r < R; r++) {
    for (let o = 0; o < O; o++) {
      let s = b[o];
      for (let i = 0; i < I; i++) s += x[r * I + i] * w[o * I + i];
      y[r * O + o] = s;
    }
  }
  return y;
}

/** Gradients of linearCpu given dy [R, O]. */
function linearBackCpu(
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  g: ArrayLike<number>,
  R: number,
  I: number,
  O: number,
) {
  const dx = new Float64Array(R * I), dw = new Float64Array(O * I), db = new Float64Array(O);
  for (let r = 0; r < R; r++) {
    for (let o = 0; o < O; o++) {
      const go = g[r * O + o];
      db[o] += go;
      for (let i = 0; i < I; i++) {
        dx[r * I + i] += go * w[o * I + i];
        dw[o * I + i] += go * x[r * I + i];
      }
    }
  }
  return { dx, dw, db };
}

const geluErf = (v: number) => 0.5 * v * (1 + erf(v / Math.SQRT2));
const geluErfGrad = (v: number) =>
  0.5 * (1 + erf(v / Math.SQRT2)) + v * Math.exp(-0.5 * v * v) / Math.sqrt(2 * Math.PI);

/** Reference forward and backward of a projector on x [R, I] with output gradient g [R, O]. */
function projectorCpu(
  kind: ProjectorKind,
  p: Map<string, Float32Array>,
  x: Float32Array,
  g: Float32Array,
  R: number,
  I: number,
  O: number,
): { y: ArrayLike<number>; grads: Map<string, ArrayLike<number>> } {
  const grads = new Map<string, ArrayLike<number>>();
  switch (kind) {
    case "identity":
      grads.set("x", g);
      return { y: x, grads };
    case "linear": {
      const y = linearCpu(x, p.get("weight")!, p.get("bias")!, R, I, O);
      const b = linearBackCpu(x, p.get("weight")!, g, R, I, O);
      grads.set("x", b.dx).set("weight", b.dw).set("bias", b.db);
      return { y, grads };
    }
    case "mlp2x_gelu": {
      const h = linearCpu(x, p.get("0.weight")!, p.get("0.bias")!, R, I, O);
      const a = h.map(geluErf);
      const y = linearCpu(a, p.get("2.weight")!, p.get("2.bias")!, R, O, O);
      const b2 = linearBackCpu(a, p.get("2.weight")!, g, R, O, O);
      const dh = b2.dx.map((v, i) => v * geluErfGrad(h[i]));
      const b0 = linearBackCpu(x, p.get("0.weight")!, dh, R, I, O);
      grads.set("x", b0.dx).set("0.weight", b0.dw).set("0.bias", b0.db);
      grads.set("2.weight", b2.dw).set("2.bias", b2.db);
      return { y, grads };
    }
  }
}

const NAMES: Record<ProjectorKind, string[]> = {
  linear: ["weight", "bias"],
  mlp2x_gelu: ["0.weight", "0.bias", "2.weight", "2.bias"],
  identity: [],
};

for (const kind of ["linear", "mlp2x_gelu", "identity"] as const) {
  gpuTest(`Projector ${kind}: forward and backward vs CPU reference`, async (e) => {
    const B = 2, N = 3, I = kind === "identity" ? 6 : 5, O = 6, R = B * N;
    const proj = Projector.create(e, { kind, inDim: I, outDim: O }, { seed: 3 });
    const params = proj.params();
    assert.deepEqual([...params.keys()], NAMES[kind]);
    const host = new Map<string, Float32Array>();
    for (const [name, t] of params) host.set(name, (await t.read()) as Float32Array);
    // PyTorch's default Linear init: U(-1/sqrt(in), 1/sqrt(in)).
    for (const [name, v] of host) {
      const bound = 1 / Math.sqrt(name.startsWith("2.") ? O : I);
      assert.ok(v.every((a) => Math.abs(a) <= bound), `${name} within +-${bound}`);
      assert.ok(v.some((a) => a !== 0), `${name} is not all zeros`);
    }
    const xs = randn(R * I, 11), gs = randn(R * O, 12);
    const x = e.param(xs, [B, N, I]);
    const y = await e.tidy(async () => {
      const out = proj.forward(x);
      assert.deepEqual(out.shape, [B, N, O]);
      backward(out, e.tensor(gs, out.shape));
      return await out.read();
    });
    const ref = projectorCpu(kind, host, xs, gs, R, I, O);
    assertClose(y, ref.y, { atol: 1e-5, rtol: 1e-4, label: `${kind} y` });
    assertClose(await x.grad!.read(), ref.grads.get("x")!, { atol: 1e-5, rtol: 1e-4, label: `${kind} dx` });
    for (const [name, t] of params) {
      assertClose(await t.grad!.read(), ref.grads.get(name)!, {
        atol: 1e-5,
        rtol: 1e-4,
        label: `${kind} d${name}`,
      });
      t.dispose();
    }
    x.dispose();
  });
}

gpuTest("Projector: frozen parameters get no gradient; the input still does", async (e) => {
  const proj = Projector.create(e, { kind: "mlp2x_gelu", inDim: 4, outDim: 4 });
  proj.freeze();
  const x = e.param(randn(8, 1), [2, 4]);
  e.tidy(() => backward(proj.forward(x), e.full([2, 4], 1)));
  for (const t of proj.params().values()) assert.equal(t.grad, null);
  assert.ok(x.grad);
  assert.ok(((await x.grad.read()) as Float32Array).some((v) => v !== 0));
  x.dispose();
  for (const t of proj.params().values()) t.dispose();
});

gpuTest("projectorParamShapes: every kind declares exactly the parameters it builds, in order", (e) => {
  for (const kind of PROJECTOR_KINDS) {
    const cfg = { kind, inDim: kind === "identity" ? 6 : 5, outDim: 6 };
    const proj = Projector.create(e, cfg);
    const built = new Map([...proj.params()].map(([n, t]) => [n, t.shape]));
    assert.deepEqual([...projectorParamShapes(cfg)], [...built], `${kind}: declared vs built`);
    for (const t of proj.params().values()) t.dispose();
  }
});

gpuTest("Projector.forward: a wrong input width is refused", (e) => {
  const proj = Projector.create(e, { kind: "linear", inDim: 4, outDim: 2 });
  e.tidy(() => {
    assert.throws(() => proj.forward(e.zeros([3, 5])), /x f32\[3,5\] must be \[\.\.\., 4\]/);
  });
  for (const t of proj.params().values()) t.dispose();
});

Deno.test("parseProjectorConfig: valid kinds pass, bad fields are named", () => {
  assert.deepEqual(parseProjectorConfig({ kind: "mlp2x_gelu", inDim: 1152, outDim: 4096 }, "projector"), {
    kind: "mlp2x_gelu",
    inDim: 1152,
    outDim: 4096,
  });
  assert.throws(
    () => parseProjectorConfig({ kind: "mlp3x_gelu", inDim: 4, outDim: 4 }, "projector"),
    /projector\.kind: unknown kind \(got "mlp3x_gelu"\); use one of "linear", "mlp2x_gelu", "identity"/,
  );
  assert.throws(
    () => parseProjectorConfig({ kind: "linear", inDim: 0, outDim: 4 }, "projector"),
    /projector\.inDim: .*expected number to be >0 \(got 0\)/,
  );
  assert.throws(
    () => parseProjectorConfig({ kind: "identity", inDim: 4, outDim: 8 }, "projector"),
    /projector: an identity projector needs inDim == outDim \(got 4 and 8\)/,
  );
});
