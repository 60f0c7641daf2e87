import assert from "node:assert/strict";
import { join } from "node:path";
import { DataRowError, type LlavaRow, parseLlavaRow, parseLlavaRows, readLlavaRows } from "./llava_json.ts";

const enc = (s: string) => new TextEncoder().encode(s);

/** A good image row. */
const good = (id: unknown = "abc") => ({
  id,
  image: "coco/1.jpg",
  conversations: [
    { from: "human", value: "<image>\nWhat is this?" },
    { from: "gpt", value: "A cat." },
  ],
});

/** The exact message of a row error at data/x.json row 3. */
const rowMessage = (id: string | undefined, reason: string) =>
  `data/x.json row 3 (${
    id === undefined ? "no id" : `id "${id}"`
  }): ${reason}; fix the row or set data.onError: "skip"`;

/** Asserts that parsing `json` as row 3 of data/x.json throws a DataRowError with exactly this reason. */
function assertBad(json: unknown, id: string | undefined, reason: string | RegExp) {
  let err: unknown;
  try {
    parseLlavaRow(json, "data/x.json", 3);
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof DataRowError, `expected a DataRowError for ${JSON.stringify(json)}`);
  assert.equal(err.file, "data/x.json");
  assert.equal(err.index, 3);
  assert.equal(err.id, id);
  if (typeof reason === "string") {
    assert.equal(err.message, rowMessage(id, reason));
  } else {
    const where = id === undefined ? "no id" : `id "${id}"`;
    assert.match(err.message, new RegExp(`^data/x\\.json row 3 \\(${where}\\): `));
    assert.match(err.reason, reason);
  }
}

const turns = (...pairs: [string, unknown][]) => pairs.map(([from, value]) => ({ from, value }));

Deno.test("parseLlavaRow: every kind of bad row names the file, the row index and the id", () => {
  assertBad(5, undefined, "a row must be a JSON object, got number");
  assertBad([good()], undefined, "a row must be a JSON object, got an array");
  assertBad({ conversations: good().conversations }, undefined, 'field "id" is missing');
  assertBad({ ...good(), id: true }, undefined, 'field "id" must be a string or a number, got boolean');
  assertBad(
    { ...good(), image: "" },
    "abc",
    /field "image" must be a non-empty path string, got an empty string/,
  );
  assertBad({ ...good(), image: 3 }, "abc", /field "image" must be a non-empty path string, got number/);
  assertBad({ ...good(), image: null }, "abc", /field "image" must be a non-empty path string, got null/);
  assertBad({ id: "abc" }, "abc", 'field "conversations" is missing');
  assertBad({ id: "abc", conversations: "hi" }, "abc", "conversations must be an array, got string");
  assertBad({ ...good(), conversations: [] }, "abc", "conversations is empty");
  assertBad({ ...good(), conversations: ["hi", "there"] }, "abc", /conversations\[0\] must be an object/);
  assertBad(
    { ...good(), conversations: turns(["system", "be nice"], ["gpt", "ok"]) },
    "abc",
    'conversations[0].from must be "human" or "gpt", got "system"',
  );
  assertBad(
    { ...good(), conversations: turns(["gpt", "hello"], ["human", "<image>\nhi"]) },
    "abc",
    'conversations[0].from is "gpt" but turns must alternate human, gpt, ... starting with human',
  );
  assertBad(
    { ...good(), conversations: turns(["human", "<image>\nq"], ["human", "q2"]) },
    "abc",
    /conversations\[1\]\.from is "human" but turns must alternate/,
  );
  assertBad(
    { ...good(), conversations: turns(["human", 42], ["gpt", "a"]) },
    "abc",
    "conversations[0].value must be a string, got number",
  );
  assertBad(
    { ...good(), conversations: turns(["human", "<image>\nq"], ["gpt", "  \n"]) },
    "abc",
    "conversations[1] (gpt) is empty",
  );
  assertBad(
    { ...good(), conversations: turns(["human", "<image>\nq"], ["gpt", "a"], ["human", "and?"]) },
    "abc",
    "the last turn (conversations[2]) is from human; a row must end with a gpt answer",
  );
  assertBad(
    {
      ...good(),
      conversations: turns(["human", "<image>\nq"], ["gpt", "a"], ["human", "<image> again"], ["gpt", "b"]),
    },
    "abc",
    "the <image> marker appears 2 times (in conversations[0], [2]); keep one",
  );
  assertBad(
    { id: 12, conversations: turns(["human", "<image>\nq"], ["gpt", "a"]) },
    "12",
    'conversations[0] has the <image> marker but the row has no "image"',
  );
  assertBad(
    { ...good(), conversations: turns(["human", "q"], ["gpt", "look: <image>"]) },
    "abc",
    "the <image> marker is in conversations[1], a gpt turn; move it to a human turn",
  );
});

