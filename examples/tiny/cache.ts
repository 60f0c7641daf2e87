/**
 * A folder per built part, named by a hash of what determines it: `cachedPart(root, name, key, build)`
 * returns `<root>/<name>-<hash>` after building it there once (into a temporary folder renamed when done,
 * so an interrupted build is redone, never half-used). Changing the key (a size, a seed, an upstream
 * part's hash) builds a new folder.
 * @module
 */

import { join } from "node:path";

/** The SHA-256 of a JSON-serializable key, as 16 hex digits. */
export async function keyHash(key: unknown): Promise<string> {
  const bytes = new TextEncoder().encode(JSON.stringify(key));
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(digest.subarray(0, 8), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** A built part: its folder, and whether this call built it. */
export interface CachedPart {
  /** The part's folder. */
  dir: string;
  /** The key's hash (the folder's suffix), for downstream keys. */
  hash: string;
  /** True when this call built it (false: it was there). */
  built: boolean;
}

/**
 * The folder of part `name` for `key` under `root`, built by `build(tmpDir)` when missing. `build`
 * writes everything into the folder it is given.
 */
export async function cachedPart(
  root: string,
  name: string,
  key: unknown,
  build: (dir: string) => Promise<void>,
): Promise<CachedPart> {
  const hash = await keyHash(key);
  const dir = join(root, `${name}-${hash}`);
  try {
    await Deno.stat(join(dir, ".complete"));
    return { dir, hash, built: false };
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  await Deno.mkdir(root, { recursive: true });
  const tmp = join(root, `.tmp-${name}-${hash}-${crypto.randomUUID().slice(0, 8)}`);
  await Deno.mkdir(tmp, { recursive: true });
  try {
    await build(tmp);
    await Deno.writeTextFile(join(tmp, ".complete"), JSON.stringify(key) + "\n");
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    await Deno.rename(tmp, dir);
  } catch (err) {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
    throw err;
  }
  return { dir, hash, built: true };
}
