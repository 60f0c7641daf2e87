/**
 * Whether a file or folder exists.
 * @module
 */

/** True when `path` exists; false when it does not; other errors (permissions, I/O) are thrown. */
export async function pathExists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return false;
    throw err;
  }
}
