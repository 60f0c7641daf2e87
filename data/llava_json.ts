/**
 * LLaVA conversation data sets: reading `.json` (an array of rows) and `.jsonl` (one row per line)
 * files of rows `{"id", "image"?, "conversations": [{"from": "human" | "gpt", "value"}]}`, checking
 * each row, and putting the `<image>` marker where the templates expect it.
 *
 * ```ts ignore
 * import { readLlavaRows } from "@asvr/asvr/data";
 * const { rows, skipped } = await readLlavaRows("data/blip_laion_cc_sbu_558k.json", { onError: "skip" });
 * rows[0].conversations[0].value; // "<image>\n..."
 * ```
 *
 * A `.json` file is split into its top-level rows on the bytes ({@linkcode JsonArraySplitter}) before
 * any row is parsed, so files larger than the longest string JavaScript can hold (~512 MiB, e.g.
 * `llava_v1_5_mix665k.json`) read as well as small ones.
 * @module
 */

import { z } from "zod";
import { parseJsonText } from "../io/json.ts";
import { JsonArraySplitter, JsonLinesSplitter } from "./json_rows.ts";

/** The text marker of the image in a conversation (LLaVA's `DEFAULT_IMAGE_TOKEN`). */
export const IMAGE_MARKER = "<image>";

/** One turn of a conversation: the user's ("human") or the assistant's ("gpt"). */
export interface LlavaTurn {
  /** Who speaks. */
  from: "human" | "gpt";
  /** What is said; the first human turn of an image row starts with `<image>\n` after reading. */
  value: string;
}

/** A checked row of a LLaVA data set. */
export interface LlavaRow {
  /** The file the row came from (for error messages). */
  file: string;
  /** The row's index in the file: 0-based position in the JSON array, or 0-based line of a JSONL file. */
  index: number;
  /** The row's id (numbers become strings). */
  id: string;
  /** The image's path relative to the data set's image folder; absent for a text-only row. */
  image?: string;
  /** The turns, alternating human, gpt, ..., ending with gpt. */
  conversations: LlavaTurn[];
}

/** A row left out in `onError: "skip"` mode. */
export interface SkippedRow {
  /** The row's index (as {@linkcode LlavaRow.index}). */
  index: number;
  /** The row's id, when it had a usable one. */
  id: string | undefined;
  /** Why it was left out. */
  reason: string;
}

/** What to do with a bad row: stop with its error, or leave it out and list it. */
export type OnRowError = "error" | "skip";

/** Every {@linkcode OnRowError}. */
export const ON_ROW_ERRORS: readonly OnRowError[] = ["error", "skip"];

const optionsSchema = z.strictObject({ onError: z.enum(ON_ROW_ERRORS).default("error") });

/** Options of {@linkcode readLlavaRows}. */
export interface ReadLlavaOptions {
  /** "error" (default): the first bad row throws a {@linkcode DataRowError}; "skip": bad rows are listed. */
  onError?: OnRowError;
}

/** What {@linkcode readLlavaRows} returns. */
export interface LlavaRows {
  /** The good rows, in file order, each with its original index. */
  rows: LlavaRow[];
  /** The rows left out (only with `onError: "skip"`). */
  skipped: SkippedRow[];
  /**
   * The indices of the rows kept whose text held bytes that are not UTF-8, each replaced by U+FFFD
   * (as Python's `errors="replace"` reads them), in file order.
   */
  invalidUtf8: number[];
}

/** Decodes a row's bytes, replacing bytes that are not UTF-8 by U+FFFD; `invalid` says if any were. */
function decodeRow(bytes: Uint8Array): { text: string; invalid: boolean } {
  const text = LENIENT.decode(bytes);
  // Only a row holding U+FFFD is checked again (a literal U+FFFD is valid UTF-8).
  if (!text.includes("\uFFFD")) return { text, invalid: false };
  try {
    STRICT.decode(bytes);
    return { text, invalid: false };
  } catch {
    return { text, invalid: true };
  }
}

const LENIENT = new TextDecoder();
const STRICT = new TextDecoder("utf-8", { fatal: true });

/** The fix every row error suggests unless it names a better one. */
const ROW_FIX = 'fix the row or set data.onError: "skip"';

/**
 * A bad row of a data set, or a row that cannot be turned into a training sequence. The message
 * names the file, the row's index and id, what is wrong and the fix:
 * `data/x.json row 17 (id "abc"): conversations is empty; fix the row or set data.onError: "skip"`.
 */
export class DataRowError extends Error {
  /** The data set file. */
  readonly file: string;
  /** The row's index (0-based array position, or 0-based JSONL line). */
  readonly index: number;
  /** The row's id, when it had a usable one. */
  readonly id: string | undefined;
  /** What is wrong, without the location and the fix. */
  readonly reason: string;

