import assert from "node:assert/strict";
import { join } from "node:path";
import { JsonArraySplitter, JsonLinesSplitter, type RawRow, type RowSplitter } from "./row_stream.ts";

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
  bad('[\n{"a": "x]', /a string is not terminated/);
  bad("[1,]", /byte 3 .*expected a row/);
  bad("[1 2]", /expected "," or "\]" after a row/);
  bad("[1]\n\nx", /byte 5 \(line 3\): unexpected text after the array; fix the file/);
});

Deno.test("JSON lines: one row per line across chunks; blank lines counted; BOM, CRLF, no last newline", () => {
  const text = '\uFEFF{"id": "a"}\r\n\n  \n{"id": "b", "v": "x\\ny"}\n{"id": 3}';
  const bytes = enc.encode(text);
  for (const size of [1, 2, 3, 8, bytes.length]) {
    const rows = split(new JsonLinesSplitter(), bytes, size);
    assert.deepEqual(rows.map((r) => [r.index, r.line, JSON.parse(dec.decode(r.bytes)).id]), [
      [0, 1, "a"],
      [3, 4, "b"],
      [4, 5, 3],
    ]);
  }
});

/** Reads `file` with streamRows in a fresh process; its rows and the growth of its peak resident memory. */
async function scanInChild(file: string): Promise<{ rows: number; grewBytes: number }> {
  const code = `
    import { streamRows } from ${JSON.stringify(new URL("./row_stream.ts", import.meta.url).href)};
    const hwm = () => Number(Deno.readTextFileSync("/proc/self/status").match(/VmHWM:\\s+(\\d+) kB/)[1]) * 1024;
    const before = hwm(), dec = new TextDecoder();
    let rows = 0;
    for await (const r of streamRows(${JSON.stringify(file)})) {
      if (r.index !== rows) throw new Error("row " + rows + " came as " + r.index);
      JSON.parse(dec.decode(r.bytes));
      rows++;
    }
    console.log(JSON.stringify({ rows, grewBytes: hwm() - before }));`;
  const out = await new Deno.Command(Deno.execPath(), { args: ["eval", code], stderr: "inherit" }).output();
  assert.ok(out.success, "the child failed");
  return JSON.parse(dec.decode(out.stdout));
}

Deno.test({
  name: "streamRows: a file much larger than a chunk is read with flat memory",
  ignore: Deno.build.os !== "linux", // reads /proc/self/status
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "asvr_row_stream_" });
    try {
      const file = join(dir, "big.json");
      const row = (i: number) =>
        JSON.stringify({
          id: i,
          image: `coco/${i}.jpg`,
          conversations: [
            { from: "human", value: `<image>\nq ${"w ".repeat(400)}` },
            { from: "gpt", value: 'a ] } " answer' },
          ],
        });
      const block = enc.encode(Array.from({ length: 1000 }, (_, k) => row(k)).join(","));
      const blocks = 140; // ~ 120 MB
      const f = await Deno.open(file, { write: true, create: true, truncate: true });
      await f.write(enc.encode("["));
      for (let b = 0; b < blocks; b++) {
        if (b) await f.write(enc.encode(","));
        await f.write(block);
      }
      await f.write(enc.encode("]"));
      f.close();
      const size = (await Deno.stat(file)).size;
      const { rows, grewBytes } = await scanInChild(file);
      assert.equal(rows, blocks * 1000);
      // A reader holding the file would grow by its size; the stream grows by V8's working set (~20 MB).
      assert.ok(
        grewBytes < size / 3,
        `peak memory grew by ${(grewBytes / 1e6).toFixed(1)} MB for a ${(size / 1e6).toFixed(0)} MB file`,
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
