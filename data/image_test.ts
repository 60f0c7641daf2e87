import assert from "node:assert/strict";
import { SafetensorsFile } from "../io/safetensors.ts";
import { decodeImage, readImage, type RgbImage, sniffImageFormat } from "./image.ts";

const dir = new URL("./testdata/", import.meta.url).pathname;

/** Pixel (x, y) of the 4x3 fixtures (make_images.py COLORS). */
const COLORS = [
  [255, 0, 0],
  [0, 255, 0],
  [0, 0, 255],
  [255, 255, 255],
  [0, 0, 0],
  [255, 255, 0],
  [0, 255, 255],
  [255, 0, 255],
  [12, 34, 56],
  [200, 100, 50],
  [1, 2, 3],
  [128, 127, 126],
];

function pixel(img: RgbImage, x: number, y: number): number[] {
  const i = (y * img.width + x) * 3;
  return Array.from(img.data.subarray(i, i + 3));
}

/** Asserts every pixel of the 8-wide block `b` (8x8 blocks side by side) is within `tol` of `rgb`. */
function assertBlock(img: RgbImage, b: number, rgb: number[], tol: number) {
  for (let y = 0; y < 8; y++) {
    for (let x = 8 * b + 1; x < 8 * b + 7; x++) { // the block's inner columns (lossy edges excluded)
      const got = pixel(img, x, y);
      for (let c = 0; c < 3; c++) {
        assert.ok(Math.abs(got[c] - rgb[c]) <= tol, `block ${b} pixel (${x}, ${y}): ${got} vs ${rgb}`);
      }
    }
  }
}

async function errorOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    return (err as Error).message;
  }
  throw new Error("expected an error");
}

Deno.test("lossless formats decode to the exact pixels (PNG RGB, palette, RGBA, 16-bit; WebP lossless)", async () => {
  for (const name of ["rgb_4x3.png", "palette_4x3.png", "rgba_4x3.png", "rgb16_4x3.png", "rgb_4x3.webp"]) {
    const img = await readImage(dir + name);
    assert.equal(img.width, 4, name);
    assert.equal(img.height, 3, name);
    assert.equal(img.data.length, 4 * 3 * 3, name);
    for (let y = 0; y < 3; y++) {
      for (let x = 0; x < 4; x++) {
        assert.deepEqual(pixel(img, x, y), COLORS[y * 4 + x], `${name} (${x}, ${y})`);
      }
    }
  }
});

Deno.test("grayscale becomes RGB with equal channels (PNG exact, JPEG within 1)", async () => {
  const png = await readImage(dir + "gray_4x3.png");
  const levels = [0, 17, 34, 51, 68, 85, 102, 119, 136, 200, 254, 255];
  assert.deepEqual(Array.from(png.data), levels.flatMap((v) => [v, v, v]));
  const jpg = await readImage(dir + "gray_16x8.jpg");
  assert.deepEqual([jpg.width, jpg.height], [16, 8]);
  assertBlock(jpg, 0, [90, 90, 90], 1);
  assertBlock(jpg, 1, [180, 180, 180], 1);
});

Deno.test("lossy JPEG and WebP decode near the known block colours", async () => {
  const colors = [[200, 30, 40], [20, 60, 220], [240, 240, 16]];
  for (const [name, tol] of [["rgb_24x8.jpg", 2], ["rgb_24x8.webp", 6]] as const) {
    const img = await readImage(dir + name);
    assert.deepEqual([img.width, img.height], [24, 8]);
    colors.forEach((c, b) => assertBlock(img, b, c, tol));
  }
});

Deno.test("CMYK JPEG becomes RGB: white, near-black, cyan", async () => {
  const img = await readImage(dir + "cmyk_24x8.jpg");
  assert.deepEqual([img.width, img.height, img.data.length], [24, 8, 24 * 8 * 3]);
  assertBlock(img, 0, [255, 255, 255], 2);
  for (const v of pixel(img, 12, 4)) assert.ok(v < 40, `black block: ${pixel(img, 12, 4)}`);
  const [r, g, b] = pixel(img, 20, 4);
  assert.ok(r < 60 && g > 120 && b > 180, `cyan block: ${[r, g, b]}`);
});

Deno.test("the EXIF orientation tag is not applied (Pillow's layout)", async () => {
  const img = await readImage(dir + "exif6_16x8.jpg");
  assert.deepEqual([img.width, img.height], [16, 8]);
  assertBlock(img, 0, [200, 30, 40], 2);
  assertBlock(img, 1, [20, 60, 220], 2);
});

Deno.test("lossy photos decode as Pillow decodes them (within 1)", async () => {
  const golden = await SafetensorsFile.open(dir + "golden.safetensors");
  try {
    for (const name of ["photo_32x24.jpg", "photo_32x24.webp"]) {
      const want = await golden.read(`decode.${name}`);
      const img = await readImage(dir + name);
      assert.deepEqual([img.width, img.height], [32, 24]);
      let worst = 0;
      for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(img.data[i] - want[i]));
      assert.ok(worst <= 1, `${name}: max difference from Pillow ${worst}`);
    }
  } finally {
    golden.close();
  }
});