  /** `fix` replaces the default advice (fix the row, or skip bad rows). */
  constructor(file: string, index: number, id: string | undefined, reason: string, fix: string = ROW_FIX) {
    super(
      `${file} row ${index} (${id === undefined ? "no id" : `id ${JSON.stringify(id)}`}): ${reason}; ${fix}`,
    );
    this.name = "DataRowError";
    this.file = file;
    this.index = index;
    this.id = id;
    this.reason = reason;
  }
}

/** A JSON type name for messages. */
function jsonType(v: unknown): string {
  return v === null ? "null" : Array.isArray(v) ? "an array" : typeof v;
}

/** The number of `<image>` markers in `s`. */
function countMarkers(s: string): number {
  return s.split(IMAGE_MARKER).length - 1;
}

/**
 * `value` with its `<image>` marker (if any) taken out and put at its start, followed by a newline,
 * the rest stripped of surrounding whitespace (as the reference's `preprocess_multimodal` does). A
 * turn that is only the marker becomes `<image>`.
 */
function markerFirst(value: string): string {
  const rest = value.replace(IMAGE_MARKER, "").trim();
  return rest === "" ? IMAGE_MARKER : `${IMAGE_MARKER}\n${rest}`;
}

/**
 * Checks one parsed row and returns it as a {@linkcode LlavaRow}; throws a {@linkcode DataRowError}
 * naming `file`, `index` and the row's id.
 *
 * Checks: an object with an id (string or number); `image`, when present, a non-empty string;
 * `conversations` a non-empty array of `{from, value}` turns alternating human, gpt, ... and ending with
 * gpt (an unanswered question trains nothing); string values; non-empty gpt turns; at most one
 * `<image>` marker, only in a row with an image and only in a human turn.
 *
 * In an image row the marker moves to the start of its turn (`<image>\n` + the rest, stripped), and a
 * row without a marker gets one at the start of its first human turn.
 */
export function parseLlavaRow(json: unknown, file: string, index: number): LlavaRow {
  const fail = (id: string | undefined, reason: string): never => {
    throw new DataRowError(file, index, id, reason);
  };
  if (json === null || typeof json !== "object" || Array.isArray(json)) {
    return fail(undefined, `a row must be a JSON object, got ${jsonType(json)}`);
  }
  const o = json as Record<string, unknown>;
  let id: string | undefined;
  if (typeof o.id === "string") id = o.id;
  else if (typeof o.id === "number" && Number.isFinite(o.id)) id = String(o.id);
  else if (o.id === undefined) fail(undefined, 'field "id" is missing');
  else fail(undefined, `field "id" must be a string or a number, got ${jsonType(o.id)}`);

  if (o.image !== undefined && (typeof o.image !== "string" || o.image === "")) {
    fail(
      id,
      `field "image" must be a non-empty path string, got ${
        typeof o.image === "string" ? "an empty string" : jsonType(o.image)
      } (leave the field out for a text-only row)`,
    );
  }
  const image = o.image as string | undefined;

  const conv = o.conversations;
  if (conv === undefined) fail(id, 'field "conversations" is missing');
  if (!Array.isArray(conv)) return fail(id, `conversations must be an array, got ${jsonType(conv)}`);
  if (conv.length === 0) fail(id, "conversations is empty");
  const turns: LlavaTurn[] = conv.map((t: unknown, j: number) => {
    if (t === null || typeof t !== "object" || Array.isArray(t)) {
      return fail(id, `conversations[${j}] must be an object {"from", "value"}, got ${jsonType(t)}`);
    }
    const { from, value } = t as Record<string, unknown>;
    const expected = j % 2 === 0 ? "human" : "gpt";
    if (from !== "human" && from !== "gpt") {
      fail(id, `conversations[${j}].from must be "human" or "gpt", got ${JSON.stringify(from) ?? "nothing"}`);
    }
    if (from !== expected) {
      fail(
        id,
        `conversations[${j}].from is "${from}" but turns must alternate human, gpt, ... starting with human`,
      );
    }
    if (typeof value !== "string") {
      fail(id, `conversations[${j}].value must be a string, got ${jsonType(value)}`);
    }
    if (from === "gpt" && (value as string).trim() === "") fail(id, `conversations[${j}] (gpt) is empty`);
    return { from: from as "human" | "gpt", value: value as string };
  });
  if (turns.length % 2 === 1) {
    fail(
      id,
      `the last turn (conversations[${turns.length - 1}]) is from human; a row must end with a gpt answer`,
    );
  }

  const marked = turns.flatMap((t, j) => (countMarkers(t.value) > 0 ? [j] : []));
  const markers = turns.reduce((n, t) => n + countMarkers(t.value), 0);
  if (markers > 1) {
    fail(
      id,
      `the ${IMAGE_MARKER} marker appears ${markers} times (in conversations[${
        marked.join("], [")
      }]); keep one`,
    );
  }
  if (markers === 1 && image === undefined) {
    fail(id, `conversations[${marked[0]}] has the ${IMAGE_MARKER} marker but the row has no "image"`);
  }
  if (markers === 1 && turns[marked[0]].from === "gpt") {
    fail(
      id,
      `the ${IMAGE_MARKER} marker is in conversations[${marked[0]}], a gpt turn; move it to a human turn`,
    );
  }
  if (image !== undefined) {
    const j = markers === 1 ? marked[0] : 0;
    turns[j] = { from: "human", value: markerFirst(turns[j].value) };
  }
  return image === undefined ? { file, index, id: id!, conversations: turns } : {
    file,
    index,
    id: id!,
    image,
    conversations: turns,
  };
}

