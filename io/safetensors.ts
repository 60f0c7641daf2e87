/**
 * The safetensors format (Hugging Face's weight files): reading single files and (sharded)
 * checkpoints tensor by tensor, and writing files atomically.
 *
 * A file is an 8-byte little-endian header length N, N bytes of JSON header
 * (`{"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}}`,
 * offsets relative to the byte after the header), then the raw little-endian tensor data.
 *
 * ```ts ignore
 * const ckpt = await Checkpoint.open("models/vicuna-7b"); // file, folder, or sharded folder
 * const w = await ckpt.read("model.embed_tokens.weight"); // Float32Array (bf16 widened)
 * ckpt.close();
 * ```
 * @module
 */

import { parseJsonText, readJsonFile } from "./json.ts";
import { bf16ArrayToF32, f16ArrayToF32, f32ArrayToBf16, f32ArrayToF16 } from "./float_bits.ts";
import { duplicateTopLevelKey } from "./duplicate_key.ts";
import { Sha256 } from "./sha256.ts";

/** The element types of safetensors files, by their Hugging Face names. */
export type SafeDType = "F64" | "F32" | "F16" | "BF16" | "I64" | "I32" | "I16" | "I8" | "U8" | "BOOL";

/** The host arrays tensors read back as: floats widen to f32, signed ints to i32, U8/BOOL stay bytes. */
export type SafeData = Float32Array | Int32Array | Uint8Array;

/** Where one tensor lives: its dtype and shape, and its bytes in `file` (offsets from the file start). */
export interface TensorInfo {
  /** The tensor's name in the file (the Hugging Face parameter name). */
  name: string;
  /** The element type as stored. */
  dtype: SafeDType;
  /** The shape, outermost first. */
  shape: number[];
  /** Offset of the first data byte from the start of the file. */
  byteOffset: number;
  /** Bytes of data (elements x element size). */
  byteLength: number;
  /** The path of the file holding it. */
  file: string;
}

const DTYPE_BYTES: Record<SafeDType, number> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
};

/** Bytes per element of a safetensors dtype. */
export function safeDTypeBytes(dtype: SafeDType): number {
  return DTYPE_BYTES[dtype];
}

/** True for the dtypes that hold floats (read back as Float32Array). */
export function isSafeFloat(dtype: SafeDType): boolean {
  switch (dtype) {
    case "F64":
    case "F32":
    case "F16":
    case "BF16":
      return true;
    case "I64":
    case "I32":
    case "I16":
    case "I8":
    case "U8":
    case "BOOL":
      return false;
  }
}

function isSafeDType(s: unknown): s is SafeDType {
  return typeof s === "string" && Object.hasOwn(DTYPE_BYTES, s);
}

/** Largest header the reader accepts (the Python library's limit). */
const MAX_HEADER_BYTES = 100_000_000;

// ================================================================ reading

/**
 * One safetensors file, open for reading. `open` reads only the header; `read` seeks to one
 * tensor and reads just its bytes, so host memory holds one tensor at a time.
 */
export class SafetensorsFile {
  /** The file's path. */
  readonly path: string;
  /** The `__metadata__` string map of the header (empty when absent). */
  readonly metadata: Record<string, string>;
  #infos: Map<string, TensorInfo>;
  #file: Deno.FsFile | null;
  #queue: Promise<unknown> = Promise.resolve();

  private constructor(
    path: string,
    file: Deno.FsFile,
    infos: Map<string, TensorInfo>,
    meta: Record<string, string>,
  ) {
    this.path = path;
    this.#file = file;
    this.#infos = infos;
    this.metadata = meta;
  }

