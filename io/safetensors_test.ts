import assert from "node:assert/strict";
import {
  Checkpoint,
  type SafeDType,
  type SafeTensorInput,
  SafetensorsFile,
  writeSafetensors,
  writeShardedSafetensors,
  writeTextAtomic,
} from "./safetensors.ts";
import { sha256File } from "./sha256.ts";
import { bf16Reference } from "./testdata/bf16_reference.ts";

const FIXTURE = new URL("./testdata/torch_written.safetensors", import.meta.url).pathname;

/** A fresh temp folder, removed after `fn`. */
async function inTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "asvr_io_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Bytes of a hand-made file: 8-byte length (or `headerLen`), header bytes, data bytes. */
function rawFile(header: string | Uint8Array, data = new Uint8Array(0), headerLen?: number): Uint8Array {
  const h = typeof header === "string" ? new TextEncoder().encode(header) : header;
  const out = new Uint8Array(8 + h.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerLen ?? h.length), true);
  out.set(h, 8);
  out.set(data, 8 + h.length);
  return out;
}

/** Asserts that opening a file with these bytes fails with a message naming the file and matching `re`. */
async function assertOpenFails(bytes: Uint8Array, re: RegExp): Promise<void> {
  await inTempDir(async (dir) => {
    const p = `${dir}/bad.safetensors`;
    await Deno.writeFile(p, bytes);
    await assert.rejects(SafetensorsFile.open(p), (err: Error) => {
      assert.ok(err.message.includes(p), `message should name the file: ${err.message}`);
      assert.match(err.message, re);
      return true;
    });
  });
}

Deno.test("round trip of every dtype, with rounding of F16/BF16 against independent conversions", async () => {
  const floats = Float32Array.from([
    0,
    -0,
    1 / 3,
    -2.5,
    1e-3,
    65504,
    65520,
    1e-8,
    3.14159265,
    -1e10,
    0.1,
    1e30,
  ]);
  const ints = Int32Array.from([0, 1, -1, 2147483647, -2147483648, 123456]);
  const shorts = Int32Array.from([0, -32768, 32767, 5]);
  const bytes = Int32Array.from([-128, 127, 0, -5]);
  const u8 = Uint8Array.from([0, 1, 127, 128, 255, 7]);
  const bool = Uint8Array.from([1, 0, 0, 1]);
  const inputs: SafeTensorInput[] = [
    { name: "f32", dtype: "F32", shape: [3, 4], data: floats },
    { name: "f64", dtype: "F64", shape: [12], data: floats },
    { name: "f16", dtype: "F16", shape: [2, 6], data: floats },
    { name: "bf16", dtype: "BF16", shape: [12], data: floats },
    { name: "i64", dtype: "I64", shape: [6], data: ints },
    { name: "i32", dtype: "I32", shape: [2, 3], data: ints },
    { name: "i16", dtype: "I16", shape: [4], data: shorts },
    { name: "i8", dtype: "I8", shape: [2, 2], data: bytes },
    { name: "u8", dtype: "U8", shape: [6], data: u8 },
    { name: "bool", dtype: "BOOL", shape: [4], data: bool },
    { name: "scalar", dtype: "F32", shape: [], data: Float32Array.from([7]) },
    { name: "empty", dtype: "F16", shape: [0, 3], data: new Float32Array(0) },
  ];
  await inTempDir(async (dir) => {
    const p = `${dir}/all.safetensors`;
    await writeSafetensors(p, inputs, { note: "hi" });
    const f = await SafetensorsFile.open(p);
    try {
      assert.deepEqual(f.metadata, { note: "hi" });
      assert.deepEqual(new Set(f.names()), new Set(inputs.map((t) => t.name)));
      const expected: Record<string, ArrayLike<number>> = {
        f32: floats,
        f64: floats,
        f16: Array.from(floats, (x) => Math.f16round(x)),
        bf16: Array.from(floats, bf16Reference),
        i64: ints,
        i32: ints,
        i16: shorts,
        i8: bytes,
        u8,
        bool,
        scalar: [7],
        empty: [],
      };
      const types: Record<SafeDType, string> = {
        F64: "Float32Array",
        F32: "Float32Array",
        F16: "Float32Array",
        BF16: "Float32Array",
        I64: "Int32Array",
        I32: "Int32Array",
        I16: "Int32Array",
        I8: "Int32Array",
        U8: "Uint8Array",
        BOOL: "Uint8Array",
      };
      for (const t of inputs) {
        const info = f.info(t.name);
        assert.equal(info.dtype, t.dtype);
        assert.deepEqual(info.shape, t.shape);
        assert.equal(info.file, p);
        const got = await f.read(t.name);
        assert.equal(got.constructor.name, types[t.dtype], t.name);
        assert.deepEqual(Array.from(got), Array.from(expected[t.name]), t.name);
      }
      // spot checks of the rounding itself (values worked out by hand)
      const h = await f.read("f16");
      assert.equal(h[2], 0.333251953125); // 1/3 in f16
      assert.equal(h[6], Infinity); // 65520 is the f16 overflow midpoint: rounds (to even) to inf
      const b = await f.read("bf16");
      assert.equal(b[2], 0.333984375); // 1/3 in bf16
    } finally {
      f.close();
    }
  });
});

