import assert from "node:assert/strict";
import { duplicateTopLevelKey } from "./duplicate_key.ts";

Deno.test("duplicateTopLevelKey: top-level keys only, compared unescaped", () => {
  assert.equal(duplicateTopLevelKey('{"a": 1, "b": 2}'), null);
  assert.equal(duplicateTopLevelKey('{"a": 1, "b": 2, "a": 3}'), "a");
  assert.equal(duplicateTopLevelKey('{"w": 1, "\\u0077": 2}'), "w");
  assert.equal(duplicateTopLevelKey('{"a\\"b": 1, "a\\\\": 2, "a\\"b": 3}'), 'a"b');
  // nested keys, values equal to keys, arrays
  assert.equal(duplicateTopLevelKey('{"a": {"x": 1, "x": 2}, "b": "a", "c": ["a", "a"]}'), null);
  assert.equal(duplicateTopLevelKey('{"a": {"b": {}}, "c": [{"a": 1}], "a": []}'), "a");
  assert.equal(duplicateTopLevelKey('["a", "a"]'), null);
  assert.equal(duplicateTopLevelKey("{}"), null);
});