Deno.test("decodeImage on bytes equals readImage on the file; concurrent decodes agree", async () => {
  const bytes = await Deno.readFile(dir + "photo_32x24.jpg");
  const a = await readImage(dir + "photo_32x24.jpg");
  const many = await Promise.all(Array.from({ length: 8 }, () => decodeImage(bytes, "photo")));
  for (const b of many) assert.deepEqual(b, a);
});

Deno.test("sniffImageFormat reads the signatures", () => {
  const b = (...x: number[]) => new Uint8Array(x);
  assert.equal(sniffImageFormat(b(0xff, 0xd8, 0xff, 0xe0)), "jpeg");
  assert.equal(sniffImageFormat(b(0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a)), "png");
  assert.equal(sniffImageFormat(new TextEncoder().encode("RIFF\x10\0\0\0WEBPVP8 ")), "webp");
  assert.equal(sniffImageFormat(new TextEncoder().encode("RIFF\x10\0\0\0WAVEfmt ")), null);
  assert.equal(sniffImageFormat(new TextEncoder().encode("GIF89a")), null);
  assert.equal(sniffImageFormat(b(0xff, 0xd8)), null);
});

Deno.test("bad files: errors name the path and the problem", async () => {
  const tmp = await Deno.makeTempDir();
  try {
    const jpg = await Deno.readFile(dir + "photo_32x24.jpg");
    const png = await Deno.readFile(dir + "rgb_4x3.png");
    const webp = await Deno.readFile(dir + "photo_32x24.webp");
    const corrupt = jpg.slice();
    corrupt.fill(0x13, 200, 600); // garbage over the scan header and data
    const files: [string, Uint8Array, RegExp][] = [
      [
        "page.jpg",
        new TextEncoder().encode("<html><body>"),
        /page\.jpg: not a JPEG, PNG or WebP file \(starts with 3c 68 74 6d\)$/,
      ],
      [
        "anim.gif",
        new TextEncoder().encode("GIF89a\x01\0\x01\0"),
        /anim\.gif: not a JPEG, PNG or WebP file \(starts with 47 49 46 38\)/,
      ],
      ["empty.png", new Uint8Array(0), /empty\.png: empty file/],
      ["cut.jpg", jpg.slice(0, jpg.length >> 1), /cut\.jpg: corrupt or truncated JPEG \(.+\)/],
      ["header_only.jpg", jpg.slice(0, 3), /header_only\.jpg: corrupt or truncated JPEG/],
      ["corrupt.jpg", corrupt, /corrupt\.jpg: corrupt or truncated JPEG \(.+\)/],
      ["cut.png", png.slice(0, 60), /cut\.png: corrupt or truncated PNG/],
      ["cut.webp", webp.slice(0, webp.length - 30), /cut\.webp: corrupt or truncated WebP/],
    ];
    for (const [name, bytes, re] of files) {
      await Deno.writeFile(`${tmp}/${name}`, bytes);
      const msg = await errorOf(readImage(`${tmp}/${name}`));
      assert.match(msg, re);
      assert.ok(msg.startsWith(`${tmp}/${name}: `), msg);
    }
    assert.match(await errorOf(readImage(`${tmp}/missing.jpg`)), /missing\.jpg: image file not found/);
    assert.match(await errorOf(readImage(tmp)), /: is a directory, not an image file/);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("non-files and oversized files are refused without being read", async () => {
  const tmp = await Deno.makeTempDir();
  try {
    // A device would stream zeros forever; a FIFO with no writer would block the open.
    const dev = await errorOf(readImage("/dev/zero"));
    assert.match(dev, /^\/dev\/zero: not a regular file \(a device, FIFO or socket\)/);
    const fifo = `${tmp}/pipe.jpg`;
    const mk = await new Deno.Command("mkfifo", { args: [fifo] }).output();
    assert.equal(mk.code, 0);
    assert.match(await errorOf(readImage(fifo)), /pipe\.jpg: not a regular file/);
    // A link to a regular file is read; the limit is on the file's size.
    const jpg = await Deno.readFile(dir + "photo_32x24.jpg");
    await Deno.writeFile(`${tmp}/big.jpg`, jpg);
    await Deno.symlink(`${tmp}/big.jpg`, `${tmp}/link.jpg`);
    assert.equal((await readImage(`${tmp}/link.jpg`)).width, 32);
    const over = await errorOf(readImage(`${tmp}/big.jpg`, { maxBytes: jpg.length - 1 }));
    assert.match(over, new RegExp(`big\\.jpg: the file is ${jpg.length} bytes, over the image size limit`));
    assert.match(over, /data\.maxImageBytes/);
    assert.equal((await readImage(`${tmp}/big.jpg`, { maxBytes: jpg.length })).height, 24);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});