Deno.test("writer layout: 8-byte aligned header, tensors in name order, what the format specifies", async () => {
  await inTempDir(async (dir) => {
    const p = `${dir}/l.safetensors`;
    await writeSafetensors(p, [
      { name: "z", dtype: "F32", shape: [2], data: Float32Array.from([1, 2]) },
      { name: "a", dtype: "I8", shape: [3], data: Int32Array.from([-1, 2, 3]) },
      { name: "m", dtype: "BF16", shape: [1], data: Float32Array.from([1]) },
    ]);
    const bytes = await Deno.readFile(p);
    const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    assert.equal(n % 8, 0);
    const text = new TextDecoder().decode(bytes.subarray(8, 8 + n));
    assert.match(text, /^\{.*\} *$/);
    const header = JSON.parse(text);
    assert.equal(header.__metadata__, undefined);
    assert.deepEqual(header.a, { dtype: "I8", shape: [3], data_offsets: [0, 3] });
    assert.deepEqual(header.m, { dtype: "BF16", shape: [1], data_offsets: [3, 5] });
    assert.deepEqual(header.z, { dtype: "F32", shape: [2], data_offsets: [5, 13] });
    assert.equal(bytes.length, 8 + n + 13);
    const data = bytes.subarray(8 + n);
    assert.deepEqual(Array.from(data.subarray(0, 5)), [0xff, 2, 3, 0x80, 0x3f]); // i8 -1,2,3; bf16 1.0 = 0x3f80
    assert.deepEqual(Array.from(data.subarray(5, 9)), [0, 0, 0x80, 0x3f]); // f32 1.0
  });
});

Deno.test("reads a file written by PyTorch (io/testdata/make_fixture.py)", async () => {
  const ckpt = await Checkpoint.open(FIXTURE);
  try {
    assert.deepEqual(ckpt.names(), ["brain.bias", "embed.weight", "half.weight", "mask", "position_ids"]);
    assert.deepEqual(ckpt.files[0].metadata, { format: "pt", made_by: "io/testdata/make_fixture.py" });
    assert.deepEqual(ckpt.info("half.weight").shape, [2, 3]);
    assert.equal(ckpt.info("half.weight").dtype, "F16");
    // values printed by torch when the fixture was made
    assert.deepEqual(Array.from(await ckpt.read("brain.bias")), [0.333984375, -9999220736.0, 7.0, 0.0078125]);
    assert.deepEqual(Array.from(await ckpt.read("embed.weight")), [
      0.3333333432674408,
      -2.5,
      0.0010000000474974513,
      65504.0,
      3.1415927410125732,
      -0.10000000149011612,
    ]);
    assert.deepEqual(Array.from(await ckpt.read("half.weight")), [
      0.333251953125,
      -2.5,
      0.0010004043579101562,
      65504.0,
      3.140625,
      -0.0999755859375,
    ]);
    assert.deepEqual(Array.from(await ckpt.read("mask")), [1, 0, 0, 1, 1, 1]);
    const ids = await ckpt.read("position_ids");
    assert.ok(ids instanceof Int32Array);
    assert.deepEqual(Array.from(ids), [-2, -1, 0, 1, 2]);
    assert.deepEqual(ckpt.info("position_ids").shape, [1, 5]);
  } finally {
    ckpt.close();
  }
});

