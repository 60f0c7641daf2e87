import assert from "node:assert/strict";
import { parseJsonText, readJsonFile } from "./json.ts";

Deno.test("readJsonFile parses a file", async () => {
  const dir = await Deno.makeTempDir({ prefix: "asvr_io_" });
  try {
    await Deno.writeTextFile(`${dir}/config.json`, '{"hidden_size": 8, "arch": ["Llama"]}\n');
    assert.deepEqual(await readJsonFile(`${dir}/config.json`, "the LLM's config.json"), {
      hidden_size: 8,
      arch: ["Llama"],
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("readJsonFile: a missing file is named with what it should be", async () => {
  await assert.rejects(
    readJsonFile("/tmp/no/such/config.json", "the LLM's Hugging Face config.json"),
    /^Error: \/tmp\/no\/such\/config\.json: file not found; it should be the LLM's Hugging Face config\.json$/,
  );
  await assert.rejects(
    readJsonFile("/tmp", "a config"),
    /\/tmp: is a directory; it should be a file: a config/,
  );
});

Deno.test("readJsonFile: bad JSON gives the file, line and column", async () => {
  const dir = await Deno.makeTempDir({ prefix: "asvr_io_" });
  try {
    const p = `${dir}/config.json`;
    await Deno.writeTextFile(p, '{\n  "a": 1,\n  "b": [1, 2,]\n}\n');
    await assert.rejects(readJsonFile(p, "the config"), (err: Error) => {
      assert.ok(err.message.startsWith(`${p} (the config): invalid JSON at line 3, column 14`), err.message);
      assert.match(err.message, /unexpected "\]", expected a value/);
      return true;
    });
    await Deno.writeFile(p, Uint8Array.from([0x7b, 0xc3, 0x28, 0x7d]));
    await assert.rejects(readJsonFile(p, "the config"), /config\.json: the config is not valid UTF-8/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("parseJsonText locates each kind of syntax error", () => {
  const cases: [string, RegExp][] = [
    ["", /line 1, column 1: unexpected end of input/],
    ['{"a": tru}', /line 1, column 7: unexpected "t"/],
    ['{"a" 1}', /line 1, column 6: unexpected "1", expected ':'/],
    ["{'a': 1}", /line 1, column 2: .*expected a property name in double quotes/],
    ['{"a": 1} x', /line 1, column 10: unexpected "x" after the end/],
    ['["a\\q"]', /line 1, column 5: bad escape/],
    ['["abc', /line 1, column 6: unterminated string/],
    ["[1,\n\n  -]", /line 3, column 3: unexpected "-"/],
    ['{"a": [1, 2}', /line 1, column 12: unexpected "}", expected ',' or '\]'/],
  ];
  for (const [text, re] of cases) {
    assert.throws(() => parseJsonText(text, "src"), (err: Error) => {
      assert.match(err.message, /^src: invalid JSON at /);
      assert.match(err.message, re, `for ${JSON.stringify(text)}`);
      return true;
    });
  }
  assert.deepEqual(parseJsonText('{"x": [1e3, -0.5, "\\u00e9"]}', "src"), { x: [1000, -0.5, "é"] });
});
