/**
 * The target cache: visual-token codes computed once per dataset and tokenizer, keyed by the
 * image's content hash (SHA-256 of the file bytes) and the tokenizer's identity.
 *
 * On disk, per tokenizer identity, two files in the cache folder:
 * - `targets-<id>.bin`: the codes of every image, u16 little-endian, appended image after image;
 * - `targets-<id>.json`: the index `{ format, version, identity, bytes, entries: { <hash>:
 *   [byteOffset, count] } }`, replaced atomically (temp file + rename) after the appended bytes are
 *   synced, so it only ever points at data on disk. Bytes past `bytes` (an append cut short) are
 *   dropped when the cache is opened.
 *
 * `<id>` is a hash of the identity, so caches of several tokenizers (semantic and pixel targets of
 * the dual ablation) share one folder, and codebooks that change (a new identity) never read the old
 * targets: they miss and are recomputed. One process writes a cache at a time.
 *
 * ```ts ignore
 * const cache = await TargetCache.open("cache/targets", codebooks.identity(), { codebookSize: 16384 });
 * const key = await imageHash(await Deno.readFile(path));
 * let codes = cache.get(key);                  // Uint16Array [N * D] or undefined
 * if (!codes) cache.set(key, codes = Uint16Array.from(await rqEncode(x, cb).read()));
 * await cache.flush();
 * cache.close();
 * ```
 * @module
 */

import { createHash } from "node:crypto";
import { readJsonFile } from "../io/json.ts";
import { writeTextAtomic } from "../io/safetensors.ts";

/** The `format` of a cache index. */
export const TARGET_CACHE_FORMAT = "asvr.target_cache";

/** Largest codebook whose codes fit u16. */
export const MAX_U16_CODES = 65536;

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
const HASH_RE = /^[0-9a-f]{64}$/;

/** The SHA-256 of an image file's bytes as 64 lowercase hex digits: the cache key of its targets. */
export async function imageHash(bytes: Uint8Array): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>);
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** Options of {@linkcode TargetCache.open}. */
export interface TargetCacheOptions {
  /** Codes K per codebook, checked against the u16 limit (K <= 65536) when given. */
  codebookSize?: number;
}

/** The on-disk index of a cache. */
interface CacheIndex {
  format: string;
  version: number;
  identity: string;
  bytes: number;
  entries: Record<string, [number, number]>;
}

function joinPath(dir: string, name: string): string {
  return dir.endsWith("/") ? dir + name : `${dir}/${name}`;
}

/** u16 values as little-endian bytes. */
function toBytes(codes: Uint16Array): Uint8Array {
  if (LITTLE_ENDIAN) return new Uint8Array(codes.buffer, codes.byteOffset, codes.byteLength);
  const out = new Uint8Array(codes.length * 2), v = new DataView(out.buffer);
  codes.forEach((c, i) => v.setUint16(2 * i, c, true));
  return out;
}

/** Little-endian bytes as u16 values. */
function fromBytes(bytes: Uint8Array): Uint16Array {
  if (LITTLE_ENDIAN) return new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.length / 2);
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return Uint16Array.from({ length: bytes.length / 2 }, (_, i) => v.getUint16(2 * i, true));
}

/** Validates a parsed index; throws naming the file and the fix. */
function checkIndex(json: unknown, path: string): CacheIndex {
  const fail = (why: string): never => {
    throw new Error(
      `${path}: not a valid target cache index (${why}); delete it and its .bin file to rebuild`,
    );
  };
  if (typeof json !== "object" || json === null || Array.isArray(json)) fail("not a JSON object");
  const j = json as Record<string, unknown>;
  if (j.format !== TARGET_CACHE_FORMAT) fail(`format is ${JSON.stringify(j.format)}`);
  if (j.version !== 1) fail(`version ${JSON.stringify(j.version)}; this reader knows version 1`);
  if (typeof j.identity !== "string") fail("identity is not a string");
  if (!Number.isSafeInteger(j.bytes) || (j.bytes as number) < 0) fail("bytes is not an integer >= 0");
  if (typeof j.entries !== "object" || j.entries === null || Array.isArray(j.entries)) {
    fail("entries is not an object");
  }
  for (const [k, v] of Object.entries(j.entries as Record<string, unknown>)) {
    const ok = HASH_RE.test(k) && Array.isArray(v) && v.length === 2 &&
      v.every((n) => Number.isSafeInteger(n) && n >= 0) && v[0] % 2 === 0 &&
      v[0] + 2 * v[1] <= (j.bytes as number);
    if (!ok) fail(`entry ${JSON.stringify(k)}: ${JSON.stringify(v)}`);
  }
  return j as unknown as CacheIndex;
}

/** Visual-token targets on disk for one tokenizer identity. Open with {@linkcode TargetCache.open}. */
export class TargetCache {
  /** The cache folder. */
  readonly dir: string;
  /** The tokenizer identity the targets belong to (e.g. `Codebooks.identity()`). */
  readonly identity: string;
  /** The binary file of codes. */
  readonly binPath: string;
  /** The JSON index. */
  readonly indexPath: string;
  #index: CacheIndex;
  #pending = new Map<string, Uint16Array>();
  #file: Deno.FsFile | null;

  private constructor(
    dir: string,
    identity: string,
    binPath: string,
    indexPath: string,
    index: CacheIndex,
    file: Deno.FsFile,
  ) {
    this.dir = dir;
    this.identity = identity;
    this.binPath = binPath;
    this.indexPath = indexPath;
    this.#index = index;
    this.#file = file;
  }