Deno.test("parseLlavaRow: the image marker moves to the start of its turn; image rows without one get it", () => {
  const row = (conversations: { from: string; value: string }[], image: string | undefined = "a.png") =>
    parseLlavaRow({ id: 7, image, conversations }, "f.json", 0);
  // At the end of the question: moved to the front, the rest stripped.
  assert.deepEqual(
    row(turns(["human", "What is it?\n<image>  "], ["gpt", "A dog."]) as never).conversations,
    [
      { from: "human", value: "<image>\nWhat is it?" },
      { from: "gpt", value: "A dog." },
    ],
  );
  // Only the marker: the turn is just the marker.
  assert.equal(
    row(turns(["human", " <image>\n"], ["gpt", "A dog."]) as never).conversations[0].value,
    "<image>",
  );
  // No marker in an image row: prepended to the first human turn.
  const r = row(
    turns(["human", "Describe it. "], ["gpt", "A dog."], ["human", "More?"], ["gpt", "No."]) as never,
  );
  assert.equal(r.conversations[0].value, "<image>\nDescribe it.");
  assert.equal(r.conversations[2].value, "More?");
  // A marker in a later human turn stays in that turn (moved to its start), as the reference does.
  const later = row(
    turns(["human", "Hi"], ["gpt", "Hello."], ["human", "and <image>"], ["gpt", "A dog."]) as never,
  );
  assert.equal(later.conversations[0].value, "Hi");
  assert.equal(later.conversations[2].value, "<image>\nand");
  // Text-only rows are left as written; the id is kept as a string.
  const text = parseLlavaRow(
    { id: 7, conversations: turns(["human", " Hi "], ["gpt", "Hello."]) },
    "f.json",
    4,
  );
  assert.deepEqual(text, {
    file: "f.json",
    index: 4,
    id: "7",
    conversations: [{ from: "human", value: " Hi " }, { from: "gpt", value: "Hello." }],
  });
  assert.equal("image" in text, false);
});

Deno.test("parseLlavaRows: a JSON array with brackets and quotes inside strings", () => {
  const rows = [
    good("a"),
    { id: 2, conversations: turns(["human", 'He said "hi" [ok] {x} \\ ]'], ["gpt", "}]"]) },
  ];
  const { rows: out, skipped } = parseLlavaRows(
    enc(`\ufeff [\n${rows.map((r) => JSON.stringify(r)).join(" ,\n")}\n] \n`),
    "d.json",
  );
  assert.deepEqual(skipped, []);
  assert.equal(out.length, 2);
  assert.equal(out[1].conversations[0].value, 'He said "hi" [ok] {x} \\ ]');
  assert.equal(out[1].conversations[1].value, "}]");
  assert.deepEqual(out.map((r) => [r.index, r.id]), [[0, "a"], [1, "2"]]);
  assert.deepEqual(parseLlavaRows(enc(" [ ] "), "e.json"), { rows: [], skipped: [], invalidUtf8: [] });
});

Deno.test("parseLlavaRows: skip mode drops bad rows and lists them; error mode throws the first", () => {
  const data = [good("r0"), { ...good("r1"), conversations: [] }, good("r2"), { id: "r3" }, 17, good("r5")];
  const bytes = enc(JSON.stringify(data, null, 1));
  const { rows, skipped } = parseLlavaRows(bytes, "data/x.json", { onError: "skip" });
  assert.deepEqual(rows.map((r) => [r.index, r.id]), [[0, "r0"], [2, "r2"], [5, "r5"]]);
  assert.deepEqual(skipped, [
    { index: 1, id: "r1", reason: "conversations is empty" },
    { index: 3, id: "r3", reason: 'field "conversations" is missing' },
    { index: 4, id: undefined, reason: "a row must be a JSON object, got number" },
  ]);
  assert.throws(
    () => parseLlavaRows(bytes, "data/x.json"),
    (e: unknown) =>
      e instanceof DataRowError &&
      e.message ===
        'data/x.json row 1 (id "r1"): conversations is empty; fix the row or set data.onError: "skip"',
  );
  assert.throws(
    () => parseLlavaRows(bytes, "data/x.json", { onError: "ignore" as never }),
    /options must be/,
  );
});

