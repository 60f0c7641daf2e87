/**
 * Small field rules shared by the slot configs: a copy without undefined keys, and the rule that a
 * model slot gives exactly one of a folder to load and sizes for a random init.
 * @module
 */

/** A copy without the keys whose value is undefined (a spread of it never overwrites a default). */
export function stripUndefined<T extends object>(v: T): T {
  return Object.fromEntries(Object.entries(v).filter(([, x]) => x !== undefined)) as T;
}

/**
 * Exactly one of `path` (load; `folder` says what it holds, e.g. "a Hugging Face model folder") and
 * `config` (sizes for a random init) is given; `at` names the slot in errors.
 */
export function checkPathOrConfig(v: { path?: string; config?: unknown }, at: string, folder: string): void {
  const what = `path (${folder} to load)`;
  if (v.path !== undefined && v.config !== undefined) {
    throw new Error(`${at}: give either ${what} or config (sizes for a random init), not both`);
  }
  if (v.path === undefined && v.config === undefined) {
    throw new Error(`${at}: give ${what} or config (sizes for a random init)`);
  }
}

/** A plain object (not null, not an array). */
export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}
