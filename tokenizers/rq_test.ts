import assert from "node:assert/strict";
import { Engine } from "../core/engine.ts";
import { assertClose, gpuTest, randn } from "../core/testing.ts";
import { SafetensorsFile } from "../io/safetensors.ts";
import { nearestCodes, rqDecode, rqEncode, subtractCodes } from "./rq.ts";
import { rqDecodeCpu, rqEncodeCpu, type RqShape } from "./rq_cpu.ts";

/**
 * A choice the f32 GPU may legitimately make differently from the f64 reference: the runner-up is
 * within 1e-5 (relative) of the best. f32 sums of Dc <= 32 squares err by at most about
 * Dc * 2^-23 ~ 4e-6 relative, so a larger margin must give the same code.
 */
const NEAR_TIE = 1e-5;

/** Throws, naming the case, when the reference saw a near-tie: the data cannot test exact equality. */
function assertNoNearTies(ref: { best: Float64Array; margin: Float64Array }, D: number, what: string): void {
  for (let i = 0; i < ref.margin.length; i++) {
    if (ref.margin[i] <= NEAR_TIE * ref.best[i] + 1e-12) {
      throw new Error(
        `${what}: the test data has a near-tie at row ${Math.floor(i / D)}, depth ${i % D} ` +
          `(best ${ref.best[i]}, runner-up ${ref.best[i] + ref.margin[i]}); an f32 kernel may pick ` +
          `either code. Change the seed of this case (this is not a kernel bug).`,
      );
    }
  }
}

/** Runs rqEncode on the GPU and the f64 reference on the same f32 values; asserts equal codes. */
async function checkEncode(
  e: Engine,
  s: RqShape,
  seed: number,
  codesPerChunk?: number,
): Promise<void> {
  const x = randn(s.R * s.Dc, seed);
  const cb = randn(s.books * s.K * s.Dc, seed + 1);
  const ref = rqEncodeCpu(x, cb, s);
  const what = `R=${s.R} Dc=${s.Dc} K=${s.K} books=${s.books} D=${s.depths} chunk=${codesPerChunk ?? "auto"}`;
  assertNoNearTies(ref, s.depths, what);
  const got = await e.tidy(async () => {
    const codes = rqEncode(e.tensor(x, [s.R, s.Dc]), e.tensor(cb, [s.books, s.K, s.Dc]), {
      depths: s.depths,
      codesPerChunk,
    });
    assert.deepEqual(codes.shape, [s.R, s.depths]);
    assert.equal(codes.dtype, "i32");
    return await codes.read();
  });
  assert.deepEqual(Array.from(got), Array.from(ref.codes), what);
}

gpuTest("rqEncode equals the f64 reference: tiles, K chunks and Dc slices with ragged edges", async (e) => {
  // R = 70: two row tiles (64 + 6); K = 150: three chunks of 64 (the last holds 22); Dc = 20: two
  // 16-wide slices, the second padded.
  const s = { R: 70, Dc: 20, K: 150, books: 3, depths: 3 };
  await checkEncode(e, s, 11, 64);
  await checkEncode(e, s, 11); // the default chunking (one chunk here)
  await checkEncode(e, { R: 5, Dc: 3, K: 7, books: 2, depths: 2 }, 21);
});

gpuTest("rqEncode with one shared codebook uses it at every depth", async (e) => {
  await checkEncode(e, { R: 33, Dc: 8, K: 40, books: 1, depths: 4 }, 31);
});

