import assert from "node:assert/strict";
import { assertFinite, firstNonFinite } from "./finite.ts";
import { bf16ArrayToF32, f16ArrayToF32, f32ArrayToBf16, f32ArrayToF16 } from "./float_bits.ts";

Deno.test("firstNonFinite: NaN and both infinities, through f16 and bf16 widening", () => {
  assert.equal(firstNonFinite(Float32Array.from([0, -0, 3.4e38, -1e-45])), -1);
  assert.equal(firstNonFinite(new Float32Array(0)), -1);
  for (const bad of [NaN, Infinity, -Infinity]) {
    const x = Float32Array.from([1, 2, bad, bad]);
    assert.equal(firstNonFinite(x), 2, String(bad));
    assert.equal(firstNonFinite(f16ArrayToF32(f32ArrayToF16(x))), 2, `f16 ${bad}`);
    assert.equal(firstNonFinite(bf16ArrayToF32(f32ArrayToBf16(x))), 2, `bf16 ${bad}`);
    assert.equal(firstNonFinite(x.subarray(3)), 0, "a view's own index");
  }
  // every f16 / bf16 pattern with an all-ones exponent, and none else
  const all = Uint16Array.from({ length: 65536 }, (_, i) => i);
  const f16 = f16ArrayToF32(all), bf16 = bf16ArrayToF32(all);
  for (let h = 0; h < 65536; h++) {
    assert.equal(firstNonFinite(f16.subarray(h, h + 1)) === 0, (h & 0x7c00) === 0x7c00, `f16 ${h}`);
    assert.equal(firstNonFinite(bf16.subarray(h, h + 1)) === 0, (h & 0x7f80) === 0x7f80, `bf16 ${h}`);
  }
});

Deno.test("assertFinite names the file, tensor, value, index and the fix", () => {
  const src = { file: "m.safetensors", name: "w", dtype: "BF16", shape: [2, 2] };
  assertFinite(Float32Array.from([1, 2, 3, 4]), src, "fix it");
  assert.throws(
    () => assertFinite(Float32Array.from([1, 2, -Infinity, NaN]), src, "fix it"),
    /^Error: m\.safetensors: tensor "w" \(BF16 \[2,2\]\) holds -Infinity at index 2 \(of 4\): .*; fix it$/,
  );
});
