/**
 * Validation of small config objects given as data, with errors that name the field and what it takes.
 * @module
 */

import type { z } from "zod";

/**
 * Validates `value` against `schema` (a strict zod object whose defaults fill what is left out) and
 * returns the parsed config. `want` says, per field, what it takes; `what` names the config in errors:
 * `path.key: unknown <what> field; the fields are ...`, `path: the <what> config must be an object, got
 * ...`, or `path.field is <value>; it must be <want[field]>` (the first problem only).
 */
export function parseFields<S extends z.ZodType>(
  schema: S,
  value: unknown,
  path: string,
  what: string,
  want: Record<string, string>,
): z.output<S> {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  if (issue.code === "unrecognized_keys") {
    const keys = issue.keys.map((k) => `${path}.${k}`).join(", ");
    throw new Error(`${keys}: unknown ${what} field; the fields are ${Object.keys(want).join(", ")}`);
  }
  if (issue.path.length === 0) {
    throw new Error(`${path}: the ${what} config must be an object, got ${JSON.stringify(value)}`);
  }
  const field = String(issue.path[0]);
  const raw = (value as Record<string, unknown>)[field];
  const got = typeof raw === "number" ? String(raw) : JSON.stringify(raw);
  throw new Error(`${path}.${field} is ${got}; it must be ${want[field] ?? issue.message}`);
}