  /**
   * Opens a file and validates its header as the format's reference reader does: unique names, known
   * dtypes, shapes matching byte sizes, and tensors' data back to back from the start of the data
   * section to the end of the file (no gaps, overlaps or trailing bytes).
   */
  static async open(path: string): Promise<SafetensorsFile> {
    let file: Deno.FsFile;
    try {
      file = await Deno.open(path, { read: true });
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) {
        throw new Error(`${path}: safetensors file not found`);
      }
      throw new Error(`${path}: cannot open safetensors file: ${(err as Error).message}`);
    }
    try {
      const stat = await file.stat();
      if (!stat.isFile) throw new Error(`${path}: not a file (for a model folder use Checkpoint.open)`);
      const fileSize = stat.size;
      if (fileSize < 8) {
        throw new Error(
          `${path}: not a safetensors file: ${fileSize} bytes, shorter than the 8-byte header length`,
        );
      }
      const lenBytes = await readExactly(file, 0, 8, path);
      const headerLen = new DataView(lenBytes.buffer).getBigUint64(0, true);
      if (headerLen > BigInt(fileSize - 8)) {
        throw new Error(
          `${path}: corrupt safetensors file: header length ${headerLen} is larger than the ${
            fileSize - 8
          } bytes after it (truncated file, or not a safetensors file)`,
        );
      }
      if (headerLen > BigInt(MAX_HEADER_BYTES)) {
        throw new Error(
          `${path}: safetensors header of ${headerLen} bytes exceeds the ${MAX_HEADER_BYTES} limit`,
        );
      }
      const n = Number(headerLen);
      const headerBytes = await readExactly(file, 8, n, path);
      const { infos, metadata } = parseHeader(headerBytes, path, 8 + n, fileSize);
      return new SafetensorsFile(path, file, infos, metadata);
    } catch (err) {
      file.close();
      throw err;
    }
  }

  /** The tensor names, in the order of their data in the file. */
  names(): string[] {
    return [...this.#infos.keys()];
  }

  /** True when the file holds a tensor of that name. */
  has(name: string): boolean {
    return this.#infos.has(name);
  }

  /** Where a tensor lives (throws, listing close names, when absent). */
  info(name: string): TensorInfo {
    const info = this.#infos.get(name);
    if (!info) throw new Error(missingTensorMessage(name, this.path, this.names()));
    return { ...info, shape: [...info.shape] };
  }

  /**
   * Reads one tensor: F64/F32/F16/BF16 -> Float32Array, I64 (each value must fit in i32)/I32/I16/I8
   * -> Int32Array, U8/BOOL -> Uint8Array. Concurrent reads of one file are serialized.
   */
  read(name: string): Promise<SafeData> {
    const info = this.info(name);
    const job = this.#queue.then(async () => {
      const file = this.#file;
      if (!file) throw new Error(`${this.path}: read("${name}") after close()`);
      const bytes = await readExactly(file, info.byteOffset, info.byteLength, this.path);
      return decodeTensor(bytes, info);
    });
    this.#queue = job.catch(() => {});
    return job;
  }

  /** Closes the file handle. Safe to call twice. */
  close(): void {
    this.#file?.close();
    this.#file = null;
  }
}

/** Reads `length` bytes at `offset` into a fresh buffer (so typed-array views over it are aligned). */
async function readExactly(
  file: Deno.FsFile,
  offset: number,
  length: number,
  path: string,
): Promise<Uint8Array> {
  const out = new Uint8Array(length);
  await file.seek(offset, Deno.SeekMode.Start);
  let got = 0;
  while (got < length) {
    const n = await file.read(out.subarray(got));
    if (n === null || n === 0) {
      throw new Error(
        `${path}: unexpected end of file reading ${length} bytes at offset ${offset} (file changed?)`,
      );
    }
    got += n;
  }
  return out;
}