Deno.test("concurrent reads of one file each get their own tensor", async () => {
  const f = await SafetensorsFile.open(FIXTURE);
  try {
    const names = f.names();
    const all = await Promise.all(names.flatMap((n) => [f.read(n), f.read(n)]));
    for (let i = 0; i < names.length; i++) {
      assert.equal(all[2 * i].length, f.info(names[i]).shape.reduce((a, b) => a * b, 1), names[i]);
      assert.deepEqual(all[2 * i], all[2 * i + 1]);
    }
  } finally {
    f.close();
  }
});

Deno.test("sharded round trip: shard names, index, lazy data, a tensor larger than a shard", async () => {
  await inTempDir(async (dir) => {
    const t = (name: string, n: number, v: number): SafeTensorInput => ({
      name,
      dtype: "F32",
      shape: [n],
      data: () => new Float32Array(n).fill(v),
    });
    // 16 + 16 | 40 (alone: larger than the shard) | 8 + 8 + 8
    const inputs = [t("e", 2, 5), t("a", 4, 1), t("b", 4, 2), t("c", 10, 3), t("d", 2, 4), t("f", 2, 6)];
    const names = await writeShardedSafetensors(dir, inputs, {
      maxShardBytes: 32,
      metadata: { format: "pt" },
    });
    assert.deepEqual(names, [
      "model-00001-of-00003.safetensors",
      "model-00002-of-00003.safetensors",
      "model-00003-of-00003.safetensors",
    ]);
    const index = JSON.parse(await Deno.readTextFile(`${dir}/model.safetensors.index.json`));
    assert.deepEqual(index.metadata, { total_size: 96 });
    assert.deepEqual(index.weight_map, {
      a: names[0],
      b: names[0],
      c: names[1],
      d: names[2],
      e: names[2],
      f: names[2],
    });
    const ckpt = await Checkpoint.open(dir);
    try {
      assert.deepEqual(ckpt.names(), ["a", "b", "c", "d", "e", "f"]);
      assert.equal(ckpt.files.length, 3);
      assert.equal(ckpt.info("c").file, `${dir}/${names[1]}`);
      assert.ok(ckpt.has("f") && !ckpt.has("g"));
      for (const [name, v] of [["a", 1], ["b", 2], ["c", 3], ["d", 4], ["e", 5], ["f", 6]] as const) {
        const got = await ckpt.read(name);
        assert.ok(got.every((x) => x === v), name);
      }
      assert.deepEqual(ckpt.files[0].metadata, { format: "pt" });
    } finally {
      ckpt.close();
    }
    const leftovers = [];
    for await (const e of Deno.readDir(dir)) if (e.name.includes(".tmp-")) leftovers.push(e.name);
    assert.deepEqual(leftovers, []);
  });
});

Deno.test("Checkpoint.open: a folder with model.safetensors; missing paths and empty folders explain", async () => {
  await inTempDir(async (dir) => {
    await assert.rejects(
      Checkpoint.open(`${dir}/nope`),
      /nope: checkpoint not found; give a \.safetensors file/,
    );
    await writeSafetensors(`${dir}/other.safetensors`, []);
    await assert.rejects(
      Checkpoint.open(dir),
      /no model\.safetensors or model\.safetensors\.index\.json .*it has other\.safetensors/,
    );
    await writeSafetensors(`${dir}/model.safetensors`, [
      { name: "w", dtype: "F32", shape: [1], data: Float32Array.from([2]) },
    ]);
    const ckpt = await Checkpoint.open(dir);
    assert.deepEqual(Array.from(await ckpt.read("w")), [2]);
    ckpt.close();
    await assert.rejects(ckpt.read("w"), /after close\(\)/);
    await assert.rejects(SafetensorsFile.open(dir), /not a file \(for a model folder use Checkpoint\.open\)/);
    await assert.rejects(
      writeSafetensors(`${dir}/no/such/x.safetensors`, []),
      /cannot write .*no\/such\/x\.safetensors/,
    );
  });
});

