import assert from "node:assert/strict";
import { backward } from "../../autograd.ts";
import { type DType, roundToF16 } from "../../dtype.ts";
import type { Engine } from "../../engine.ts";
import type { Tensor } from "../../tensor.ts";
import { assertClose, finiteDiff, gpuTest, probe, randn } from "../../testing.ts";
import { shapeSize } from "../reduce/reduce_cpu.ts";
import { add, addScalar, cast, gelu, mul, quickGelu, scale, silu, sub, swiglu } from "./elementwise.ts";
import {
  addScalarCpu,
  binaryBackwardCpu,
  binaryCpu,
  type BinaryOp,
  broadcastShape,
  erf,
  erfc,
  geluBackwardCpu,
  geluCpu,
  quickGeluBackwardCpu,
  quickGeluCpu,
  scaleCpu,
  siluBackwardCpu,
  siluCpu,
  swigluBackwardCpu,
  swigluCpu,
} from "./elementwise_cpu.ts";

const dot = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
};

/** Test inputs: normal values times 3, plus 0 and far-out values where tails and clamps matter. */
function inputs(n: number, seed: number): Float32Array {
  const x = randn(n, seed, 3);
  const special = [0, -30, 30, -9, 9, -5.5, 5.5, 1e-3];
  for (let i = 0; i < Math.min(n, special.length); i++) x[(i * 13) % n] = special[i];
  return x;
}

// ------------------------------------------------------------------ CPU references

Deno.test("elementwise cpu: erf and erfc against tabulated values", () => {
  // Values from Abramowitz & Stegun table 7.1 and mpmath.
  const erfTable: [number, number][] = [
    [0.1, 0.1124629160182849],
    [0.5, 0.5204998778130465],
    [
      1,
      0.8427007929497149,
    ],
    [2, 0.9953222650189527],
    [-1.5, -0.9661051464753108],
  ];
  for (const [x, v] of erfTable) assertClose([erf(x)], [v], { atol: 1e-15, rtol: 1e-14, label: `erf(${x})` });
  const erfcTable: [number, number][] = [
    [2.5, 4.069520174449590e-4],
    [3, 2.209049699858544e-5],
    [
      5,
      1.537459794428035e-12,
    ],
    [10, 2.088487583762545e-45],
    [-1, 1.842700792949715],
  ];
  for (const [x, v] of erfcTable) assertClose([erfc(x)], [v], { atol: 0, rtol: 1e-13, label: `erfc(${x})` });
});

Deno.test("elementwise cpu: activations' backward match finite differences", () => {
  const x = inputs(40, 1).map((v) => Math.max(-12, Math.min(12, v)));
  const p = probe(40, 2);
  const cases: [
    string,
    (x: ArrayLike<number>) => Float64Array,
    (x: ArrayLike<number>, g: ArrayLike<number>) => Float64Array,
  ][] = [
    ["gelu tanh", (v) => geluCpu(v, "tanh"), (v, g) => geluBackwardCpu(v, g, "tanh")],
    ["gelu erf", (v) => geluCpu(v, "none"), (v, g) => geluBackwardCpu(v, g, "none")],
    ["quickGelu", quickGeluCpu, quickGeluBackwardCpu],
    ["silu", siluCpu, siluBackwardCpu],
    ["scale", (v) => scaleCpu(v, -1.5), (_, g) => scaleCpu(g, -1.5)],
    ["addScalar", (v) => addScalarCpu(v, 2), (_, g) => Float64Array.from(g)],
  ];
  for (const [name, fwd, bwd] of cases) {
    const fd = finiteDiff((xx) => dot(fwd(xx), p), x, 1e-6);
    assertClose(bwd(x, p), fd, { atol: 1e-7, rtol: 1e-6, label: name });
  }
  const up = randn(40, 3);
  const { dgate, dup } = swigluBackwardCpu(x, up, p);
  assertClose(dgate, finiteDiff((gg) => dot(swigluCpu(gg, up), p), x, 1e-6), {
    atol: 1e-7,
    label: "swiglu gate",
  });
  assertClose(dup, finiteDiff((uu) => dot(swigluCpu(x, uu), p), up, 1e-6), {
    atol: 1e-7,
    label: "swiglu up",
  });
});

