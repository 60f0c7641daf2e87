import assert from "node:assert/strict";
import { join } from "node:path";
import { cachedPart, keyHash } from "./cache.ts";

Deno.test("cachedPart: builds once per key, rebuilds for a new key, never keeps a failed build", async () => {
  const root = await Deno.makeTempDir();
  try {
    let builds = 0;
    const build = async (dir: string) => {
      builds++;
      await Deno.writeTextFile(join(dir, "x.txt"), "ok");
    };
    const a = await cachedPart(root, "enc", { width: 64 }, build);
    const b = await cachedPart(root, "enc", { width: 64 }, build);
    assert.equal(a.dir, b.dir);
    assert.deepEqual([a.built, b.built, builds], [true, false, 1]);
    assert.equal(await Deno.readTextFile(join(a.dir, "x.txt")), "ok");
    const c = await cachedPart(root, "enc", { width: 32 }, build);
    assert.notEqual(c.dir, a.dir);
    assert.equal(builds, 2);
    await assert.rejects(() => cachedPart(root, "llm", 1, () => Promise.reject(new Error("boom"))), /boom/);
    const left = [...Deno.readDirSync(root)].map((d) => d.name).sort();
    assert.deepEqual(left, [a.dir, c.dir].map((d) => d.slice(root.length + 1)).sort());
    assert.equal(await keyHash({ a: 1 }), await keyHash({ a: 1 }));
    assert.notEqual(await keyHash({ a: 1 }), await keyHash({ a: 2 }));
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
