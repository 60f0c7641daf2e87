/**
 * Splitting the bytes of a data file into rows: the top-level elements of a JSON array
 * ({@linkcode JsonArraySplitter}) or the lines of a JSON lines file ({@linkcode JsonLinesSplitter}).
 * The bytes are pushed in chunks of any size (a file read piece by piece, or a whole file held in
 * memory pushed once); only the row being split is held beyond the current chunk. Rows are not parsed
 * here: each comes as its bytes, with its index, the line it starts on and its byte offset.
 *
 * ```ts ignore
 * const splitter = new JsonArraySplitter("data/x.json");
 * const rows = [...splitter.push(bytes), ...splitter.end()];
 * JSON.parse(new TextDecoder().decode(rows[0].bytes)); // rows[0].index, .line, .offset
 * ```
 * @module
 */

/** One row of a data file, not yet parsed. */
export interface RawRow {
  /** 0-based: the position in the JSON array, or the line of a JSONL file (as `LlavaRow.index`). */
  index: number;
  /** The 1-based line of the file the row starts on. */
  line: number;
  /** The byte offset in the file of the row's first byte. */
  offset: number;
  /** The row's bytes (valid until the next row is taken). */
  bytes: Uint8Array;
}

/** Splits a stream of bytes into rows; {@linkcode JsonArraySplitter} and {@linkcode JsonLinesSplitter}. */
export interface RowSplitter {
  /** The rows that end in `chunk` (which follows the bytes pushed before), in order. */
  push(chunk: Uint8Array): RawRow[];
  /** The last row, when the file does not end with a newline (JSONL); throws when the file is cut short. */
  end(): RawRow[];
}

const [OPEN_SQUARE, CLOSE_SQUARE, OPEN_CURLY, CLOSE_CURLY, QUOTE, BACKSLASH, COMMA, NEWLINE] = [
  0x5b,
  0x5d,
  0x7b,
  0x7d,
  0x22,
  0x5c,
  0x2c,
  0x0a,
];

/** JSON whitespace: space, tab, newline, carriage return. */
const isWs = (b: number): boolean => b === 0x20 || b === 0x0a || b === 0x0d || b === 0x09;

/** The bytes of `parts` then `tail`, as one array. */
function joined(parts: Uint8Array[], tail: Uint8Array): Uint8Array {
  if (parts.length === 0) return tail;
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, tail.length));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  out.set(tail, at);
  return out;
}

/**
 * Inside a string, from byte `i` of `chunk` (`escaped`: the byte at `i` is escaped by a backslash that
 * ended the previous chunk): the index just past the closing quote; or, when the string does not end in
 * this chunk, -2 if its last byte is an escaping backslash, else -1.
 */
function stringEnd(chunk: Uint8Array, i: number, escaped: boolean): number {
  const n = chunk.length;
  if (escaped) i++;
  for (; i < n; i++) {
    const c = chunk[i];
    if (c === QUOTE) return i + 1;
    if (c === BACKSLASH) {
      if (++i === n) return -2;
    }
  }
  return -1;
}

// Where a JSON array splitter stands between two bytes.
const START = 0, FIRST = 1, BEFORE = 2, INSIDE = 3, AFTER = 4, DONE = 5;

/**
 * Splits a JSON array, pushed in chunks of any size, into its top-level elements. Only the structure is
 * checked (brackets, strings, commas); an error names the file, the byte and the line, and the fix:
 * `data/x.json: not valid JSON at byte 13 (line 1): expected "," or "]" after a row; fix the file (a
 * JSON array of rows)`. Strings may hold brackets, commas and escaped quotes; an element may span any
 * number of chunks. A whole file pushed at once is split without copying: each row's bytes are a view
 * of the pushed bytes.
 */
export class JsonArraySplitter implements RowSplitter {
  readonly #file: string;
  #state = START;
  /** Bytes read before the current chunk. */
  #offset = 0;
  /** The current line (1-based), counted outside strings (JSON strings hold no raw newline). */
  #line = 1;
  /** BOM bytes still to skip at the start. */
  #bom = 0;
  /** The closing brackets the current element expects, innermost last. */
  #open: number[] = [];
  #inString = false;
  /** The last byte of the previous chunk, inside a string, was an escaping backslash. */
  #escaped = false;
  /** The current element is a number, true, false or null. */
  #scalar = false;
  /** The bytes of the current element from earlier chunks. */
  #parts: Uint8Array[] = [];
  #index = 0;
  #startLine = 1;
  /** The byte offset of the current element's first byte. */
  #startOffset = 0;
  /** The byte offset of the opening quote of the string being read. */
  #stringOffset = 0;

  /** A splitter of `file`'s bytes (`file` names it in errors). */
  constructor(file: string) {
    this.#file = file;
  }