/** Validates a header and turns it into tensor infos (absolute offsets). */
function parseHeader(
  bytes: Uint8Array,
  path: string,
  dataStart: number,
  fileSize: number,
): { infos: Map<string, TensorInfo>; metadata: Record<string, string> } {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new Error(`${path}: corrupt safetensors file: the header is not valid UTF-8`);
  }
  const header = parseJsonText(text, `${path} (safetensors header)`);
  if (header === null || typeof header !== "object" || Array.isArray(header)) {
    throw new Error(
      `${path}: corrupt safetensors file: the header must be a JSON object, got ${
        header === null ? "null" : Array.isArray(header) ? "an array" : typeof header
      }`,
    );
  }
  const twice = duplicateTopLevelKey(text);
  if (twice !== null) {
    throw new Error(
      `${path}: corrupt safetensors file: ${twice === "__metadata__" ? "" : "tensor "}"${twice}" appears ` +
        `twice in the header (a JSON reader would silently keep the last); write the file again`,
    );
  }
  const dataSize = fileSize - dataStart;
  const metadata: Record<string, string> = {};
  const list: TensorInfo[] = [];
  for (const [name, entry] of Object.entries(header as Record<string, unknown>)) {
    if (name === "__metadata__") {
      if (entry === null || typeof entry !== "object" || Array.isArray(entry)) {
        throw new Error(`${path}: safetensors __metadata__ must be an object of strings`);
      }
      for (const [k, v] of Object.entries(entry as Record<string, unknown>)) {
        if (typeof v !== "string") {
          throw new Error(
            `${path}: safetensors __metadata__.${k} must be a string, got ${JSON.stringify(v)}`,
          );
        }
        metadata[k] = v;
      }
      continue;
    }
    const where = `${path}: tensor "${name}"`;
    if (entry === null || typeof entry !== "object" || Array.isArray(entry)) {
      throw new Error(`${where}: header entry must be an object {dtype, shape, data_offsets}`);
    }
    const { dtype, shape, data_offsets: offs } = entry as Record<string, unknown>;
    if (!isSafeDType(dtype)) {
      throw new Error(
        `${where}: unknown dtype ${JSON.stringify(dtype)} (supported: ${
          Object.keys(DTYPE_BYTES).join(", ")
        })`,
      );
    }
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new Error(`${where}: shape must be an array of integers >= 0, got ${JSON.stringify(shape)}`);
    }
    if (
      !Array.isArray(offs) || offs.length !== 2 || !offs.every((o) => Number.isSafeInteger(o) && o >= 0) ||
      offs[0] > offs[1]
    ) {
      throw new Error(
        `${where}: data_offsets must be [begin, end] with 0 <= begin <= end, got ${JSON.stringify(offs)}`,
      );
    }
    const [begin, end] = offs as number[];
    const elements = (shape as number[]).reduce((a, b) => a * b, 1);
    const expected = elements * DTYPE_BYTES[dtype];
    if (end - begin !== expected) {
      throw new Error(
        `${where}: shape [${shape}] of ${dtype} needs ${expected} bytes, but data_offsets [${begin}, ${end}] ` +
          `span ${end - begin} bytes (shape/byte-size mismatch)`,
      );
    }
    if (end > dataSize) {
      throw new Error(
        `${where}: data_offsets [${begin}, ${end}] run past the end of the file (the data section has ` +
          `${dataSize} bytes; truncated file?)`,
      );
    }
    list.push({
      name,
      dtype,
      shape: shape as number[],
      byteOffset: dataStart + begin,
      byteLength: end - begin,
      file: path,
    });
  }
  list.sort((a, b) => a.byteOffset - b.byteOffset || a.byteLength - b.byteLength);
  checkTiling(list, path, dataStart, dataSize);
  return { infos: new Map(list.map((t) => [t.name, t])), metadata };
}

/**
 * Checks that tensors sorted by data offset lie back to back, from the start of the data section to
 * its end: a gap, an overlap or bytes after the last tensor mean a corrupt or tampered file.
 */