/** Shape pairs that broadcast: same shape, trailing vector, per-row scalar, middle dim, both ways, scalar. */
const binaryShapes: [number[], number[]][] = [
  [[1], [1]],
  [[7], [7]],
  [[33, 129], [33, 129]],
  [[3, 7, 129], [129]],
  [[3, 7, 129], [3, 7, 1]],
  [[3, 7, 129], [3, 1, 129]],
  [[1], [33, 129]],
  [[7, 1], [1, 9]],
  [[3, 7, 129], []],
];

Deno.test("elementwise cpu: broadcast add / sub / mul backward match finite differences", () => {
  for (const [as, bs] of [[[3, 4, 5], [5]], [[3, 4, 5], [3, 4, 1]], [[3, 1, 5], [4, 1]], [[2], []]]) {
    const a = randn(shapeSize(as), 4), b = randn(shapeSize(bs), 5);
    const p = probe(shapeSize(broadcastShape(as, bs)), 6);
    for (const op of ["add", "sub", "mul"] as const) {
      const { da, db } = binaryBackwardCpu(op, a, as, b, bs, p);
      const fa = finiteDiff((aa) => dot(binaryCpu(op, aa, as, b, bs), p), a);
      const fb = finiteDiff((bb) => dot(binaryCpu(op, a, as, bb, bs), p), b);
      assertClose(da, fa, { atol: 1e-7, label: `${op} [${as}] [${bs}] da` });
      assertClose(db, fb, { atol: 1e-7, label: `${op} [${as}] [${bs}] db` });
    }
  }
  assert.deepEqual(broadcastShape([3, 1, 5], [4, 1]), [3, 4, 5]);
  assert.throws(() => broadcastShape([3, 4], [3]), /shapes \[3,4\] and \[3\] do not broadcast/);
});

// ------------------------------------------------------------------ GPU vs CPU

/**
 * Makes parameters of `data` (in `dtype`), runs `f`, back-propagates the probe gradient; returns the
 * output, the probe and the inputs' gradients (null where none).
 */
async function runGpu(
  e: Engine,
  data: { x: Float32Array; shape: number[]; frozen?: boolean }[],
  dtype: DType,
  f: (...xs: Tensor[]) => Tensor,
): Promise<{ y: Float32Array; yShape: readonly number[]; g: Float32Array; grads: (Float32Array | null)[] }> {
  const ps = data.map((d) => {
    const p = e.param(d.x, d.shape, { dtype });
    p.requiresGrad = !d.frozen;
    return p;
  });
  const { y, g } = e.tidy(() => {
    const y = f(...ps);
    const g = probe(y.size, 8);
    if (dtype === "f16") roundToF16(g);
    backward(y, e.tensor(g, y.shape, dtype));
    return { y, g };
  });
  const out = {
    y: await y.read() as Float32Array,
    yShape: y.shape,
    g,
    grads: await Promise.all(ps.map((p) => p.grad ? p.grad.read() as Promise<Float32Array> : null)),
  };
  y.dispose();
  for (const p of ps) p.dispose();
  return out;
}

const ops = { add, sub, mul };

