import assert from "node:assert/strict";
import { Sha256, sha256File, sha256Hex } from "./sha256.ts";

Deno.test("sha256: known digests, incremental equals whole, files stream in chunks", async () => {
  const abc = new TextEncoder().encode("abc");
  assert.equal(sha256Hex(abc), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  assert.equal(
    sha256Hex(new Uint8Array(0)),
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
  );
  const big = Uint8Array.from({ length: 9 << 20 }, (_, i) => (i * 31) & 255); // over two 4 MiB chunks
  const h = new Sha256();
  for (let o = 0; o < big.length; o += 1000003) h.update(big.subarray(o, o + 1000003));
  const whole = sha256Hex(big);
  assert.equal(h.hex(), whole);
  const dir = await Deno.makeTempDir({ prefix: "asvr_sha_" });
  try {
    await Deno.writeFile(`${dir}/f`, big);
    assert.equal(await sha256File(`${dir}/f`), whole);
    await Deno.writeFile(`${dir}/empty`, new Uint8Array(0));
    assert.equal(await sha256File(`${dir}/empty`), sha256Hex(new Uint8Array(0)));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