gpuTest("rqEncode: equal distances go to the lowest code, also across K chunks", async (e) => {
  const Dc = 4, K = 140;
  const cb = randn(K * Dc, 5, 3);
  // Copies of code 3: 19 (same thread of the same 64-code tile), 67 (same thread, next tile), 70
  // (another thread) and 130 (third tile); code 9 copies code 8 (a neighbouring thread).
  for (const [dst, src] of [[19, 3], [67, 3], [70, 3], [130, 3], [9, 8]]) {
    cb.set(cb.subarray(src * Dc, (src + 1) * Dc), dst * Dc);
  }
  // Rows: exactly code 3, code 3 plus a small offset, exactly code 9 (= 8).
  const x = new Float32Array(3 * Dc);
  x.set(cb.subarray(3 * Dc, 4 * Dc), 0);
  for (let c = 0; c < Dc; c++) x[Dc + c] = cb[3 * Dc + c] + 0.01 * (c + 1);
  x.set(cb.subarray(9 * Dc, 10 * Dc), 2 * Dc);
  for (const codesPerChunk of [64, 192, undefined]) {
    const got = await e.tidy(async () => {
      const codes = rqEncode(e.tensor(x, [3, Dc]), e.tensor(cb, [1, K, Dc]), { depths: 1, codesPerChunk });
      return Array.from(await codes.read());
    });
    assert.deepEqual(got, [3, 3, 8], `codesPerChunk ${codesPerChunk}`);
  }
});

gpuTest("rqEncode keeps leading dims, accepts f16 features and leaves its input unchanged", async (e) => {
  const B = 2, N = 5, Dc = 6, K = 9, D = 2;
  const x = randn(B * N * Dc, 41), cb = randn(D * K * Dc, 42);
  const ref = rqEncodeCpu(x, cb, { R: B * N, Dc, K, books: D, depths: D });
  assertNoNearTies(ref, D, "leading dims");
  await e.tidy(async () => {
    const xt = e.tensor(x, [B, N, Dc]);
    const codes = rqEncode(xt, e.tensor(cb, [D, K, Dc]));
    assert.deepEqual(codes.shape, [B, N, D]);
    assert.deepEqual(Array.from(await codes.read()), Array.from(ref.codes));
    assert.deepEqual(await xt.read(), x, "the features were modified");
  });
  if (!e.hasF16) return;
  // f16 features: the reference runs on the f16-rounded values.
  const xh = await e.tidy(() => e.tensor(x, [B * N, Dc], "f16").read());
  const refH = rqEncodeCpu(xh, cb, { R: B * N, Dc, K, books: D, depths: D });
  assertNoNearTies(refH, D, "f16 features");
  await e.tidy(async () => {
    const codes = rqEncode(e.tensor(x, [B * N, Dc], "f16"), e.tensor(cb, [D, K, Dc]));
    assert.deepEqual(Array.from(await codes.read()), Array.from(refH.codes));
  });
});

gpuTest(
  "nearestCodes gives the reference's code and squared distance; subtractCodes the residual",
  async (e) => {
    const R = 20, Dc = 10, K = 30;
    const x = randn(R * Dc, 51), cb = randn(K * Dc, 52);
    const ref = rqEncodeCpu(x, cb, { R, Dc, K, books: 1, depths: 1 });
    assertNoNearTies(ref, 1, "nearestCodes");
    await e.tidy(async () => {
      const xt = e.tensor(x, [R, Dc]), cbt = e.tensor(cb, [K, Dc]);
      const { codes, dist } = nearestCodes(xt, cbt);
      assert.deepEqual(Array.from(await codes.read()), Array.from(ref.codes));
      assertClose(await dist.read(), ref.best, { rtol: 1e-5, atol: 1e-5, label: "dist" });
      subtractCodes(xt, codes, cbt);
      assertClose(await xt.read(), ref.residual, { rtol: 1e-5, atol: 1e-6, label: "residual" });
    });
  },
);

gpuTest("rqDecode sums the code vectors of the first depths, shared or per depth", async (e) => {
  const R = 12, Dc = 7, K = 11, D = 3;
  const codes = Int32Array.from({ length: R * D }, (_, i) => (i * 7 + 3) % K);
  codes[4] = -1; // outside [0, K): adds nothing
  codes[5] = K;
  for (const books of [D, 1]) {
    const cb = randn(books * K * Dc, 60 + books);
    for (const depths of [D, 1, 0]) {
      const want = rqDecodeCpu(codes, cb, { R, Dc, K, books, D, depths });
      const got = await e.tidy(async () => {
        const out = rqDecode(e.tensor(codes, [R, D], "i32"), e.tensor(cb, [books, K, Dc]), depths);
        assert.deepEqual(out.shape, [R, Dc]);
        return await out.read();
      });
      assertClose(got, want, { atol: 1e-6, label: `books ${books} depths ${depths}` });
    }
  }
});