function checkTiling(sorted: TensorInfo[], path: string, dataStart: number, dataSize: number): void {
  const bad = `${path}: corrupt safetensors file:`;
  const range = (t: TensorInfo) =>
    `[${t.byteOffset - dataStart}, ${t.byteOffset - dataStart + t.byteLength}]`;
  let end = 0;
  let prev: TensorInfo | null = null;
  for (const t of sorted) {
    const begin = t.byteOffset - dataStart;
    if (begin < end) {
      throw new Error(
        `${bad} tensors "${prev!.name}" and "${t.name}" have overlapping data_offsets ${range(prev!)} and ` +
          `${range(t)}`,
      );
    }
    if (begin > end) {
      throw new Error(
        `${bad} tensor "${t.name}" starts at data offset ${begin}, but ` +
          (prev ? `the previous tensor "${prev.name}" ends at ${end}` : `the data section starts at 0`) +
          `: ${begin - end} unused bytes ${prev ? "between them" : "before it"} (tensors lie back to back)`,
      );
    }
    end = begin + t.byteLength;
    prev = t;
  }
  if (end !== dataSize && !prev) {
    throw new Error(`${bad} ${dataSize} bytes after the header, but it holds no tensor`);
  }
  if (end !== dataSize) {
    const extra = dataSize - end;
    throw new Error(
      `${bad} ${extra} bytes after the end of the last tensor "${prev!.name}" (data_offsets end at ${end}, ` +
        `the data section has ${dataSize} bytes): appended or corrupt data`,
    );
  }
}

/** Converts a tensor's raw little-endian bytes to its host array. */
function decodeTensor(bytes: Uint8Array, info: TensorInfo): SafeData {
  const n = info.byteLength / DTYPE_BYTES[info.dtype];
  const buf = bytes.buffer as ArrayBuffer;
  switch (info.dtype) {
    case "F32":
      return new Float32Array(buf, 0, n);
    case "F64":
      return Float32Array.from(new Float64Array(buf, 0, n));
    case "F16":
      return f16ArrayToF32(new Uint16Array(buf, 0, n));
    case "BF16":
      return bf16ArrayToF32(new Uint16Array(buf, 0, n));
    case "I64": {
      const words = new Int32Array(buf, 0, 2 * n);
      const out = new Int32Array(n);
      for (let i = 0; i < n; i++) {
        const lo = words[2 * i], hi = words[2 * i + 1];
        if (hi !== lo >> 31) {
          const v = (BigInt(hi) << 32n) | BigInt(lo >>> 0);
          throw new Error(
            `${info.file}: tensor "${info.name}" (I64): value ${v} at index ${i} does not fit in i32 ` +
              `(the engine holds integers as i32)`,
          );
        }
        out[i] = lo;
      }
      return out;
    }
    case "I32":
      return new Int32Array(buf, 0, n);
    case "I16":
      return Int32Array.from(new Int16Array(buf, 0, n));
    case "I8":
      return Int32Array.from(new Int8Array(buf, 0, n));
    case "U8":
    case "BOOL":
      return bytes;
  }
}

/** "tensor X not in F; close names: ..." with up to 5 names nearest by edit distance. */
function missingTensorMessage(name: string, path: string, names: string[]): string {
  const close = closeNames(name, names, 5);
  return `${path}: no tensor "${name}" (the file holds ${names.length} tensors` +
    (close.length ? `; close names: ${close.map((c) => `"${c}"`).join(", ")})` : ")");
}

/** The `k` names nearest to `name` by edit distance. */
export function closeNames(name: string, names: Iterable<string>, k: number): string[] {
  const scored: [number, string][] = [];
  for (const c of names) scored.push([editDistance(name, c), c]);
  scored.sort((a, b) => a[0] - b[0] || (a[1] < b[1] ? -1 : 1));
  return scored.slice(0, k).map((s) => s[1]);
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length];
}

// ================================================================ checkpoints

const SINGLE_FILE = "model.safetensors";
const INDEX_FILE = "model.safetensors.index.json";