  #bad(at: number, line: number, what: string): never {
    throw new Error(
      `${this.#file}: not valid JSON at byte ${at} (line ${line}): ${what}; fix the file (a JSON array of rows)`,
    );
  }

  push(chunk: Uint8Array): RawRow[] {
    const out: RawRow[] = [];
    const n = chunk.length;
    let i = 0;
    if (this.#offset === 0 && this.#state === START && n >= 1 && chunk[0] === 0xef) this.#bom = 3;
    while (this.#bom > 0 && i < n) {
      i++;
      this.#bom--;
    }
    // The state lives in locals while the chunk is walked (the hot loop), and goes back at the end.
    let state = this.#state, line = this.#line, inString = this.#inString, scalar = this.#scalar;
    let stringOffset = this.#stringOffset;
    const open = this.#open, base = this.#offset;
    let start = state === INSIDE ? 0 : -1; // the current element's first byte in this chunk
    const bad = (at: number, what: string): never => this.#bad(base + at, line, what);
    const emit = (end: number) => {
      out.push({
        index: this.#index++,
        line: this.#startLine,
        offset: this.#startOffset,
        bytes: joined(this.#parts, chunk.subarray(start, end)),
      });
      this.#parts = [];
      state = AFTER;
    };
    while (i < n) {
      if (state === INSIDE) {
        if (inString) {
          const end = stringEnd(chunk, i, this.#escaped);
          if (end < 0) {
            this.#escaped = end === -2;
            i = n; // the string goes on in the next chunk
          } else {
            this.#escaped = false;
            inString = false;
            i = end;
            if (open.length === 0) emit(i); // the element was a string
          }
          continue;
        }
        if (scalar) {
          const c = chunk[i];
          if (isWs(c) || c === COMMA || c === CLOSE_SQUARE) emit(i);
          else i++;
          continue;
        }
        // Between the strings of an object or array: brackets, colons, commas, whitespace, numbers.
        for (; i < n; i++) {
          const c = chunk[i];
          if (c === QUOTE) {
            inString = true;
            stringOffset = base + i++;
            break;
          } else if (c === OPEN_CURLY) open.push(CLOSE_CURLY);
          else if (c === OPEN_SQUARE) open.push(CLOSE_SQUARE);
          else if (c === CLOSE_CURLY || c === CLOSE_SQUARE) {
            const want = open.pop();
            if (want !== c) {
              bad(i, `found "${String.fromCharCode(c)}" where "${String.fromCharCode(want!)}" was expected`);
            }
            if (open.length === 0) {
              emit(++i);
              break;
            }
          } else if (c === NEWLINE) line++;
        }
        continue;
      }
      const c = chunk[i];
      if (isWs(c)) {
        if (c === NEWLINE) line++;
        i++;
        continue;
      }
      switch (state) {
        case START:
          if (c !== OPEN_SQUARE) {
            bad(i, `expected "[" (a JSON array of rows); for one JSON object per line, name the file .jsonl`);
          }
          state = FIRST;
          break;
        case FIRST:
        case BEFORE:
          if (c === CLOSE_SQUARE && state === FIRST) {
            state = DONE;
            break;
          }
          if (c === COMMA || c === CLOSE_SQUARE) bad(i, "expected a row");
          start = i;
          this.#startLine = line;
          this.#startOffset = base + i;
          state = INSIDE;
          open.length = 0;
          scalar = inString = this.#escaped = false;
          if (c === OPEN_CURLY) open.push(CLOSE_CURLY);
          else if (c === OPEN_SQUARE) open.push(CLOSE_SQUARE);
          else if (c === QUOTE) {
            inString = true;
            stringOffset = base + i;
          } else {
            scalar = true;
            continue; // the scalar's first byte is read as part of it
          }
          break;
        case AFTER:
          if (c === COMMA) state = BEFORE;
          else if (c === CLOSE_SQUARE) state = DONE;
          else bad(i, 'expected "," or "]" after a row');
          break;
        default: // DONE
          bad(i, "unexpected text after the array");
      }
      i++;
    }
    if (state === INSIDE) this.#parts.push(chunk.slice(start)); // a copy: the chunk may be reused
    this.#state = state;
    this.#line = line;
    this.#inString = inString;
    this.#stringOffset = stringOffset;
    this.#scalar = scalar;
    this.#offset += n;
    return out;
  }

  /** Throws unless the array was closed: the error names where the unclosed string, row or array starts. */
  end(): RawRow[] {
    const state = this.#state, at = this.#offset, line = this.#line;
    if (state === DONE) return [];
    if (state === START) this.#bad(at, line, "the file is empty");
    if (state === INSIDE && this.#inString) {
      this.#bad(this.#stringOffset, line, "a string is not terminated"); // strings hold no raw newline
    }
    if (state === INSIDE && !this.#scalar) {
      this.#bad(this.#startOffset, this.#startLine, "this row is not closed before the end of the file");
    }
    return this.#bad(at, line, "the array is not closed");
  }
}

/**
 * Splits JSON lines, pushed in chunks of any size, into one row per line; blank lines are skipped but
 * counted (a row's index is its 0-based line). A UTF-8 BOM at the start is dropped.
 */
export class JsonLinesSplitter implements RowSplitter {
  #line = 0;
  #parts: Uint8Array[] = [];
  /** Bytes read before the current chunk. */
  #offset = 0;
  /** The byte offset of the current line's first byte. */
  #lineOffset = 0;

  push(chunk: Uint8Array): RawRow[] {
    const base = this.#offset;
    this.#offset += chunk.length;
    const out: RawRow[] = [];
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(NEWLINE, start);
      if (nl < 0) break;
      this.#take(joined(this.#parts, chunk.subarray(start, nl)), out);
      this.#parts = [];
      start = nl + 1;
      this.#lineOffset = base + start;
    }
    if (start < chunk.length) this.#parts.push(chunk.slice(start));
    return out;
  }

  end(): RawRow[] {
    const out: RawRow[] = [];
    if (this.#parts.length) this.#take(joined(this.#parts, new Uint8Array()), out);
    this.#parts = [];
    return out;
  }

  #take(bytes: Uint8Array, out: RawRow[]): void {
    const line = this.#line++;
    let offset = this.#lineOffset;
    if (line === 0 && bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) {
      bytes = bytes.subarray(3); // the UTF-8 BOM
      offset = 3;
    }
    if (bytes.every(isWs)) return;
    out.push({ index: line, line: line + 1, offset, bytes });
  }
}
