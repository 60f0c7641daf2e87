/**
 * SHA-256 of files and bytes, hex-encoded as `sha256sum` prints it. Large files are hashed as they
 * stream (4 MiB at a time), so memory holds one chunk, never the file.
 *
 * ```ts ignore
 * const h = new Sha256();
 * h.update(header).update(data);
 * h.hex() === await sha256File("model.safetensors");
 * ```
 * @module
 */

import { createHash, type Hash } from "node:crypto";

const CHUNK = 4 << 20;

/** An incremental SHA-256: feed bytes with `update`, read the digest once with `hex`. */
export class Sha256 {
  #hash: Hash = createHash("sha256");

  /** Adds bytes to the hashed stream. */
  update(bytes: Uint8Array): this {
    this.#hash.update(bytes);
    return this;
  }

  /** The digest of everything added, as 64 lowercase hex digits (call once). */
  hex(): string {
    return this.#hash.digest("hex");
  }
}

/** The SHA-256 of `bytes`, as 64 lowercase hex digits. */
export function sha256Hex(bytes: Uint8Array): string {
  return new Sha256().update(bytes).hex();
}

/** The SHA-256 of a file's contents, read in 4 MiB chunks, as 64 lowercase hex digits. */
export async function sha256File(path: string): Promise<string> {
  using file = await Deno.open(path, { read: true });
  const h = new Sha256();
  const buf = new Uint8Array(CHUNK);
  for (;;) {
    const n = await file.read(buf);
    if (n === null) break;
    h.update(buf.subarray(0, n));
  }
  return h.hex();
}