/**
 * A checkpoint: one safetensors file, a folder with `model.safetensors`, or a sharded folder with
 * `model.safetensors.index.json` (its `weight_map` names each tensor's shard). As in transformers,
 * `model.safetensors` wins when a folder has both. All shards' headers are read at open.
 */
export class Checkpoint {
  /** The path given to {@linkcode Checkpoint.open}. */
  readonly path: string;
  /** The open files (one, or one per shard). */
  readonly files: readonly SafetensorsFile[];
  #where: Map<string, SafetensorsFile>;

  private constructor(path: string, files: SafetensorsFile[], where: Map<string, SafetensorsFile>) {
    this.path = path;
    this.files = files;
    this.#where = where;
  }

  /** Opens a safetensors file, or a model folder (single file or sharded). */
  static async open(pathOrDir: string): Promise<Checkpoint> {
    let stat: Deno.FileInfo;
    try {
      stat = await Deno.stat(pathOrDir);
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) {
        throw new Error(
          `${pathOrDir}: checkpoint not found; give a .safetensors file or a model folder with ` +
            `${SINGLE_FILE} or ${INDEX_FILE}`,
        );
      }
      throw err;
    }
    if (stat.isFile) {
      const f = await SafetensorsFile.open(pathOrDir);
      return new Checkpoint(pathOrDir, [f], new Map(f.names().map((n) => [n, f])));
    }
    const single = joinPath(pathOrDir, SINGLE_FILE);
    if (await isFile(single)) {
      const f = await SafetensorsFile.open(single);
      return new Checkpoint(pathOrDir, [f], new Map(f.names().map((n) => [n, f])));
    }
    const index = joinPath(pathOrDir, INDEX_FILE);
    if (await isFile(index)) {
      const { files, where } = await openShards(pathOrDir, index);
      return new Checkpoint(pathOrDir, files, where);
    }
    const found: string[] = [];
    for await (const e of Deno.readDir(pathOrDir)) if (e.name.endsWith(".safetensors")) found.push(e.name);
    throw new Error(
      `${pathOrDir}: no ${SINGLE_FILE} or ${INDEX_FILE} in this folder` +
        (found.length
          ? ` (it has ${found.sort().slice(0, 5).join(", ")}; pass one of those files directly)`
          : ""),
    );
  }

  /** All tensor names (sorted). */
  names(): string[] {
    return [...this.#where.keys()].sort();
  }

  /** True when the checkpoint holds a tensor of that name. */
  has(name: string): boolean {
    return this.#where.has(name);
  }

  /** Where a tensor lives (throws, listing close names, when absent). */
  info(name: string): TensorInfo {
    return this.#file(name).info(name);
  }

  /** Reads one tensor (see {@linkcode SafetensorsFile.read} for the host types). */
  read(name: string): Promise<SafeData> {
    return this.#file(name).read(name);
  }

  /** Closes every file. */
  close(): void {
    for (const f of this.files) f.close();
  }

  #file(name: string): SafetensorsFile {
    const f = this.#where.get(name);
    if (!f) throw new Error(missingTensorMessage(name, this.path, this.names()));
    return f;
  }
}

