import assert from "node:assert/strict";
import { collate } from "./collate.ts";
import type { TokenizedRow } from "./tokenize.ts";

const X = -100;
const I = -200;

// Row 0: <s>, 2 image positions, 3 text tokens; row 1: text only, 3 tokens; row 2: image at 1..2, 4 tokens.
const rows: TokenizedRow[] = [
  { inputIds: [1, I, I, 10, 11, 12], labels: [X, X, X, 10, 11, 12], imageStart: 1, imageTokens: 2 },
  { inputIds: [1, 20, 21], labels: [X, 20, 21], imageStart: -1, imageTokens: 0 },
  { inputIds: [1, I, I, 30], labels: [X, X, X, 30], imageStart: 1, imageTokens: 2 },
];
const shape: [number, number, number] = [3, 1, 2]; // 6 values per image
const px = (v: number) => new Float32Array(6).fill(v);

Deno.test("collate: right padding to the longest row, pad id 0 by default, labels -100", () => {
  const b = collate(rows, [px(1), null, px(3)], { imageShape: shape });
  // deno-fmt-ignore
  assert.deepEqual(Array.from(b.inputIds), [
    1, I, I, 10, 11, 12,
    1, 20, 21, 0, 0, 0,
    1, I, I, 30, 0, 0,
  ]);
  // deno-fmt-ignore
  assert.deepEqual(Array.from(b.labels), [
    X, X, X, 10, 11, 12,
    X, 20, 21, X, X, X,
    X, X, X, 30, X, X,
  ]);
  assert.ok(b.inputIds instanceof Int32Array && b.labels instanceof Int32Array);
  assert.deepEqual(b.imagePositions, [[1, 2], [], [1, 2]]);
  assert.deepEqual(b.hasImage, [true, false, true]);
  // Pixels [3, 3, 1, 2]: the text-only row reads as zeros.
  assert.deepEqual(Array.from(b.pixels!), [...px(1), ...px(0), ...px(3)]);
  assert.equal(collate(rows, null, { imageShape: shape, padId: 7 }).inputIds[9], 7);
});

Deno.test("collate: pixels null stays null; pixels of a text-only row are ignored", () => {
  const b = collate([rows[1]], null, { imageShape: shape });
  assert.equal(b.pixels, null);
  assert.deepEqual(b.hasImage, [false]);
  assert.deepEqual(Array.from(collate([rows[1]], [px(5)], { imageShape: shape }).pixels!), Array.from(px(0)));
});

Deno.test("collate: mismatches are errors that say what to give", () => {
  assert.throws(() => collate([], null, { imageShape: shape }), /no rows/);
  assert.throws(() => collate(rows, [px(1)], { imageShape: shape }), /1 images for 3 rows/);
  assert.throws(
    () => collate(rows, [null, null, px(3)], { imageShape: shape }),
    /row 0 has an image but pixels\[0\] is null/,
  );
  assert.throws(
    () => collate(rows, [new Float32Array(5), null, px(3)], { imageShape: shape }),
    /pixels\[0\] has 5 values; it must be \[3, 1, 2\] = 6/,
  );
  assert.throws(() => collate(rows, null, { imageShape: [1, 2, 2] }), /imageShape must be \[3, H, W\]/);
  assert.throws(
    () => collate([{ ...rows[0], labels: [X] }], null, { imageShape: shape }),
    /row 0 has 6 input ids but 1 labels/,
  );
  assert.throws(
    () => collate([{ ...rows[2], imageStart: 3 }], null, { imageShape: shape }),
    /row 0's image span 3\.\.4 runs past its 4 tokens/,
  );
});
