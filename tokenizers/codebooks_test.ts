import assert from "node:assert/strict";
import { gpuTest, randn } from "../core/testing.ts";
import { writeSafetensors } from "../io/safetensors.ts";
import { Codebooks, type CodebooksInfo } from "./codebooks.ts";

const INFO: CodebooksInfo = {
  depths: 3,
  codebookSize: 5,
  dim: 4,
  shared: false,
  layer: 26,
  encoder: "siglip-so400m",
};

function sample(info: CodebooksInfo = INFO, seed = 1): Codebooks {
  const books = info.shared ? 1 : info.depths;
  return Codebooks.create(randn(books * info.codebookSize * info.dim, seed), info);
}

Deno.test("Codebooks save and load round-trip values, provenance and identity", async () => {
  const dir = await Deno.makeTempDir();
  try {
    for (
      const info of [INFO, { ...INFO, shared: true, layer: "pixels" as const }, {
        ...INFO,
        layer: null,
        encoder: "",
      }]
    ) {
      const cb = sample(info);
      const path = `${dir}/cb.safetensors`;
      await cb.save(path);
      const back = await Codebooks.load(path);
      assert.deepEqual(back.info, info);
      assert.deepEqual(back.data, cb.data);
      assert.deepEqual(back.shape, [info.shared ? 1 : 3, 5, 4]);
      assert.equal(back.identity(), cb.identity());
      assert.match(cb.identity(), /^rq-[0-9a-f]{64}$/);
    }
    assert.deepEqual([...Deno.readDirSync(dir)].map((f) => f.name), ["cb.safetensors"], "no temp files left");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("Codebooks identity is stable and changes with any value or config field", () => {
  const a = sample(), b = sample();
  assert.equal(a.identity(), b.identity(), "equal codebooks, equal identity");
  const changed = Float32Array.from(a.data);
  new Uint32Array(changed.buffer)[17] ^= 1; // the smallest change: the lowest mantissa bit of one value
  assert.notEqual(changed[17], a.data[17]);
  const ids = new Set([
    a.identity(),
    Codebooks.create(changed, INFO).identity(),
    Codebooks.create(a.data, { ...INFO, layer: 6 }).identity(),
    Codebooks.create(a.data, { ...INFO, encoder: "other" }).identity(),
    Codebooks.create(a.data.slice(0, 5 * 4), { ...INFO, shared: true }).identity(),
  ]);
  assert.equal(ids.size, 5);
});

Deno.test("Codebooks.book gives each depth's codebook; shared gives the same at every depth", () => {
  const cb = sample();
  assert.deepEqual(cb.book(2), cb.data.subarray(2 * 20, 3 * 20));
  const sh = sample({ ...INFO, shared: true });
  assert.deepEqual(sh.book(2), sh.book(0));
  assert.throws(() => cb.book(3), /out of range/);
});

gpuTest(
  "Codebooks.toTensor uploads [books, K, Dc] (or [D, K, Dc] per depth) outside tidy scopes",
  async (e) => {
    const cb = sample();
    const t = e.tidy(() => cb.toTensor(e));
    e.tidy(() => {}); // an unrelated scope does not free it
    assert.deepEqual(t.shape, [3, 5, 4]);
    assert.deepEqual(await t.read(), cb.data);
    t.dispose();
    const sh = sample({ ...INFO, shared: true });
    const stored = sh.toTensor(e), perDepth = sh.toTensor(e, { perDepth: true });
    assert.deepEqual(stored.shape, [1, 5, 4]);
    assert.deepEqual(perDepth.shape, [3, 5, 4]);
    assert.deepEqual(await perDepth.read(), Float32Array.from([...sh.data, ...sh.data, ...sh.data]));
    stored.dispose();
    perDepth.dispose();
  },
);

Deno.test("Codebooks.create and load refuse bad input, naming the field and the fix", async () => {
  assert.throws(() => Codebooks.create(new Float32Array(10), INFO), /60 values/);
  assert.throws(() => Codebooks.create(new Float32Array(60).fill(NaN), INFO), /not finite/);
  assert.throws(() => Codebooks.create(new Float32Array(60), { ...INFO, depths: 0 }), /depths must be/);
  const dir = await Deno.makeTempDir();
  const path = `${dir}/x.safetensors`;
  const write = (shape: number[], meta: Record<string, string>, name = "codebooks") =>
    writeSafetensors(path, [{
      name,
      dtype: "F16",
      shape,
      data: new Float32Array(shape.reduce((a, b) => a * b)),
    }], meta);
  try {
    await write([2, 3, 4], { depths: "2", shared: "false" }, "weights");
    await assert.rejects(Codebooks.load(path), /no tensor "codebooks".*weights/);
    await write([2, 3, 4], { depths: "2" });
    await assert.rejects(Codebooks.load(path), /"shared" is missing/);
    await write([2, 3, 4], { depths: "two", shared: "false" });
    await assert.rejects(Codebooks.load(path), /"depths" is "two"/);
    await write([2, 3, 4], { depths: "8", shared: "false" });
    await assert.rejects(Codebooks.load(path), /first dim must be 8/);
    await write([2, 3, 4], { depths: "2", shared: "yes" });
    await assert.rejects(Codebooks.load(path), /"true" or "false"/);
    await write([2, 3, 4], { depths: "2", shared: "false", layer: "last" });
    await assert.rejects(Codebooks.load(path), /"layer" is "last"/);
    // A hand-written F16 file without provenance loads, widened to f32.
    await write([1, 3, 4], { depths: "8", shared: "true" });
    const cb = await Codebooks.load(path);
    assert.deepEqual(cb.info, { depths: 8, codebookSize: 3, dim: 4, shared: true, layer: null, encoder: "" });
    await assert.rejects(Codebooks.load(`${dir}/missing.safetensors`), /not found/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