/** Opens every shard an index names and checks that each holds the tensors the index puts there. */
async function openShards(
  dir: string,
  indexPath: string,
): Promise<{ files: SafetensorsFile[]; where: Map<string, SafetensorsFile> }> {
  const index = await readJsonFile(indexPath, "a sharded safetensors index ({metadata, weight_map})");
  const wm = (index as { weight_map?: unknown } | null)?.weight_map;
  if (!wm || typeof wm !== "object" || Array.isArray(wm)) {
    throw new Error(`${indexPath}: "weight_map" must be an object mapping tensor names to shard files`);
  }
  const byShard = new Map<string, string[]>();
  for (const [name, shard] of Object.entries(wm as Record<string, unknown>)) {
    if (typeof shard !== "string" || shard === "" || shard.includes("/") || shard.includes("\\")) {
      throw new Error(
        `${indexPath}: weight_map["${name}"] must be a shard file name in the same folder, got ${
          JSON.stringify(shard)
        }`,
      );
    }
    const list = byShard.get(shard) ?? [];
    list.push(name);
    byShard.set(shard, list);
  }
  const files: SafetensorsFile[] = [];
  const where = new Map<string, SafetensorsFile>();
  try {
    for (const [shard, names] of byShard) {
      const p = joinPath(dir, shard);
      if (!(await isFile(p))) {
        throw new Error(
          `${indexPath}: weight_map names shard file "${shard}" (for "${names[0]}" and ${names.length - 1} ` +
            `more), but ${p} does not exist (incomplete download?)`,
        );
      }
      const f = await SafetensorsFile.open(p);
      files.push(f);
      for (const n of names) {
        if (!f.has(n)) {
          throw new Error(
            `${indexPath}: weight_map puts "${n}" in ${shard}, but that shard has no such tensor`,
          );
        }
        where.set(n, f);
      }
    }
  } catch (err) {
    for (const f of files) f.close();
    throw err;
  }
  return { files, where };
}

async function isFile(p: string): Promise<boolean> {
  try {
    return (await Deno.stat(p)).isFile;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return false;
    throw err;
  }
}

function joinPath(dir: string, name: string): string {
  return dir.endsWith("/") ? dir + name : `${dir}/${name}`;
}

// ================================================================ writing

/**
 * One tensor to write. `data` holds the values as floats (F64/F32/F16/BF16, rounded to the dtype),
 * i32 (I64/I32/I16/I8) or bytes (U8/BOOL); it may be a function that produces them when the writer
 * reaches this tensor, so only one tensor's host copy exists at a time.
 */
export interface SafeTensorInput {
  /** The tensor's name. */
  name: string;
  /** The dtype to store. */
  dtype: SafeDType;
  /** The shape, outermost first. */
  shape: number[];
  /** The values (row-major), or a function giving them. */
  data: SafeData | (() => Promise<SafeData> | SafeData);
}

/**
 * Writes one safetensors file atomically: to `path + ".tmp-<random>"`, then renamed over `path`
 * (the temp file is removed on error, leaving any previous file intact). Tensors are stored sorted
 * by name, the header padded with spaces to a multiple of 8 bytes. Returns the SHA-256 of the bytes
 * written (64 hex digits, as `sha256sum` prints it), hashed as they stream out.
 */
export async function writeSafetensors(
  path: string,
  tensors: SafeTensorInput[],
  metadata: Record<string, string> = {},
): Promise<string> {
  const sorted = checkInputs(path, tensors);
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== "string") {
        throw new Error(`${path}: metadata "${k}" must be a string, got ${typeof v}`);
      }
    }
    header.__metadata__ = metadata;
  }
  let offset = 0;
  for (const t of sorted) {
    const bytes = tensorBytes(t);
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.length / 8) * 8;
  if (padded !== json.length) {
    const p = new Uint8Array(padded).fill(0x20);
    p.set(json);
    json = p;
  }
  return await atomicWrite(path, async (write) => {
    const len = new Uint8Array(8);
    new DataView(len.buffer).setBigUint64(0, BigInt(json.length), true);
    await write(len);
    await write(json);
    for (const t of sorted) {
      const data = typeof t.data === "function" ? await t.data() : t.data;
      await write(encodeTensor(path, t, data));
    }
  });
}

/** Options of {@linkcode writeShardedSafetensors}. */
export interface ShardOptions {
  /** Largest data bytes per shard (a single larger tensor gets a shard of its own). */
  maxShardBytes: number;
  /** `__metadata__` of every shard. */
  metadata?: Record<string, string>;
}

/**
 * Writes a sharded checkpoint into `dir`: `model-0000i-of-0000n.safetensors` files (tensors in name
 * order, a new shard whenever the next tensor would pass `maxShardBytes`) and
 * `model.safetensors.index.json` (`metadata.total_size`, `weight_map`), each file atomically.
 * Returns the shard file names.
 */
