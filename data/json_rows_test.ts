import assert from "node:assert/strict";
import { JsonArraySplitter, JsonLinesSplitter, type RawRow, type RowSplitter } from "./json_rows.ts";

const enc = new TextEncoder(), dec = new TextDecoder();

/** The rows of `bytes` pushed in pieces of `size` bytes. */
function split(splitter: RowSplitter, bytes: Uint8Array, size: number): RawRow[] {
  const out: RawRow[] = [];
  for (let i = 0; i < bytes.length; i += size) {
    // A copy per chunk, as a reader filling a fresh buffer gives them.
    for (const r of splitter.push(bytes.slice(i, i + size))) out.push({ ...r, bytes: r.bytes.slice() });
  }
  out.push(...splitter.end());
  return out;
}

// Strings with brackets, commas, escaped quotes and backslashes, multi-byte characters; nested values,
// scalars and a string as elements; pretty-printed lines.
const TRICKY = [
  { id: "a", conversations: [{ from: "human", value: 'say "]" and "}" , [ { \\' }] },
  { id: 2, v: "\\\\", w: ['\\"', "]]", "é → 😀"] },
  'a string [row] with \\" inside',
  12.5e3,
  true,
  null,
  [[], {}, [{ "k": "]}" }]],
  { '"key"': "\\" },
];
const TRICKY_TEXT = "\uFEFF \n[\n" + TRICKY.map((v) => "  " + JSON.stringify(v, null, 1)).join(" ,\n") +
  "\n]\n";

Deno.test("JSON array: elements found whatever the chunk boundaries (strings with brackets and escapes)", () => {
  const bytes = enc.encode(TRICKY_TEXT);
  const lines = TRICKY_TEXT.split("\n");
  for (const size of [1, 2, 3, 5, 7, 16, 64, bytes.length]) {
    const rows = split(new JsonArraySplitter("t.json"), bytes, size);
    assert.deepEqual(rows.map((r) => JSON.parse(dec.decode(r.bytes))), TRICKY, `chunks of ${size} bytes`);
    assert.deepEqual(rows.map((r) => r.index), TRICKY.map((_, i) => i));
    // Each row's offset is where its bytes are in the file.
    for (const r of rows) assert.deepEqual(bytes.subarray(r.offset, r.offset + r.bytes.length), r.bytes);
    // Each row's line is the line its text starts on.
    for (const r of rows) assert.ok(lines[r.line - 1].includes(dec.decode(r.bytes).split("\n")[0]));
  }
  // Every split of the file into two chunks.
  for (let cut = 0; cut <= bytes.length; cut++) {
    const s = new JsonArraySplitter("t.json");
    const rows = [...s.push(bytes.slice(0, cut)), ...s.push(bytes.slice(cut)), ...s.end()];
    assert.deepEqual(rows.map((r) => JSON.parse(dec.decode(r.bytes))), TRICKY, `cut at ${cut}`);
  }
  assert.deepEqual(split(new JsonArraySplitter("e.json"), enc.encode(" [ ] "), 1), []);
});

Deno.test("JSON array: broken structure is an error naming the file, the byte and the line", () => {
  const bad = (text: string, re: RegExp) => {
    for (const size of [1, 4, text.length || 1]) {
      assert.throws(() => split(new JsonArraySplitter("d.json"), enc.encode(text), size), re, text);
    }
  };
  bad("", /d\.json: not valid JSON at byte 0 \(line 1\): the file is empty/);
  bad('{"id": 1}\n{"id": 2}', /expected "\[" .*name the file \.jsonl/);
  bad("[1, 2", /the array is not closed/);
  bad('[{"a": 1}', /the array is not closed/);
  bad('[{"a": [1}]', /byte 9 \(line 1\): found "}" where "]" was expected/);
  bad('[\n{"a": "x]', /byte 8 \(line 2\): a string is not terminated/);
  bad('[1,\n {"a": [1,\n2]', /byte 5 \(line 2\): this row is not closed before the end of the file/);
  bad("[1,]", /byte 3 .*expected a row/);
  bad("[1 2]", /expected "," or "\]" after a row/);
  bad("[1]\n\nx", /byte 5 \(line 3\): unexpected text after the array; fix the file/);
});

Deno.test("JSON array: a whole file pushed once gives views of its bytes, not copies", () => {
  const bytes = enc.encode('[{"id": "a"},\n "b"]');
  const s = new JsonArraySplitter("w.json");
  const rows = [...s.push(bytes), ...s.end()];
  assert.deepEqual(rows.map((r) => [r.index, r.line, r.offset]), [[0, 1, 1], [1, 2, 15]]);
  for (const r of rows) assert.equal(r.bytes.buffer, bytes.buffer);
});

Deno.test("JSON lines: one row per line across chunks; blank lines counted; BOM, CRLF, no last newline", () => {
  const text = '\uFEFF{"id": "a"}\r\n\n  \n{"id": "b", "v": "x\\ny"}\n{"id": 3}';
  const bytes = enc.encode(text);
  for (const size of [1, 2, 3, 8, bytes.length]) {
    const rows = split(new JsonLinesSplitter(), bytes, size);
    assert.deepEqual(rows.map((r) => [r.index, r.line, r.offset, JSON.parse(dec.decode(r.bytes)).id]), [
      [0, 1, 3, "a"],
      [3, 4, 20, "b"],
      [4, 5, 45, 3],
    ]);
  }
});