Deno.test("atomic write: a failure midway leaves the previous file byte-identical and no temp file", async () => {
  await inTempDir(async (dir) => {
    const p = `${dir}/w.safetensors`;
    await writeSafetensors(p, [{ name: "a", dtype: "F32", shape: [2], data: Float32Array.from([1, 2]) }]);
    const before = await Deno.readFile(p);
    const good: SafeTensorInput = { name: "a", dtype: "F32", shape: [3], data: Float32Array.from([4, 5, 6]) };
    // lazy data of the wrong length: found only when the writer reaches "b", after "a" is written
    let produced = false;
    await assert.rejects(
      writeSafetensors(p, [good, {
        name: "b",
        dtype: "F32",
        shape: [4],
        data: () => {
          produced = true;
          return new Float32Array(3);
        },
      }]),
      /tensor "b" \(F32 \[4\]\): data has 3 values, the shape needs 4/,
    );
    assert.ok(produced, "the failure should happen midway, after the header and the first tensor");
    // a value out of range, also found while writing
    await assert.rejects(
      writeSafetensors(p, [good, { name: "c", dtype: "I8", shape: [2], data: Int32Array.from([1, 300]) }]),
      /tensor "c" \(I8\): value 300 at index 1 is outside the I8 range/,
    );
    // eager data of the wrong length or type: refused before the temp file exists
    await assert.rejects(
      writeSafetensors(p, [{ name: "d", dtype: "F16", shape: [2, 2], data: new Float32Array(3) }]),
      /data has 3 values, the shape needs 4/,
    );
    await assert.rejects(
      writeSafetensors(p, [{ name: "d", dtype: "I32", shape: [1], data: new Float32Array(1) }]),
      /data must be a Int32Array, got Float32Array/,
    );
    await assert.rejects(writeSafetensors(p, [good, good]), /"a" appears twice/);
    assert.deepEqual(await Deno.readFile(p), before);
    const names = [];
    for await (const e of Deno.readDir(dir)) names.push(e.name);
    assert.deepEqual(names, ["w.safetensors"]);
  });
});

// ------------------------------------------------------------------------- malformed files

const okEntry = { dtype: "F32", shape: [2], data_offsets: [0, 8] };

Deno.test("malformed: file shorter than 8 bytes", async () => {
  await assertOpenFails(new Uint8Array(5), /5 bytes, shorter than the 8-byte header length/);
});

Deno.test("malformed: header length larger than the file", async () => {
  await assertOpenFails(
    rawFile("{}", new Uint8Array(0), 1000),
    /header length 1000 is larger than the 2 bytes/,
  );
});

Deno.test("malformed: header not UTF-8", async () => {
  await assertOpenFails(rawFile(Uint8Array.from([0x7b, 0xff, 0xfe, 0x7d])), /header is not valid UTF-8/);
});

Deno.test("malformed: header not JSON (line and column given)", async () => {
  await assertOpenFails(
    rawFile('{"a": {"dtype": "F32",\n "shape": [2] "x"}}'),
    /invalid JSON at line 2, column 15: unexpected "\\"", expected .,. or .}./,
  );
  await assertOpenFails(rawFile('{"a": 1,}'), /invalid JSON at line 1, column 9/);
});

Deno.test("malformed: header not an object", async () => {
  await assertOpenFails(rawFile("[1, 2]"), /header must be a JSON object, got an array/);
  await assertOpenFails(rawFile('{"a": 3}'), /tensor "a": header entry must be an object/);
  await assertOpenFails(rawFile('{"__metadata__": {"k": 1}}'), /__metadata__\.k must be a string/);
});

