/**
 * Config validation with errors that say where and what: every zod schema of the project parses
 * through {@linkcode parseSchema}, whose one error lists each problem under its full path in the
 * config (`head.layers`, `visualTokenizers[1].depths`), the value found, and for an unknown field the
 * fields allowed there.
 * @module
 */

import { isRecord } from "./fields.ts";

/** One problem a schema found (zod's issue shape). */
export interface SchemaIssue {
  /** The path of the bad field inside the value parsed (e.g. ["codebookSizes", 2]). */
  readonly path: readonly PropertyKey[];
  /** What is wrong and what is allowed. */
  readonly message: string;
  /** A short code of the problem (zod's issue codes, e.g. "invalid_type", "unrecognized_keys"). */
  readonly code: string;
}

/** Anything with zod's `safeParse`: a zod schema, or a user's validator of the same shape. */
export interface SafeParser<T> {
  /** Parses `value`, filling defaults; never throws. */
  safeParse(
    value: unknown,
  ): { success: true; data: T } | { success: false; error: { issues: readonly SchemaIssue[] } };
}

/** Options of {@linkcode parseSchema}. */
export interface ParseSchemaOptions {
  /** Per top-level field, what it takes (added to that field's error as "; use one of ..."). */
  hints?: Record<string, string>;
}

/**
 * Parses `value` with `schema`. On failure throws one error with a line per issue:
 * `<path><field path>: <message> (got <value>)` ("unknown kind" for a top-level `kind`), or for
 * unknown keys `<path>.<key>: unknown field; allowed fields: ...`.
 */
export function parseSchema<T>(
  schema: SafeParser<T>,
  value: unknown,
  path: string,
  opts: ParseSchemaOptions = {},
): T {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  throw new Error(r.error.issues.map((issue) => formatIssue(schema, value, path, issue, opts)).join("\n"));
}

/** The path of a field inside a config: `head` + ["codebookSizes", 2] -> `head.codebookSizes[2]`. */
export function joinPath(path: string, segs: readonly PropertyKey[]): string {
  return path + segs.map((k) => (typeof k === "number" ? `[${k}]` : `.${String(k)}`)).join("");
}

/** A value as an error shows it: JSON, cut at 60 characters. */
export function describeValue(v: unknown): string {
  if (v === undefined) return "undefined";
  if (typeof v === "number" && !Number.isFinite(v)) return String(v); // JSON would say null
  let s: string;
  try {
    s = JSON.stringify(v) ?? String(v);
  } catch {
    s = String(v);
  }
  return s.length > 60 ? s.slice(0, 57) + "..." : s;
}

function formatIssue(
  schema: unknown,
  value: unknown,
  path: string,
  issue: SchemaIssue,
  opts: ParseSchemaOptions,
): string {
  const at = joinPath(path, issue.path);
  const keys = (issue as { keys?: unknown }).keys;
  if (issue.code === "unrecognized_keys" && Array.isArray(keys)) {
    const fields = Object.keys(shapeAt(schema, value, issue.path));
    return keys.map((k) =>
      `${at}.${k}: unknown field${fields.length ? `; allowed fields: ${fields.join(", ")}` : ""}`
    )
      .join("\n");
  }
  let got: unknown = value;
  for (const k of issue.path) got = isRecord(got) || Array.isArray(got) ? (got as never)[k] : undefined;
  const field = String(issue.path.at(-1) ?? "");
  const hint = issue.path.length === 1 && opts.hints?.[field] ? `; use one of ${opts.hints[field]}` : "";
  const message = issue.path.length === 1 && field === "kind" ? "unknown kind" : issue.message;
  const gotText = issue.code === "custom"
    ? ""
    : got === undefined
    ? " (missing)"
    : ` (got ${describeValue(got)})`;
  return `${at}: ${message}${gotText}${hint}`;
}

/**
 * The fields an object schema allows at `segs` inside `value`: through transforms, optionals, array
 * elements, and unions on `kind` (the option whose kind the value at that place has).
 */
function shapeAt(schema: unknown, value: unknown, segs: readonly PropertyKey[]): Record<string, unknown> {
  type Node = {
    shape?: Record<string, unknown>;
    options?: unknown[];
    element?: unknown;
    in?: unknown;
    unwrap?: () => unknown;
  };
  const open = (n: unknown, v: unknown): Node => {
    let s = (n ?? {}) as Node;
    for (let i = 0; i < 8 && !s.shape && !s.options && !s.element; i++) {
      if (s.in) s = s.in as Node;
      else if (s.unwrap) s = s.unwrap() as Node;
      else break;
    }
    if (!s.options) return s;
    const kind = isRecord(v) ? v.kind : undefined;
    return open(
      (s.options as Node[]).map((o) => open(o, v)).find((o) => {
        const k = o.shape?.kind as { value?: unknown; options?: unknown[] } | undefined;
        return k?.value === kind || k?.options?.includes(kind);
      }),
      v,
    );
  };
  let v = value;
  let s = open(schema, v);
  for (const k of segs) {
    v = isRecord(v) || Array.isArray(v) ? (v as never)[k] : undefined;
    s = open(typeof k === "number" ? s.element : s.shape?.[String(k)], v);
  }
  return s.shape ?? {};
}
