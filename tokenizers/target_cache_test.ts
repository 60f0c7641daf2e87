import assert from "node:assert/strict";
import { randn } from "../core/random.ts";
import { Codebooks } from "./codebooks.ts";
import { imageHash, TargetCache } from "./target_cache.ts";

/** A fresh temp folder for `fn`, removed afterwards. */
async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir();
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const enc = new TextEncoder();

Deno.test("imageHash is the SHA-256 hex of the bytes (FIPS 180-2 test vectors)", async () => {
  assert.equal(
    await imageHash(enc.encode("abc")),
    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
  );
  assert.equal(
    await imageHash(new Uint8Array()),
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
  );
});

Deno.test("TargetCache stores codes, keeps them across flush and reopen, and appends", async () => {
  await withDir(async (dir) => {
    const h1 = await imageHash(enc.encode("image one")), h2 = await imageHash(enc.encode("image two"));
    const h3 = await imageHash(enc.encode("image three"));
    const c1 = Uint16Array.from({ length: 729 * 8 }, (_, i) => (i * 2654435761) % 65536);
    const c2 = [0, 1, 65535, 16383];
    let cache = await TargetCache.open(dir, "rq-aaaa", { codebookSize: 16384 });
    assert.equal(cache.get(h1), undefined);
    cache.set(h1, c1);
    cache.set(h2, c2);
    assert.deepEqual(cache.get(h2), Uint16Array.from(c2), "pending codes are readable");
    assert.equal(cache.size, 2);
    await cache.flush();
    cache.close();

    cache = await TargetCache.open(dir, "rq-aaaa");
    assert.equal(cache.size, 2);
    assert.ok(cache.has(h1) && !cache.has(h3));
    assert.deepEqual(cache.get(h1), c1);
    assert.deepEqual(cache.get(h2), Uint16Array.from(c2));
    const got = cache.get(h2)!;
    got[0] = 7; // a copy: the cache is unchanged
    assert.equal(cache.get(h2)![0], 0);
    cache.set(h3, [5, 6]);
    cache.set(h2, [9, 9, 9]); // replaced
    await cache.flush();
    cache.close();

    cache = await TargetCache.open(dir, "rq-aaaa");
    assert.deepEqual(cache.get(h1), c1);
    assert.deepEqual(cache.get(h2), Uint16Array.from([9, 9, 9]));
    assert.deepEqual(cache.get(h3), Uint16Array.from([5, 6]));
    assert.equal(cache.size, 3);
    cache.close();
    const files = [...Deno.readDirSync(dir)].map((f) => f.name).sort();
    assert.equal(files.length, 2, `one .bin and one .json, no temp files: ${files}`);
    const bin = files.find((f) => f.endsWith(".bin"))!;
    // Appended, not rewritten: c1 + c2 + h3's 2 codes + h2's new 3 codes.
    assert.equal(Deno.statSync(`${dir}/${bin}`).size, 2 * (c1.length + 4 + 2 + 3));
  });
});

Deno.test("TargetCache: new codebooks have a new identity and miss; the old targets stay with the old", async () => {
  await withDir(async (dir) => {
    const info = { depths: 2, codebookSize: 4, dim: 3, shared: false, layer: 26, encoder: "enc" };
    const data = randn(2 * 4 * 3, 1);
    const cbA = Codebooks.create(data, info);
    const changed = data.slice();
    changed[5] += 0.25;
    const cbB = Codebooks.create(changed, info);
    assert.notEqual(cbA.identity(), cbB.identity());
    const h = await imageHash(enc.encode("one image"));
    const a = await TargetCache.open(dir, cbA.identity());
    a.set(h, [1, 2, 3, 0]);
    await a.flush();
    a.close();
    const b = await TargetCache.open(dir, cbB.identity());
    assert.equal(b.get(h), undefined, "targets of other codebooks were reused");
    assert.equal(b.size, 0);
    b.set(h, [3, 3, 3, 3]);
    await b.flush();
    b.close();
    const again = await TargetCache.open(dir, Codebooks.create(data.slice(), info).identity());
    assert.deepEqual(again.get(h), Uint16Array.from([1, 2, 3, 0]));
    again.close();
  });
});

Deno.test("TargetCache recovers from an append cut short and refuses a damaged cache", async () => {
  await withDir(async (dir) => {
    const h = await imageHash(enc.encode("x"));
    const c = await TargetCache.open(dir, "rq-b");
    c.set(h, [1, 2, 3]);
    await c.flush();
    c.close();
    const bin = c.binPath;
    // Bytes past the index (a crash after writing, before the index was replaced) are dropped.
    await Deno.writeFile(bin, new Uint8Array([7, 7, 7]), { append: true });
    const d = await TargetCache.open(dir, "rq-b");
    assert.equal(Deno.statSync(bin).size, 6);
    const h2 = await imageHash(enc.encode("y"));
    d.set(h2, [4]);
    await d.flush();
    assert.deepEqual(d.get(h), Uint16Array.from([1, 2, 3]));
    assert.deepEqual(d.get(h2), Uint16Array.from([4]));
    d.close();
    // A binary file shorter than its index says: damaged.
    await Deno.truncate(bin, 4);
    await assert.rejects(TargetCache.open(dir, "rq-b"), /damaged: delete both files/);
    await Deno.writeTextFile(c.indexPath, '{"format": "other"}');
    await assert.rejects(
      TargetCache.open(dir, "rq-b"),
      /not a valid target cache index \(format is "other"\)/,
    );
  });
});

Deno.test("TargetCache refuses codes that do not fit u16, bad keys and use after close", async () => {
  await withDir(async (dir) => {
    await assert.rejects(TargetCache.open(dir, "rq-c", { codebookSize: 65537 }), /u16 codes.*\[1, 65536\]/);
    await assert.rejects(TargetCache.open(dir, ""), /non-empty string/);
    const c = await TargetCache.open(dir, "rq-c", { codebookSize: 65536 });
    const h = await imageHash(enc.encode("z"));
    assert.throws(() => c.set(h, [1, 65536]), /code 65536 at index 1 does not fit u16/);
    assert.throws(() => c.set(h, [-1]), /code -1/);
    assert.throws(() => c.set(h, [1.5]), /code 1.5/);
    assert.throws(() => c.set("image.jpg", [1]), /not a SHA-256 hex digest/);
    assert.equal(c.size, 0);
    c.close();
    assert.throws(() => c.set(h, [1]), /closed/);
    await assert.rejects(c.flush(), /closed/);
    c.close();
  });
});
