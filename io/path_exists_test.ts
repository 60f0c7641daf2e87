import assert from "node:assert/strict";
import { join } from "node:path";
import { pathExists } from "./path_exists.ts";

Deno.test("pathExists: files and folders exist, a missing path does not", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(join(dir, "a.txt"), "x");
    assert.equal(await pathExists(dir), true);
    assert.equal(await pathExists(join(dir, "a.txt")), true);
    assert.equal(await pathExists(join(dir, "missing")), false);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