for (const dtype of ["f32", "f16"] as const) {
  const tol = dtype === "f32" ? { atol: 1e-5, rtol: 1e-5 } : { atol: 2e-3, rtol: 2e-3 };
  const prep = (a: Float32Array) => (dtype === "f16" ? roundToF16(a) : a);
  const skip = (e: Engine) => dtype === "f16" && !e.hasF16;

  gpuTest(`elementwise ${dtype}: add / sub / mul with broadcasting, forward and backward`, async (e) => {
    if (skip(e)) return;
    for (const [as, bs] of binaryShapes) {
      for (const op of ["add", "sub", "mul"] as BinaryOp[]) {
        for (const [sa, sb] of [[as, bs], [bs, as]]) {
          const a = prep(randn(shapeSize(sa), 1)), b = prep(randn(shapeSize(sb), 2));
          const r = await runGpu(e, [{ x: a, shape: sa }, { x: b, shape: sb }], dtype, ops[op]);
          const label = `${op} [${sa}] [${sb}]`;
          assert.deepEqual(r.yShape, broadcastShape(sa, sb), label);
          assertClose(r.y, binaryCpu(op, a, sa, b, sb), { ...tol, label });
          const { da, db } = binaryBackwardCpu(op, a, sa, b, sb, r.g);
          // Gradients summed over many broadcast elements round once in f16: scale atol with the count.
          const n = shapeSize(broadcastShape(sa, sb));
          const atol = (s: number[]) => (dtype === "f16" ? tol.atol * Math.sqrt(n / shapeSize(s)) : tol.atol);
          assertClose(r.grads[0]!, da, { ...tol, atol: atol(sa), label: label + " da" });
          assertClose(r.grads[1]!, db, { ...tol, atol: atol(sb), label: label + " db" });
        }
      }
    }
  });

  gpuTest(`elementwise ${dtype}: a frozen input gets no gradient, the other still does`, async (e) => {
    if (skip(e)) return;
    const x = prep(randn(3 * 33, 3)), w = prep(randn(33, 4));
    const r = await runGpu(e, [{ x, shape: [3, 33] }, { x: w, shape: [33], frozen: true }], dtype, mul);
    assert.equal(r.grads[1], null);
    assertClose(r.grads[0]!, binaryBackwardCpu("mul", x, [3, 33], w, [33], r.g).da, tol);
    const r2 = await runGpu(e, [{ x, shape: [3, 33], frozen: true }, { x: w, shape: [33] }], dtype, sub);
    assert.equal(r2.grads[0], null);
    assertClose(r2.grads[1]!, binaryBackwardCpu("sub", x, [3, 33], w, [33], r2.g).db, { ...tol, atol: 1e-2 });
  });

  gpuTest(`elementwise ${dtype}: activations, scale and addScalar, forward and backward`, async (e) => {
    if (skip(e)) return;
    const cases: [
      string,
      (x: Tensor) => Tensor,
      (x: Float32Array) => Float64Array,
      (
        x: Float32Array,
        g: Float32Array,
      ) => Float64Array,
    ][] = [
      [
        "gelu tanh",
        (t) => gelu(t, "tanh"),
        (x) => geluCpu(x, "tanh"),
        (x, g) => geluBackwardCpu(x, g, "tanh"),
      ],
      [
        "gelu erf",
        (t) => gelu(t, "none"),
        (x) => geluCpu(x, "none"),
        (x, g) => geluBackwardCpu(x, g, "none"),
      ],
      ["quickGelu", quickGelu, quickGeluCpu, quickGeluBackwardCpu],
      ["silu", silu, siluCpu, siluBackwardCpu],
      ["scale", (t) => scale(t, -1.75), (x) => scaleCpu(x, -1.75), (_, g) => scaleCpu(g, -1.75)],
      [
        "addScalar",
        (t) => addScalar(t, 0.625),
        (x) => addScalarCpu(x, 0.625),
        (_, g) => Float64Array.from(g),
      ],
    ];
    for (const shape of [[1], [7], [33, 129]]) {
      const x = prep(inputs(shapeSize(shape), 9));
      for (const [name, op, fwd, bwd] of cases) {
        const r = await runGpu(e, [{ x, shape }], dtype, op);
        assert.deepEqual(r.yShape, shape);
        assertClose(r.y, fwd(x), { ...tol, label: `${name} [${shape}]` });
        assertClose(r.grads[0]!, bwd(x, r.g), { ...tol, label: `${name} [${shape}] grad` });
      }
    }
  });

  gpuTest(`elementwise ${dtype}: swiglu, forward and both gradients (and one at a time)`, async (e) => {
    if (skip(e)) return;
    for (const shape of [[1], [7], [3, 7, 129]]) {
      const gate = prep(inputs(shapeSize(shape), 10)), up = prep(randn(shapeSize(shape), 11));
      for (const [fg, fu] of [[false, false], [true, false], [false, true]]) {
        const r = await runGpu(
          e,
          [{ x: gate, shape, frozen: fg }, { x: up, shape, frozen: fu }],
          dtype,
          swiglu,
        );
        assertClose(r.y, swigluCpu(gate, up), { ...tol, label: `swiglu [${shape}]` });
        const { dgate, dup } = swigluBackwardCpu(gate, up, r.g);
        if (fg) assert.equal(r.grads[0], null);
        else assertClose(r.grads[0]!, dgate, { ...tol, label: `swiglu [${shape}] dgate` });
        if (fu) assert.equal(r.grads[1], null);
        else assertClose(r.grads[1]!, dup, { ...tol, label: `swiglu [${shape}] dup` });
      }
    }
  });
}