export async function writeShardedSafetensors(
  dir: string,
  tensors: SafeTensorInput[],
  opts: ShardOptions,
): Promise<string[]> {
  if (!(Number.isFinite(opts.maxShardBytes) && opts.maxShardBytes > 0)) {
    throw new Error(
      `writeShardedSafetensors(${dir}): maxShardBytes must be a number > 0, got ${opts.maxShardBytes}`,
    );
  }
  const sorted = checkInputs(dir, tensors);
  const shards: SafeTensorInput[][] = [];
  let size = 0;
  for (const t of sorted) {
    const b = tensorBytes(t);
    if (!shards.length || (size + b > opts.maxShardBytes && size > 0)) {
      shards.push([]);
      size = 0;
    }
    shards.at(-1)!.push(t);
    size += b;
  }
  if (!shards.length) shards.push([]);
  await Deno.mkdir(dir, { recursive: true });
  const n = shards.length;
  const pad = (i: number) => String(i).padStart(5, "0");
  const names = shards.map((_, i) => `model-${pad(i + 1)}-of-${pad(n)}.safetensors`);
  const weightMap: Record<string, string> = {};
  let total = 0;
  for (let i = 0; i < n; i++) {
    await writeSafetensors(joinPath(dir, names[i]), shards[i], opts.metadata);
    for (const t of shards[i]) {
      weightMap[t.name] = names[i];
      total += tensorBytes(t);
    }
  }
  const index = { metadata: { total_size: total }, weight_map: weightMap };
  await writeTextAtomic(joinPath(dir, INDEX_FILE), JSON.stringify(index, null, 2) + "\n");
  return names;
}

/** Writes a text file atomically (temp file + rename); returns the SHA-256 of its bytes (hex). */
export async function writeTextAtomic(path: string, text: string): Promise<string> {
  const bytes = new TextEncoder().encode(text);
  return await atomicWrite(path, (write) => write(bytes));
}

/**
 * Runs `fill` on a fresh temp file beside `path`, then renames it over `path`; removes it on error.
 * Returns the SHA-256 (hex) of what `fill` wrote.
 */
async function atomicWrite(
  path: string,
  fill: (write: (bytes: Uint8Array) => Promise<void>) => Promise<void>,
): Promise<string> {
  const rand = crypto.getRandomValues(new Uint8Array(6));
  const tmp = `${path}.tmp-${[...rand].map((b) => b.toString(16).padStart(2, "0")).join("")}`;
  let file: Deno.FsFile;
  try {
    file = await Deno.open(tmp, { write: true, createNew: true });
  } catch (err) {
    throw new Error(
      `cannot write ${path}: ${(err as Error).message} (does the folder exist and is it writable?)`,
    );
  }
  let closed = false;
  const hash = new Sha256();
  try {
    await fill(async (bytes) => {
      hash.update(bytes);
      await writeAll(file, bytes);
    });
    await file.syncData();
    file.close();
    closed = true;
    await Deno.rename(tmp, path);
  } catch (err) {
    if (!closed) file.close();
    await Deno.remove(tmp).catch(() => {});
    throw namingPath(err, path);
  }
  return hash.hex();
}

/**
 * `err` with `path` in its message when the system's error does not say it ("No space left on device
 * (os error 28)" names no file), with the fix for a full disk.
 */
export function namingPath(err: unknown, path: string): Error {
  const msg = err instanceof Error ? err.message : String(err);
  if (msg.includes(path)) return err instanceof Error ? err : new Error(msg);
  const full = /No space left on device|os error 28|Disk quota exceeded/.test(msg)
    ? "; free space on that disk, or write the run to another one (--out DIR)"
    : "";
  return new Error(`writing ${path}: ${msg}${full}`);
}

