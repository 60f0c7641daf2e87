import assert from "node:assert/strict";
import { RowLedger } from "./row_ledger.ts";

Deno.test("RowLedger: counts each row once, by kind, and sums up what happened", () => {
  const l = new RowLedger("d.json", 200, 0.02);
  assert.equal(l.summary(), "");
  l.skip(7, "image", "d.json row 7: a.jpg: image file not found");
  l.skip(7, "image", "d.json row 7: a.jpg: image file not found"); // the next epoch meets it again
  l.skip(3, "malformed", "d.json row 3: conversations is empty");
  l.skip(9, "image", "d.json row 9: b.jpg: corrupt");
  l.markCut(5);
  l.markCut(5);
  l.markInvalidUtf8([11]);
  assert.equal(l.skipped, 3);
  assert.equal(l.cut, 1);
  assert.equal(
    l.summary(),
    "3 of 200 rows skipped (1.5%, limit 2%): 2 image, 1 malformed; first: d.json row 7: a.jpg: image file " +
      "not found | d.json row 3: conversations is empty | d.json row 9: b.jpg: corrupt; 1 row cut to " +
      "maxLength; 1 row with bytes that are not UTF-8 (replaced by U+FFFD)",
  );
  assert.deepEqual(l.counts(), {
    rows_skipped: 3,
    rows_skipped_malformed: 1,
    rows_skipped_text: 0,
    rows_skipped_image: 2,
    rows_skipped_path: 0,
    rows_cut: 1,
    rows_text_masked: 0,
    rows_invalid_utf8: 1,
  });
  l.markTextMasked(4);
  assert.equal(l.counts().rows_text_masked, 1);
  assert.match(l.summary(), /; 1 row whose rounds did not add up \(text labels masked\);/);
});

Deno.test("RowLedger: an image path outside the image root is its own kind", () => {
  const l = new RowLedger("d.json", 10, 1);
  l.skip(4, "path", 'd.json row 4 (id "x"): ../../etc/passwd: the path leads through ".." to /etc/passwd');
  assert.match(l.summary(), /^1 of 10 rows skipped \(10%, limit 100%\): 1 path; first: d\.json row 4/);
  assert.equal(l.counts().rows_skipped_path, 1);
});

Deno.test("RowLedger: stops past the share limit and when no row is usable", () => {
  const l = new RowLedger("d.json", 100, 0.01);
  l.skip(1, "text", "row 1: too long");
  assert.throws(
    () => l.skip(2, "image", "row 2: missing"),
    /^Error: d\.json: 2 of 100 rows left out \(2%\), over data\.maxSkipShare 1% \(1 text, 1 image\); first: row 1: too long \| row 2: missing; fix the data or raise data\.maxSkipShare$/,
  );
  const all = new RowLedger("e.json", 2, 1);
  all.skip(0, "image", "row 0: missing");
  assert.throws(
    () => all.skip(1, "image", "row 1: missing"),
    /e\.json: no usable rows: all 2 were left out \(2 image\)/,
  );
});