  /**
   * Opens (creating the folder and files as needed) the cache of `tokenizerIdentity` in `dir`. A
   * cache written for another identity is never read: its targets are other tokens.
   */
  static async open(
    dir: string,
    tokenizerIdentity: string,
    opts: TargetCacheOptions = {},
  ): Promise<TargetCache> {
    if (typeof tokenizerIdentity !== "string" || tokenizerIdentity === "") {
      throw new Error(
        `TargetCache.open(${dir}): the tokenizer identity must be a non-empty string (Codebooks.identity())`,
      );
    }
    const K = opts.codebookSize;
    if (K !== undefined && !(Number.isInteger(K) && K >= 1 && K <= MAX_U16_CODES)) {
      throw new Error(
        `TargetCache.open(${dir}): codebookSize ${K} does not fit the cache's u16 codes; it must be an integer ` +
          `in [1, ${MAX_U16_CODES}] (use a smaller codebook)`,
      );
    }
    await Deno.mkdir(dir, { recursive: true });
    const id = createHash("sha256").update(tokenizerIdentity).digest("hex").slice(0, 16);
    const binPath = joinPath(dir, `targets-${id}.bin`), indexPath = joinPath(dir, `targets-${id}.json`);
    let index: CacheIndex = {
      format: TARGET_CACHE_FORMAT,
      version: 1,
      identity: tokenizerIdentity,
      bytes: 0,
      entries: {},
    };
    let exists = true;
    try {
      await Deno.stat(indexPath);
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
      exists = false;
    }
    if (exists) {
      const found = checkIndex(await readJsonFile(indexPath, "a target cache index"), indexPath);
      // Another identity behind the same file name: invalidated, rewritten from empty.
      if (found.identity === tokenizerIdentity) index = found;
    }
    const file = await Deno.open(binPath, { read: true, write: true, create: true });
    try {
      const size = (await file.stat()).size;
      if (size < index.bytes) {
        throw new Error(
          `${binPath}: holds ${size} bytes but its index ${indexPath} needs ${index.bytes}; the cache is damaged: ` +
            `delete both files to rebuild it`,
        );
      }
      if (size > index.bytes) await file.truncate(index.bytes); // an append that was cut short
    } catch (err) {
      file.close();
      throw err;
    }
    return new TargetCache(dir, tokenizerIdentity, binPath, indexPath, index, file);
  }

  /** Images with targets (written or pending). */
  get size(): number {
    let n = Object.keys(this.#index.entries).length;
    for (const k of this.#pending.keys()) if (!Object.hasOwn(this.#index.entries, k)) n++;
    return n;
  }

  /** True when the image's targets are cached (written or pending). */
  has(imageHash: string): boolean {
    return this.#pending.has(imageHash) || Object.hasOwn(this.#index.entries, imageHash);
  }

  /** The codes of an image ([N * D] u16, a fresh copy), or undefined when not cached. */
  get(imageHash: string): Uint16Array | undefined {
    const p = this.#pending.get(imageHash);
    if (p) return p.slice();
    if (!Object.hasOwn(this.#index.entries, imageHash)) return undefined;
    const [offset, count] = this.#index.entries[imageHash];
    const file = this.#open("get");
    const bytes = new Uint8Array(2 * count);
    file.seekSync(offset, Deno.SeekMode.Start);
    let got = 0;
    while (got < bytes.length) {
      const n = file.readSync(bytes.subarray(got));
      if (n === null || n === 0) {
        throw new Error(
          `${this.binPath}: ends inside the targets of ${imageHash}; delete the cache files to rebuild`,
        );
      }
      got += n;
    }
    return fromBytes(bytes);
  }

  /**
   * Stores an image's codes (integers in [0, 65535]; kept in memory until {@linkcode flush}).
   * `imageHash` is the SHA-256 hex of the image file ({@linkcode imageHash}).
   */
  set(imageHash: string, codes: ArrayLike<number>): void {
    if (typeof imageHash !== "string" || !HASH_RE.test(imageHash)) {
      throw new Error(
        `TargetCache.set: key ${
          JSON.stringify(imageHash)
        } is not a SHA-256 hex digest; use imageHash(fileBytes)`,
      );
    }
    const out = new Uint16Array(codes.length);
    for (let i = 0; i < codes.length; i++) {
      const c = codes[i];
      if (!Number.isInteger(c) || c < 0 || c >= MAX_U16_CODES) {
        throw new Error(
          `TargetCache.set(${
            imageHash.slice(0, 12)
          }..): code ${c} at index ${i} does not fit u16; codes must be ` +
            `integers in [0, ${MAX_U16_CODES - 1}] (codebooks of at most ${MAX_U16_CODES} codes)`,
        );
      }
      out[i] = c;
    }
    this.#open("set");
    this.#pending.set(imageHash, out);
  }

  /** Appends the pending codes to the binary file, syncs it, then replaces the index atomically. */
  async flush(): Promise<void> {
    const file = this.#open("flush");
    if (this.#pending.size === 0) return;
    await file.seek(this.#index.bytes, Deno.SeekMode.Start);
    const entries = { ...this.#index.entries };
    let at = this.#index.bytes;
    for (const [hash, codes] of this.#pending) {
      const bytes = toBytes(codes);
      let done = 0;
      while (done < bytes.length) done += await file.write(bytes.subarray(done));
      entries[hash] = [at, codes.length];
      at += bytes.length;
    }
    await file.syncData();
    const index: CacheIndex = { ...this.#index, bytes: at, entries };
    await writeTextAtomic(this.indexPath, JSON.stringify(index) + "\n");
    this.#index = index;
    this.#pending.clear();
  }

  /** Closes the binary file (pending codes not flushed are dropped). Safe to call twice. */
  close(): void {
    this.#file?.close();
    this.#file = null;
  }

  #open(op: string): Deno.FsFile {
    if (!this.#file) throw new Error(`TargetCache.${op}: the cache ${this.indexPath} is closed`);
    return this.#file;
  }
}