/**
 * The rows of a JSON array ({@linkcode JsonArraySplitter}, the whole file pushed at once), all parsed
 * before any is checked, so that a file that is not valid JSON fails as a whole; a syntax error names
 * the file, the line and the column.
 */
function arrayRows(bytes: Uint8Array, file: string): [unknown, boolean][] {
  const splitter = new JsonArraySplitter(file);
  const raw = splitter.push(bytes);
  raw.push(...splitter.end());
  return raw.map(({ bytes: row, line, offset }) => {
    const { text, invalid } = decodeRow(row);
    try {
      return [JSON.parse(text), invalid];
    } catch {
      // Pad with whitespace to the row's place in the file, so the error's line and column are the file's.
      const lineStart = offset === 0 ? 0 : bytes.lastIndexOf(0x0a, offset - 1) + 1;
      const column = LENIENT.decode(bytes.subarray(lineStart, offset)).length + 1;
      return [parseJsonText("\n".repeat(line - 1) + " ".repeat(column - 1) + text, file), invalid];
    }
  });
}

/**
 * The rows of a JSON lines file ({@linkcode JsonLinesSplitter}): [line index, parsed row or the parse
 * error, whether bytes that are not UTF-8 were replaced]. Blank lines are skipped.
 */
function* lineRows(bytes: Uint8Array): Generator<[number, unknown, Error | undefined, boolean]> {
  const splitter = new JsonLinesSplitter();
  const raw = splitter.push(bytes);
  raw.push(...splitter.end());
  for (const { index, bytes: row } of raw) {
    const { text, invalid } = decodeRow(row);
    try {
      yield [index, JSON.parse(text), undefined, invalid];
    } catch (e) {
      yield [index, undefined, e as Error, invalid];
    }
  }
}

/**
 * Parses the bytes of a LLaVA data set file: a JSON array when `file` ends with `.json`, JSON lines
 * when it ends with `.jsonl` (`file` also names the rows in errors). A `.json` file that is not valid
 * JSON fails as a whole (file, line, column); a bad row, or a `.jsonl` line that is not valid JSON,
 * throws its {@linkcode DataRowError}, or with `onError: "skip"` is left out and listed.
 */
export function parseLlavaRows(bytes: Uint8Array, file: string, options: ReadLlavaOptions = {}): LlavaRows {
  const parsed = optionsSchema.safeParse(options);
  if (!parsed.success) {
    throw new Error(
      `parseLlavaRows(${file}): options must be { onError?: "error" | "skip" }, got ${
        JSON.stringify(options)
      }`,
    );
  }
  const { onError } = parsed.data;
  const rows: LlavaRow[] = [];
  const skipped: SkippedRow[] = [];
  const invalidUtf8: number[] = [];
  const add = (index: number, json: unknown, invalid: boolean, parseError?: Error) => {
    try {
      if (parseError) {
        throw new DataRowError(file, index, undefined, `not valid JSON (${parseError.message})`);
      }
      rows.push(parseLlavaRow(json, file, index));
      if (invalid) invalidUtf8.push(index);
    } catch (e) {
      if (!(e instanceof DataRowError) || onError === "error") throw e;
      skipped.push({ index: e.index, id: e.id, reason: e.reason });
    }
  };
  if (file.endsWith(".jsonl")) {
    for (const [index, json, err, invalid] of lineRows(bytes)) add(index, json, invalid, err);
  } else if (file.endsWith(".json")) {
    arrayRows(bytes, file).forEach(([json, invalid], index) => add(index, json, invalid));
  } else {
    throw new Error(
      `${file}: a LLaVA data set must be a .json file (an array of rows) or .jsonl (one row per line)`,
    );
  }
  return { rows, skipped, invalidUtf8 };
}

/**
 * Reads a LLaVA data set file (`.json`: an array of rows; `.jsonl`: one row per line) and checks
 * every row ({@linkcode parseLlavaRow}). With `onError: "error"` (default) the first bad row throws a
 * {@linkcode DataRowError}; with `"skip"` bad rows are left out and listed in `skipped`.
 */
export async function readLlavaRows(file: string, options: ReadLlavaOptions = {}): Promise<LlavaRows> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(file);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new Error(`${file}: data set file not found; check data paths in the config`);
    }
    throw new Error(`${file}: cannot read the data set file: ${(e as Error).message}`);
  }
  return parseLlavaRows(bytes, file, options);
}
