import assert from "node:assert/strict";
import { SafetensorsFile } from "../io/safetensors.ts";
import type { RgbImage } from "./image.ts";
import {
  CLIP_NORM,
  type ImagePreprocessConfig,
  parseImagePreprocessConfig,
  preprocess,
  resizeImage,
  SIGLIP_NORM,
  squareImage,
} from "./preprocess.ts";

/** An image from rows of [r, g, b] pixels. */
function image(rows: number[][][]): RgbImage {
  return { width: rows[0].length, height: rows.length, data: new Uint8Array(rows.flat(2)) };
}

/** A gray image from rows of levels (r = g = b). */
function gray(rows: number[][]): RgbImage {
  return image(rows.map((r) => r.map((v) => [v, v, v])));
}

/** The red channel, row-major. */
const reds = (img: RgbImage) => Array.from(img.data.filter((_, i) => i % 3 === 0));

const cfg = (over: Record<string, unknown>): ImagePreprocessConfig =>
  parseImagePreprocessConfig(over, "image");

function assertClose(got: ArrayLike<number>, want: ArrayLike<number>, tol: number, what: string) {
  assert.equal(got.length, want.length, `${what}: length`);
  for (let i = 0; i < want.length; i++) {
    assert.ok(Math.abs(got[i] - want[i]) <= tol, `${what}[${i}]: ${got[i]} vs ${want[i]}`);
  }
}

const A = [10, 20, 30], B = [40, 50, 60], F = [127, 127, 127];

Deno.test("pad: a 2x1 image goes on top of a 2x2 fill square (offset (2-1)//2 = 0), then normalizes", () => {
  const c = cfg({ size: 2, mode: "pad" });
  assert.deepEqual(Array.from(squareImage(image([[A, B]]), c).data), [...A, ...B, ...F, ...F]);
  const px = preprocess(image([[A, B]]), c); // [3, 2, 2]: (x / 255 - 0.5) / 0.5 = 2x / 255 - 1
  const n = (v: number) => 2 * v / 255 - 1;
  assertClose(
    px,
    [
      ...[n(10), n(40), n(127), n(127)],
      ...[n(20), n(50), n(127), n(127)],
      ...[n(30), n(60), n(127), n(127)],
    ],
    1e-7,
    "pixels",
  );
  assert.ok(Math.abs(n(127) - -0.00392157) < 1e-8);
});

Deno.test("pad: tall and odd images center with floor offsets, in the fill colour", () => {
  const f = [255, 0, 64];
  const tall = squareImage(image([[A], [B]]), cfg({ size: 2, mode: "pad", fill: f })); // x0 = (2-1)//2 = 0
  assert.deepEqual(Array.from(tall.data), [...A, ...f, ...B, ...f]);
  const wide = squareImage(image([[A, B, A]]), cfg({ size: 3, mode: "pad", fill: f })); // y0 = (3-1)//2 = 1
  assert.deepEqual(Array.from(wide.data), [...f, ...f, ...f, ...A, ...B, ...A, ...f, ...f, ...f]);
  const narrow = squareImage(image([[A], [B], [A]]), cfg({ size: 3, mode: "pad", fill: f })); // x0 = 1
  assert.deepEqual(Array.from(narrow.data), [...f, ...A, ...f, ...f, ...B, ...f, ...f, ...A, ...f]);
});

Deno.test("a constant image stays constant through every mode and filter", () => {
  const img = gray(Array.from({ length: 5 }, () => new Array(7).fill(50)));
  for (const mode of ["resize", "pad", "crop"] as const) {
    for (const resample of ["bicubic", "bilinear"] as const) {
      for (const size of [3, 5, 11]) {
        const sq = squareImage(img, cfg({ size, mode, resample, fill: [50, 50, 50] }));
        assert.equal(sq.width, size);
        assert.equal(sq.height, size);
        assert.ok(sq.data.every((v) => v === 50), `${mode} ${resample} ${size}`);
      }
    }
  }
});

Deno.test("bilinear downscale antialiases: [0, 60, 120, 180] -> [43, 137] (triangle of width 2)", () => {
  // Output 0: center 1.0, taps x = 0, 1, 2 at distances 0.5, 0.5, 1.5 px, / 2 -> weights .75 .75 .25
  // (sum 1.75): (0 * .75 + 60 * .75 + 120 * .25) / 1.75 = 42.86; output 1: (60 * .25 + 120 * .75 +
  // 180 * .75) / 1.75 = 137.14. Plain bilinear (no antialias) would give 30 and 150.
  assert.deepEqual(reds(resizeImage(gray([[0, 60, 120, 180]]), 2, 1, "bilinear")), [43, 137]);
});