async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  let done = 0;
  while (done < bytes.length) done += await file.write(bytes.subarray(done));
}

function tensorBytes(t: SafeTensorInput): number {
  return t.shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[t.dtype];
}

/** Validates names, dtypes, shapes and (eager) data; returns the tensors sorted by name. */
function checkInputs(path: string, tensors: SafeTensorInput[]): SafeTensorInput[] {
  const seen = new Set<string>();
  for (const t of tensors) {
    const where = `writing ${path}: tensor "${t.name}"`;
    if (typeof t.name !== "string" || t.name === "" || t.name === "__metadata__") {
      throw new Error(`writing ${path}: invalid tensor name ${JSON.stringify(t.name)}`);
    }
    if (seen.has(t.name)) throw new Error(`${where} appears twice; names must be unique`);
    seen.add(t.name);
    if (!isSafeDType(t.dtype)) {
      throw new Error(
        `${where}: unknown dtype ${JSON.stringify(t.dtype)} (use one of ${
          Object.keys(DTYPE_BYTES).join(", ")
        })`,
      );
    }
    if (!Array.isArray(t.shape) || !t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new Error(`${where}: shape must be an array of integers >= 0, got ${JSON.stringify(t.shape)}`);
    }
    if (typeof t.data !== "function") checkData(path, t, t.data);
  }
  return [...tensors].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

function checkData(path: string, t: SafeTensorInput, data: SafeData): void {
  const where = `writing ${path}: tensor "${t.name}" (${t.dtype} [${t.shape}])`;
  const size = t.shape.reduce((a, b) => a * b, 1);
  const want = isSafeFloat(t.dtype)
    ? Float32Array
    : t.dtype === "U8" || t.dtype === "BOOL"
    ? Uint8Array
    : Int32Array;
  if (!(data instanceof want)) {
    const got = (data as { constructor?: { name?: string } } | null)?.constructor?.name ?? String(data);
    throw new Error(`${where}: data must be a ${want.name}, got ${got}`);
  }
  if (data.length !== size) {
    throw new Error(`${where}: data has ${data.length} values, the shape needs ${size}`);
  }
}

/** The little-endian bytes of one tensor in its stored dtype. */
function encodeTensor(path: string, t: SafeTensorInput, data: SafeData): Uint8Array {
  checkData(path, t, data);
  const where = `writing ${path}: tensor "${t.name}" (${t.dtype})`;
  const bytesOf = (a: ArrayBufferView) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  switch (t.dtype) {
    case "F32":
      return bytesOf(data as Float32Array);
    case "F64":
      return bytesOf(Float64Array.from(data as Float32Array));
    case "F16":
      return bytesOf(f32ArrayToF16(data as Float32Array));
    case "BF16":
      return bytesOf(f32ArrayToBf16(data as Float32Array));
    case "I32":
      return bytesOf(data as Int32Array);
    case "I64": {
      const out = new Int32Array(2 * data.length);
      for (let i = 0; i < data.length; i++) {
        out[2 * i] = data[i];
        out[2 * i + 1] = data[i] >> 31;
      }
      return bytesOf(out);
    }
    case "I16":
    case "I8": {
      const [lo, hi] = t.dtype === "I16" ? [-32768, 32767] : [-128, 127];
      for (let i = 0; i < data.length; i++) {
        if (data[i] < lo || data[i] > hi) {
          throw new Error(
            `${where}: value ${data[i]} at index ${i} is outside the ${t.dtype} range [${lo}, ${hi}]`,
          );
        }
      }
      return bytesOf(t.dtype === "I16" ? Int16Array.from(data) : Int8Array.from(data));
    }
    case "U8":
      return bytesOf(data);
    case "BOOL":
      for (let i = 0; i < data.length; i++) {
        if (data[i] > 1) throw new Error(`${where}: value ${data[i]} at index ${i} is not 0 or 1`);
      }
      return bytesOf(data);
  }
}