gpuTest("elementwise f32: gelu erf keeps its relative precision in the left tail", async (e) => {
  // x in [-9, -3]: gelu is -4e-3 .. -1e-18; an erf with 1e-7 absolute error would be off by orders of magnitude.
  const x = Float32Array.from({ length: 61 }, (_, i) => -3 - i / 10);
  const r = await runGpu(e, [{ x, shape: [61] }], "f32", (t) => gelu(t, "none"));
  assertClose(r.y, geluCpu(x, "none"), { atol: 0, rtol: 2e-5, label: "gelu erf tail" });
  assertClose(r.grads[0]!, geluBackwardCpu(x, r.g, "none"), {
    atol: 0,
    rtol: 2e-5,
    label: "gelu erf tail grad",
  });
});

gpuTest("elementwise: cast f32 <-> f16, gradient cast back", async (e) => {
  if (!e.hasF16) return;
  const x = inputs(129, 12);
  const r = await runGpu(e, [{ x, shape: [129] }], "f32", (t) => cast(t, "f16"));
  const rounded = roundToF16(Float32Array.from(x));
  // WGSL may round f32 -> f16 either way: allow one f16 ulp (2^-10 relative).
  assertClose(r.y, rounded, { atol: 6e-8, rtol: 1e-3, label: "f32 -> f16" });
  assertClose(r.grads[0]!, r.g, { atol: 0, label: "f16 gradient cast back to f32" });
  const h = await runGpu(e, [{ x: rounded, shape: [3, 43] }], "f16", (t) => cast(t, "f32"));
  assertClose(h.y, rounded, { atol: 0, label: "f16 -> f32 exact" });
  assertClose(h.grads[0]!, roundToF16(Float32Array.from(h.g)), {
    atol: 6e-8,
    rtol: 1e-3,
    label: "grad to f16",
  });
});

gpuTest("elementwise: errors name the shapes and dtypes", (e) => {
  const a = e.tensor(new Float32Array(6), [2, 3]), b = e.tensor(new Float32Array(2), [2]);
  assert.throws(() => add(a, b), /add: shapes \[2,3\] and \[2\] do not broadcast/);
  const ids = e.tensor([1, 2, 3], [3], "i32");
  assert.throws(() => mul(a, ids), /mul: inputs must share a float dtype, got f32\[2,3\] and i32\[3\]/);
  assert.throws(() => swiglu(a, a.view([3, 2])), /swiglu: .* f32\[2,3\] and f32\[3,2\]/);
  assert.throws(() => gelu(ids, "tanh"), /gelu_tanh: i32\[3\] is not f32 or f16/);
  if (e.hasF16) {
    const h = e.tensor([1, 2, 3], [3], "f16");
    assert.throws(() => sub(a, h), /sub: inputs must share a float dtype, got f32\[2,3\] and f16\[3\]/);
    h.dispose();
  }
  for (const t of [a, b, ids]) t.dispose();
});