Deno.test("malformed: unknown dtype is named", async () => {
  const h = JSON.stringify({ w: { ...okEntry, dtype: "Q4_K" } });
  await assertOpenFails(
    rawFile(h, new Uint8Array(8)),
    /tensor "w": unknown dtype "Q4_K" \(supported: F64, F32/,
  );
});

Deno.test("malformed: shape and byte size disagree", async () => {
  const h = JSON.stringify({ w: { ...okEntry, shape: [3] } });
  await assertOpenFails(
    rawFile(h, new Uint8Array(8)),
    /tensor "w": shape \[3\] of F32 needs 12 bytes.*span 8 bytes/,
  );
  const bad = JSON.stringify({ w: { ...okEntry, shape: [2.5] } });
  await assertOpenFails(rawFile(bad, new Uint8Array(8)), /shape must be an array of integers/);
  const rev = JSON.stringify({ w: { ...okEntry, data_offsets: [8, 0] } });
  await assertOpenFails(rawFile(rev, new Uint8Array(8)), /data_offsets must be \[begin, end\]/);
});

Deno.test("malformed: data past the end of the file", async () => {
  const h = JSON.stringify({ w: { ...okEntry, data_offsets: [4, 12] } });
  await assertOpenFails(
    rawFile(h, new Uint8Array(8)),
    /tensor "w": data_offsets \[4, 12\] run past the end.*8 bytes/,
  );
});

Deno.test("malformed: overlapping tensors", async () => {
  const h = JSON.stringify({ a: okEntry, b: { ...okEntry, data_offsets: [4, 12] } });
  await assertOpenFails(rawFile(h, new Uint8Array(12)), /tensors "a" and "b" have overlapping data_offsets/);
});

Deno.test("malformed: I64 values outside i32 name the tensor", async () => {
  const data = new Uint8Array(16);
  new DataView(data.buffer).setBigInt64(8, 1n << 40n, true);
  await inTempDir(async (dir) => {
    const p = `${dir}/big.safetensors`;
    await Deno.writeFile(
      p,
      rawFile(JSON.stringify({ ids: { dtype: "I64", shape: [2], data_offsets: [0, 16] } }), data),
    );
    const f = await SafetensorsFile.open(p);
    await assert.rejects(
      f.read("ids"),
      /tensor "ids" \(I64\): value 1099511627776 at index 1 does not fit in i32/,
    );
    f.close();
  });
});

Deno.test("missing tensor in read lists close names", async () => {
  const ckpt = await Checkpoint.open(FIXTURE);
  try {
    assert.throws(
      () => ckpt.info("embed.weights"),
      /no tensor "embed\.weights".*close names: "embed\.weight"/,
    );
    await assert.rejects(async () => await ckpt.read("half.wieght"), /close names: "half\.weight"/);
  } finally {
    ckpt.close();
  }
});

Deno.test("sharded index naming a missing shard file", async () => {
  await inTempDir(async (dir) => {
    await writeShardedSafetensors(dir, [
      { name: "a", dtype: "F32", shape: [4], data: new Float32Array(4) },
      { name: "b", dtype: "F32", shape: [4], data: new Float32Array(4) },
    ], { maxShardBytes: 16 });
    await Deno.remove(`${dir}/model-00002-of-00002.safetensors`);
    await assert.rejects(
      Checkpoint.open(dir),
      /index\.json: weight_map names shard file "model-00002-of-00002\.safetensors" \(for "b".*does not exist/,
    );
    await Deno.writeTextFile(`${dir}/model.safetensors.index.json`, '{"weight_map": {"a": "../x"}}');
    await assert.rejects(
      Checkpoint.open(dir),
      /weight_map\["a"\] must be a shard file name in the same folder/,
    );
    await Deno.writeTextFile(`${dir}/model.safetensors.index.json`, '{"metadata": {}}');
    await assert.rejects(Checkpoint.open(dir), /"weight_map" must be an object/);
    await Deno.writeTextFile(
      `${dir}/model.safetensors.index.json`,
      '{"weight_map": {"zz": "model-00001-of-00002.safetensors"}}',
    );
    await assert.rejects(
      Checkpoint.open(dir),
      /puts "zz" in model-00001-of-00002\.safetensors, but that shard has no/,
    );
  });
});

Deno.test("malformed: bytes after the last tensor", async () => {
  const h = JSON.stringify({ w: okEntry });
  await assertOpenFails(
    rawFile(h, new Uint8Array(12)),
    /4 bytes after the end of the last tensor "w" \(data_offsets end at 8, the data section has 12 bytes\)/,
  );
  // no tensors at all, and yet data
  await assertOpenFails(rawFile("{}", new Uint8Array(3)), /3 bytes after the header, but it holds no tensor/);
});

Deno.test("malformed: gaps between tensors, or before the first", async () => {
  const gap = JSON.stringify({ a: okEntry, b: { ...okEntry, data_offsets: [12, 20] } });
  await assertOpenFails(
    rawFile(gap, new Uint8Array(20)),
    /tensor "b" starts at data offset 12, but the previous tensor "a" ends at 8: 4 unused bytes/,
  );
  const first = JSON.stringify({ w: { ...okEntry, data_offsets: [4, 12] } });
  await assertOpenFails(
    rawFile(first, new Uint8Array(12)),
    /tensor "w" starts at data offset 4, but the data section starts at 0: 4 unused bytes/,
  );
  // an empty tensor takes no room: it may sit between others
  await inTempDir(async (dir) => {
    const p = `${dir}/ok.safetensors`;
    const h = JSON.stringify({
      a: okEntry,
      e: { dtype: "F32", shape: [0], data_offsets: [8, 8] },
      b: { ...okEntry, data_offsets: [8, 16] },
    });
    await Deno.writeFile(p, rawFile(h, new Uint8Array(16)));
    const f = await SafetensorsFile.open(p);
    assert.deepEqual(f.names().sort(), ["a", "b", "e"]);
    f.close();
  });
});

Deno.test("malformed: a tensor named twice in the header (JSON would keep the last)", async () => {
  const entry = JSON.stringify(okEntry);
  await assertOpenFails(
    rawFile(
      `{"w": ${entry}, "x": {"dtype": "F32", "shape": [0], "data_offsets": [8, 8]}, "w": ${entry}}`,
      new Uint8Array(8),
    ),
    /tensor "w" appears twice in the header/,
  );
  // escapes name the same key; names inside values and nested objects are not keys
  await assertOpenFails(
    rawFile(`{"w": ${entry}, "\\u0077": ${entry}}`, new Uint8Array(8)),
    /tensor "w" appears twice in the header/,
  );
  await assertOpenFails(
    rawFile(`{"__metadata__": {"a": "1"}, "__metadata__": {"a": "2"}}`),
    /"__metadata__" appears twice in the header/,
  );
  await inTempDir(async (dir) => {
    const p = `${dir}/ok.safetensors`;
    const h = `{"__metadata__": {"w": "w", "k\\"": "{\\"w\\": 1}"}, "w": ${entry}}`;
    await Deno.writeFile(p, rawFile(h, new Uint8Array(8)));
    const f = await SafetensorsFile.open(p);
    assert.deepEqual(f.names(), ["w"]);
    assert.deepEqual(f.metadata, { w: "w", 'k"': '{"w": 1}' });
    f.close();
  });
});

Deno.test("the writers return the SHA-256 of the file they wrote", async () => {
  await inTempDir(async (dir) => {
    const p = `${dir}/a.safetensors`;
    const sum = await writeSafetensors(p, [
      { name: "w", dtype: "BF16", shape: [3], data: Float32Array.from([1, 2, 3]) },
      { name: "lazy", dtype: "F32", shape: [2], data: () => Float32Array.from([4, 5]) },
    ], { k: "v" });
    assert.equal(sum, await sha256File(p));
    assert.equal(await writeTextAtomic(`${dir}/t.json`, "{}\n"), await sha256File(`${dir}/t.json`));
  });
});

Deno.test("a failed write names the file (a full disk's error does not) and leaves no partial file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/w.safetensors`;
    const full = () => {
      throw new Error("No space left on device (os error 28)");
    };
    await assert.rejects(
      () => writeSafetensors(path, [{ name: "w", dtype: "F32", shape: [2], data: full }]),
      (e: Error) =>
        e.message.startsWith(`writing ${path}: No space left on device`) && /--out DIR/.test(e.message),
    );
    assert.deepEqual([...Deno.readDirSync(dir)], []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