Deno.test("parseLlavaRows: JSON lines, with blank lines and a broken line", () => {
  const lines = [
    JSON.stringify(good(1)),
    "",
    "  ",
    '{"id": "b", "conversations": [',
    JSON.stringify(good("c")),
    "",
  ];
  const bytes = enc(lines.join("\r\n"));
  const { rows, skipped } = parseLlavaRows(bytes, "data/x.jsonl", { onError: "skip" });
  assert.deepEqual(rows.map((r: LlavaRow) => [r.index, r.id]), [[0, "1"], [4, "c"]]);
  assert.equal(skipped.length, 1);
  assert.equal(skipped[0].index, 3);
  assert.equal(skipped[0].id, undefined);
  assert.match(skipped[0].reason, /^not valid JSON \(/);
  assert.throws(
    () => parseLlavaRows(bytes, "data/x.jsonl"),
    (e: unknown) =>
      e instanceof DataRowError &&
      /^data\/x\.jsonl row 3 \(no id\): not valid JSON \(.*\); fix the row/.test(e.message),
  );
});

Deno.test("parseLlavaRows: a .json file that is not valid JSON fails as a whole, naming the place", () => {
  const bad = (text: string, re: RegExp) =>
    assert.throws(() => parseLlavaRows(enc(text), "data/bad.json"), re);
  // A row that is not JSON (missing comma inside it): the line and column are the file's.
  bad(
    '[{"id": "a", "conversations": []},\n  {"id": "b" "conversations": []}]',
    /^Error: data\/bad\.json: invalid JSON at line 2, column 14/,
  );
  bad(
    '[{"id": "a"} {"id": "b"}]',
    /^Error: data\/bad\.json: not valid JSON at byte 13 \(line 1\): expected "," or "\]" after a row/,
  );
  bad(
    '{"id": "a"}',
    /data\/bad\.json: not valid JSON at byte 0 \(line 1\): expected "\[".*name the file \.jsonl/,
  );
  bad(
    '[{"id": "a"},\n{"id": "b"',
    /data\/bad\.json: not valid JSON at byte 14 \(line 2\): this row is not closed/,
  );
  bad('[{"id": "a"}', /data\/bad\.json: not valid JSON at byte 12 .*the array is not closed/);
  bad('[{"id": "a"},]', /data\/bad\.json: not valid JSON at byte 13 .*expected a row/);
  bad('[{"id": "a"}] x', /data\/bad\.json: not valid JSON at byte 14 .*unexpected text after the array/);
  bad(
    '[{"a": [1}]',
    /data\/bad\.json: not valid JSON at byte 9 \(line 1\): found "\}" where "\]" was expected/,
  );
  bad("", /data\/bad\.json: not valid JSON at byte 0 .*the file is empty/);
  assert.throws(
    () => parseLlavaRows(enc("[]"), "data/x.csv"),
    /data\/x\.csv: a LLaVA data set must be a \.json file/,
  );
});

Deno.test("readLlavaRows: reads .json and .jsonl files; a missing file names its path", async () => {
  const dir = await Deno.makeTempDir({ prefix: "asvr_llava_json_" });
  try {
    await Deno.writeTextFile(join(dir, "a.json"), JSON.stringify([good("x"), good("y")]));
    await Deno.writeTextFile(join(dir, "a.jsonl"), `${JSON.stringify(good("z"))}\n`);
    assert.deepEqual((await readLlavaRows(join(dir, "a.json"))).rows.map((r) => r.id), ["x", "y"]);
    const l = await readLlavaRows(join(dir, "a.jsonl"), { onError: "skip" });
    assert.deepEqual(l.rows.map((r) => [r.file, r.id]), [[join(dir, "a.jsonl"), "z"]]);
    await assert.rejects(readLlavaRows(join(dir, "none.json")), /none\.json: data set file not found/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("parseLlavaRows: rows whose bytes are not UTF-8 are kept, replaced and listed", () => {
  const bad = enc(JSON.stringify(good("b")).replace("What", "Wh~at"));
  bad[bad.indexOf(0x7e)] = 0xff; // a byte that starts no UTF-8 sequence
  const literal = enc(JSON.stringify(good("c")).replace("What", "Wh\ufffdat")); // valid UTF-8
  const nl = enc("\n");
  const jsonl = new Uint8Array([...enc(JSON.stringify(good("a"))), ...nl, ...bad, ...nl, ...literal]);
  const lines = parseLlavaRows(jsonl, "data/x.jsonl");
  assert.deepEqual(lines.rows.map((r) => r.id), ["a", "b", "c"]);
  assert.deepEqual(lines.invalidUtf8, [1]);
  assert.ok(lines.rows[1].conversations[0].value.includes("Wh\ufffdat"));
  const array = new Uint8Array([...enc("["), ...literal, ...enc(","), ...bad, ...enc("]")]);
  assert.deepEqual(parseLlavaRows(array, "data/x.json").invalidUtf8, [1]);
});
