/**
 * Reading JSON files (model configs, sharded-checkpoint indexes) with errors that name the file,
 * what it should be, and where a syntax error sits.
 * @module
 */

/**
 * Reads and parses a JSON file. `what` says what the file should be (e.g. "the model's
 * config.json"); it appears in the errors: a missing file names the path and what belongs there,
 * bad JSON names the file, the line and column.
 *
 * ```ts ignore
 * const cfg = await readJsonFile("models/vicuna/config.json", "the LLM's Hugging Face config.json");
 * ```
 */
export async function readJsonFile(path: string, what: string): Promise<unknown> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      throw new Error(`${path}: file not found; it should be ${what}`);
    }
    if (err instanceof Deno.errors.IsADirectory) {
      throw new Error(`${path}: is a directory; it should be a file: ${what}`);
    }
    throw new Error(`${path}: cannot read ${what}: ${(err as Error).message}`);
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new Error(`${path}: ${what} is not valid UTF-8 text`);
  }
  return parseJsonText(text, `${path} (${what})`);
}

/**
 * Parses JSON text; a syntax error names `source`, the line and column (1-based) and the text there.
 * Exported for other readers of JSON (e.g. headers embedded in binary files).
 */
export function parseJsonText(text: string, source: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    const found = findJsonError(text);
    if (!found) throw new Error(`${source}: invalid JSON: ${(err as Error).message}`);
    const { line, column } = lineColumn(text, found.pos);
    const near = JSON.stringify(text.slice(Math.max(0, found.pos - 20), found.pos + 20));
    throw new Error(
      `${source}: invalid JSON at line ${line}, column ${column}: ${found.problem} (near ${near})`,
    );
  }
}

/** 1-based line and column of character offset `pos` in `text`. */
function lineColumn(text: string, pos: number): { line: number; column: number } {
  let line = 1, start = 0;
  for (let i = 0; i < pos && i < text.length; i++) {
    if (text.charCodeAt(i) === 10) {
      line++;
      start = i + 1;
    }
  }
  return { line, column: pos - start + 1 };
}

/**
 * Locates the first syntax error of `text` (a small JSON scanner: V8's messages do not always give
 * a position). Returns null when the scanner finds none.
 */
function findJsonError(text: string): { pos: number; problem: string } | null {
  let i = 0;
  const fail = (problem: string): never => {
    throw { pos: i, problem };
  };
  const ws = () => {
    while (i < text.length && " \t\n\r".includes(text[i])) i++;
  };
  const describe =
    () => (i >= text.length ? "unexpected end of input" : `unexpected ${JSON.stringify(text[i])}`);
  const literal = (word: string) => {
    if (text.startsWith(word, i)) i += word.length;
    else fail(describe());
  };
  const string = () => {
    i++; // opening quote
    while (i < text.length && text[i] !== '"') {
      const c = text.charCodeAt(i);
      if (c < 0x20) fail("control character inside a string");
      if (text[i] === "\\") {
        i++;
        if (text[i] === "u") {
          if (!/^[0-9a-fA-F]{4}$/.test(text.slice(i + 1, i + 5))) fail("bad \\u escape");
          i += 5;
        } else if (i < text.length && '"\\/bfnrt'.includes(text[i])) i++;
        else fail("bad escape in a string");
      } else i++;
    }
    if (i >= text.length) fail("unterminated string");
    i++;
  };
  const number = () => {
    const m = /^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/.exec(text.slice(i, i + 400));
    if (!m || m[0] === "" || m[0] === "-") fail(describe());
    i += m![0].length;
  };
  const value = (depth: number): void => {
    if (depth > 2000) fail("nesting too deep");
    ws();
    const c = text[i];
    if (c === "{") {
      i++;
      ws();
      if (text[i] === "}") {
        i++;
        return;
      }
      for (;;) {
        ws();
        if (text[i] !== '"') fail(`${describe()}, expected a property name in double quotes`);
        string();
        ws();
        if (text[i] !== ":") fail(`${describe()}, expected ':'`);
        i++;
        value(depth + 1);
        ws();
        if (text[i] === ",") {
          i++;
          continue;
        }
        if (text[i] === "}") {
          i++;
          return;
        }
        fail(`${describe()}, expected ',' or '}'`);
      }
    } else if (c === "[") {
      i++;
      ws();
      if (text[i] === "]") {
        i++;
        return;
      }
      for (;;) {
        value(depth + 1);
        ws();
        if (text[i] === ",") {
          i++;
          continue;
        }
        if (text[i] === "]") {
          i++;
          return;
        }
        fail(`${describe()}, expected ',' or ']'`);
      }
    } else if (c === '"') string();
    else if (c === "t") literal("true");
    else if (c === "f") literal("false");
    else if (c === "n") literal("null");
    else if (c === "-" || (c >= "0" && c <= "9")) number();
    else fail(`${describe()}, expected a value`);
  };
  try {
    value(0);
    ws();
    if (i < text.length) fail(`${describe()} after the end of the JSON value`);
    return null;
  } catch (e) {
    if (e && typeof e === "object" && "pos" in e) return e as { pos: number; problem: string };
    throw e;
  }
}
