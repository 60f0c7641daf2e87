import assert from "node:assert/strict";
import {
  bf16ArrayToF32,
  bf16BitsToF32,
  f16ArrayToF32,
  f32ArrayToBf16,
  f32ArrayToF16,
  f32ToBf16Bits,
} from "./float_bits.ts";
import { bf16Reference } from "./testdata/bf16_reference.ts";
import { randn } from "../core/random.ts";

/** Many f32 values: random normals at several scales, halfway cases, subnormals, extremes. */
function samples(): Float32Array {
  const out: number[] = [
    0,
    -0,
    1,
    -1,
    65504,
    65520,
    65519.99,
    2 ** -24,
    2 ** -25,
    2 ** -14,
    3e38,
    -3.4e38,
    1e-40,
  ];
  for (const s of [1e-6, 1e-3, 1, 1e3, 1e6, 1e30]) out.push(...Array.from(randn(200, 7), (v) => v * s));
  // exact bf16 ties: 1 + (2k+1) * 2^-8 lies halfway between two bf16 values
  for (let k = 0; k < 20; k++) out.push(1 + (2 * k + 1) * 2 ** -8, -(3 + (2 * k + 1) * 2 ** -7));
  // exact f16 ties: 1 + (2k+1) * 2^-11
  for (let k = 0; k < 20; k++) out.push(1 + (2 * k + 1) * 2 ** -11);
  return Float32Array.from(out);
}

Deno.test("f32 -> bf16 rounds to nearest even, like an independent f64 rounding", () => {
  const x = samples();
  const back = bf16ArrayToF32(f32ArrayToBf16(x));
  for (let i = 0; i < x.length; i++) {
    assert.equal(back[i], bf16Reference(x[i]), `x = ${x[i]}`);
  }
  assert.equal(bf16BitsToF32(f32ToBf16Bits(1 + 2 ** -8)), 1); // tie -> even (down)
  assert.equal(bf16BitsToF32(f32ToBf16Bits(1 + 3 * 2 ** -8)), 1 + 2 ** -6); // tie -> even (up)
  assert.ok(Number.isNaN(bf16BitsToF32(f32ToBf16Bits(NaN))));
  assert.equal(bf16BitsToF32(f32ToBf16Bits(Infinity)), Infinity);
  assert.equal(bf16BitsToF32(f32ToBf16Bits(3.4e38)), Infinity); // rounds past the largest bf16
});

Deno.test("f32 -> f16 rounds like Math.f16round; f16 -> f32 widens exactly", () => {
  const x = samples();
  const back = f16ArrayToF32(f32ArrayToF16(x));
  for (let i = 0; i < x.length; i++) assert.equal(back[i], Math.f16round(x[i]), `x = ${x[i]}`);
  // every f16 bit pattern widens to the value Float16Array gives
  const bits = new Uint16Array(65536).map((_, i) => i);
  const wide = f16ArrayToF32(bits);
  const ref = new Float16Array(bits.buffer);
  for (let i = 0; i < 65536; i++) {
    if (Number.isNaN(ref[i])) assert.ok(Number.isNaN(wide[i]));
    else assert.equal(wide[i], ref[i], `bits ${i.toString(16)}`);
  }
});