Deno.test("bicubic upscale by 2 overshoots and clamps: [100, 200] -> [91, 121, 179, 209]", () => {
  // Output 0: center 0.25, taps at distances 0.25 and 1.25: cubic(.25) = .8671875, cubic(1.25) =
  // -.0703125, normalized 1.0882 and -0.0882: 100 * 1.0882 - 200 * .0882 = 91.18. Output 1: center
  // 0.75: cubic(.25), cubic(.75) = .2265625 -> .7929, .2071: 79.29 + 41.43 = 120.7. Symmetric after.
  assert.deepEqual(reds(resizeImage(gray([[100, 200]]), 4, 1, "bicubic")), [91, 121, 179, 209]);
  assert.deepEqual(reds(resizeImage(gray([[0, 200]]), 4, 1, "bicubic")), [0, 41, 159, 218]); // -17.6 -> 0
  // The same along y (the vertical pass).
  assert.deepEqual(reds(resizeImage(gray([[100], [200]]), 1, 4, "bicubic")), [91, 121, 179, 209]);
});

Deno.test("crop: shortest side to S, then the center window with floor offsets", () => {
  const cols = [[1, 0, 0], [2, 0, 0], [3, 0, 0], [4, 0, 0], [5, 0, 0], [6, 0, 0]];
  const six = image([cols, cols]); // 6x2: already S = 2 on the short side; x0 = (6-2)//2 = 2
  assert.deepEqual(reds(squareImage(six, cfg({ size: 2, mode: "crop" }))), [3, 4, 3, 4]);
  const five = image([cols.slice(0, 5), cols.slice(0, 5)]); // x0 = (5-2)//2 = 1
  assert.deepEqual(reds(squareImage(five, cfg({ size: 2, mode: "crop" }))), [2, 3, 2, 3]);
  const tall = squareImage(gray([[1], [2], [3], [4], [5]]), cfg({ size: 1, mode: "crop" })); // 1x5 -> 1x5, y0 = 2
  assert.deepEqual(reds(tall), [3]);
});

Deno.test("normalization: CLIP's mean and std, channels first", () => {
  const px = preprocess(image([[[255, 0, 0]]]), cfg({ size: 1, ...CLIP_NORM }));
  assertClose(
    px,
    [(1 - 0.48145466) / 0.26862954, -0.4578275 / 0.26130258, -0.40821073 / 0.27577711],
    1e-6,
    "px",
  );
  assertClose(px, [1.9303363, -1.7520971, -1.4802197], 1e-6, "hand values");
  const siglip = preprocess(gray([[0, 255]]), cfg({ size: 2, mode: "pad", ...SIGLIP_NORM }));
  assertClose(siglip.subarray(0, 4), [-1, 1, 127 / 127.5 - 1, 127 / 127.5 - 1], 1e-7, "siglip");
});

Deno.test("golden: the u8 square image equals Pillow's exactly; pixels match transformers within 1e-6", async () => {
  const golden = await SafetensorsFile.open(
    new URL("./testdata/golden.safetensors", import.meta.url).pathname,
  );
  try {
    const names = Object.keys(golden.metadata);
    assert.ok(names.length >= 10, `cases: ${names}`);
    let normalized = 0;
    for (const name of names) {
      const c = cfg(JSON.parse(golden.metadata[name]));
      const info = golden.info(`${name}.input`);
      const [H, W] = info.shape;
      const input = { width: W, height: H, data: (await golden.read(`${name}.input`)) as Uint8Array };
      const want = await golden.read(`${name}.resized`);
      const got = squareImage(input, c);
      assert.deepEqual([got.width, got.height], [c.size, c.size], name);
      assert.deepEqual(Array.from(got.data), Array.from(want), `${name}: differs from Pillow`);
      if (golden.has(`${name}.pixels`)) {
        assertClose(preprocess(input, c), await golden.read(`${name}.pixels`), 1e-6, name);
        normalized++;
      }
    }
    assert.equal(normalized, 2);
  } finally {
    golden.close();
  }
});

Deno.test("config: defaults from the schema; errors name the path and field", () => {
  assert.deepEqual(parseImagePreprocessConfig({ size: 384 }, "image"), {
    size: 384,
    mode: "resize",
    fill: [127, 127, 127],
    mean: [0.5, 0.5, 0.5],
    std: [0.5, 0.5, 0.5],
    resample: "bicubic",
  });
  const bad = (v: unknown, re: RegExp) =>
    assert.throws(() => parseImagePreprocessConfig(v, "data.image"), re);
  bad(
    { size: 384, fill: [0, 300, 0] },
    /data\.image\.fill\[1\]: Too big: expected number to be <=255 \(got 300\)/,
  );
  bad({ size: 0 }, /data\.image\.size/);
  bad({ size: 384, mode: "squash" }, /data\.image\.mode: .*"resize"\|"pad"\|"crop" \(got "squash"\)/);
  bad({ size: 384, std: [0.5, 0, 0.5] }, /data\.image\.std\[1\]/);
  bad({ size: 384, sise: 3 }, /data\.image\.sise: unknown field; allowed fields: size, mode, fill, /);
  bad({}, /data\.image\.size: .* \(missing\)/);
});

Deno.test("resizeImage rejects bad sizes; squareImage rejects inconsistent images", () => {
  assert.throws(() => resizeImage(gray([[1]]), 0, 2, "bicubic"), /positive integers/);
  assert.throws(
    () => squareImage({ width: 2, height: 2, data: new Uint8Array(5) }, cfg({ size: 2 })),
    /2x2 has 5 bytes/,
  );
});