gpuTest("rqDecode of rqEncode: the reconstruction error is the reference's final residual", async (e) => {
  const R = 16, Dc = 5, K = 8, D = 2;
  const x = randn(R * Dc, 71), cb = randn(D * K * Dc, 72, 0.7);
  const ref = rqEncodeCpu(x, cb, { R, Dc, K, books: D, depths: D });
  assertNoNearTies(ref, D, "round trip");
  const xq = await e.tidy(async () => {
    const cbt = e.tensor(cb, [D, K, Dc]);
    return await rqDecode(rqEncode(e.tensor(x, [R, Dc]), cbt), cbt).read();
  });
  const err = Float64Array.from(x, (v, i) => v - xq[i]);
  assertClose(err, ref.residual, { atol: 1e-5, label: "x - decode(encode(x))" });
});

gpuTest("rqEncode binds one book at a time when the codebooks pass the binding limit", async () => {
  // A device whose storage bindings hold 8 KiB: the [3, 64, 16] codebooks (12 KiB) are bound book by
  // book (4 KiB each, at offsets that are multiples of 256).
  const small = await Engine.create({ limitOverrides: { maxStorageBufferBindingSize: 8192 } });
  try {
    const s = { R: 40, Dc: 16, K: 64, books: 3, depths: 3 };
    await checkEncode(small, s, 81);
    const cb = randn(3 * 64 * 16, 82);
    const codes = Int32Array.from({ length: 40 * 3 }, (_, i) => i % 64);
    const got = await small.tidy(() =>
      rqDecode(small.tensor(codes, [40, 3], "i32"), small.tensor(cb, [3, 64, 16])).read()
    );
    assertClose(got, rqDecodeCpu(codes, cb, { R: 40, Dc: 16, K: 64, books: 3, D: 3, depths: 3 }), {
      atol: 1e-6,
    });
  } finally {
    await small.close();
  }
});

gpuTest("rq ops refuse bad shapes with the fix", (e) => {
  e.tidy(() => {
    const x = e.tensor(randn(12, 1), [3, 4]);
    assert.throws(() => rqEncode(x, e.tensor(randn(2 * 5 * 3, 2), [2, 5, 3])), /Dc = 3/);
    assert.throws(() => rqEncode(x, e.tensor(randn(2 * 5 * 4, 2), [2, 5, 4]), { depths: 3 }), /depths <= 2/);
    assert.throws(() => rqEncode(x, e.tensor(randn(4, 2), [4])), /\[D, K, Dc\]/);
    assert.throws(() => rqDecode(e.tensor([0, 1], [2]), e.tensor(randn(20, 2), [5, 4])), /i32/);
    assert.throws(
      () => rqDecode(e.tensor([0, 1], [1, 2], "i32"), e.tensor(randn(20, 2), [5, 4]), 3),
      /\[0, 2\]/,
    );
  });
});

gpuTest("rqEncode and rqDecode match the PyTorch golden fixture (tests/golden/fixtures/rq)", async (e) => {
  // Made by tests/golden/make_golden.py from the reference's RQBottleneck semantics; its rows are
  // free of near-ties (see tests/golden/README.md), so the codes must be equal.
  const f = await SafetensorsFile.open(
    new URL("../tests/golden/fixtures/rq/golden.safetensors", import.meta.url).pathname,
  );
  try {
    const [R, Dc] = f.info("features").shape, [D, K] = f.info("codebooks").shape;
    const x = await f.read("features"), cb = await f.read("codebooks");
    const want = await f.read("codes"), quantized = await f.read("quantized");
    await e.tidy(async () => {
      const cbt = e.tensor(cb, [D, K, Dc]);
      const codes = rqEncode(e.tensor(x, [R, Dc]), cbt);
      assert.deepEqual(Array.from(await codes.read()), Array.from(want));
      assertClose(await rqDecode(codes, cbt).read(), quantized, { atol: 1e-5, label: "quantized" });
    });
  } finally {
    f.close();
  }
});
