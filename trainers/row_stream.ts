/**
 * The rows of a LLaVA data file as raw bytes, read chunk by chunk: the top-level elements of a `.json`
 * array ({@linkcode JsonArraySplitter}) or the lines of a `.jsonl` file ({@linkcode JsonLinesSplitter}).
 * Only the row being split is held beyond the current chunk, so memory does not grow with the file
 * (a 1 GB file is read in 1 MiB chunks). Rows are not parsed here: each comes as its bytes, with its
 * index and the line it starts on.
 *
 * ```ts ignore
 * for await (const row of streamRows("data/llava_v1_5_mix665k.json")) {
 *   JSON.parse(new TextDecoder().decode(row.bytes)); // row.index, row.line
 * }
 * ```
 * @module
 */

/** One row of a data file, not yet parsed. */
export interface RawRow {
  /** 0-based: the position in the JSON array, or the line of a JSONL file (as `LlavaRow.index`). */
  index: number;
  /** The 1-based line of the file the row starts on. */
  line: number;
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
 * checked (brackets, strings, commas); an error names the file, the byte and the line, and the fix.
 * Strings may hold brackets, commas and escaped quotes; an element may span any number of chunks.
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

  /** A splitter of `file`'s bytes (`file` names it in errors). */
  constructor(file: string) {
    this.#file = file;
  }

  #bad(at: number, what: string): never {
    throw new Error(
      `${this.#file}: not valid JSON at byte ${at} (line ${this.#line}): ${what}; fix the file (a JSON array ` +
        `of rows)`,
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
    const open = this.#open;
    let start = state === INSIDE ? 0 : -1; // the current element's first byte in this chunk
    const bad = (at: number, what: string): never => {
      this.#line = line;
      return this.#bad(this.#offset + at, what);
    };
    const emit = (end: number) => {
      out.push({
        index: this.#index++,
        line: this.#startLine,
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
            i++;
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
          state = INSIDE;
          open.length = 0;
          scalar = inString = this.#escaped = false;
          if (c === OPEN_CURLY) open.push(CLOSE_CURLY);
          else if (c === OPEN_SQUARE) open.push(CLOSE_SQUARE);
          else if (c === QUOTE) inString = true;
          else {
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
    this.#scalar = scalar;
    this.#offset += n;
    return out;
  }

  end(): RawRow[] {
    if (this.#state === DONE) return [];
    const at = this.#offset;
    if (this.#state === START) this.#bad(at, "the file is empty");
    if (this.#state === INSIDE && this.#scalar) this.#bad(at, "the array is not closed");
    if (this.#state === INSIDE && this.#inString) this.#bad(at, "a string is not terminated");
    if (this.#state === INSIDE) this.#bad(at, "a row is not closed before the end of the file");
    return this.#bad(at, "the array is not closed");
  }
}

/**
 * Splits JSON lines, pushed in chunks of any size, into one row per line; blank lines are skipped but
 * counted (a row's index is its 0-based line). A UTF-8 BOM at the start is dropped.
 */
export class JsonLinesSplitter implements RowSplitter {
  #line = 0;
  #parts: Uint8Array[] = [];
  #first = true;

  push(chunk: Uint8Array): RawRow[] {
    if (this.#first && chunk.length > 0) {
      this.#first = false;
      if (chunk[0] === 0xef && chunk[1] === 0xbb && chunk[2] === 0xbf) chunk = chunk.subarray(3);
    }
    const out: RawRow[] = [];
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(NEWLINE, start);
      if (nl < 0) break;
      this.#take(joined(this.#parts, chunk.subarray(start, nl)), out);
      this.#parts = [];
      start = nl + 1;
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
    if (bytes.every(isWs)) return;
    out.push({ index: line, line: line + 1, bytes });
  }
}

/** Options of {@linkcode streamRows}. */
export interface StreamRowsOptions {
  /** Bytes read at a time (default 1 MiB). */
  chunkBytes?: number;
  /** Called after each chunk with the bytes read so far. */
  onBytes?: (bytes: number) => void;
}

/**
 * The rows of a LLaVA data file, read in chunks: the elements of a `.json` array or the lines of a
 * `.jsonl` file. A `.json` file whose structure is broken throws, naming the byte and the line.
 */
export async function* streamRows(file: string, opts: StreamRowsOptions = {}): AsyncGenerator<RawRow> {
  const size = opts.chunkBytes ?? 2 ** 20;
  if (!(Number.isInteger(size) && size > 0)) {
    throw new Error(`streamRows: chunkBytes must be a positive integer, got ${size}`);
  }
  let splitter: RowSplitter;
  if (file.endsWith(".jsonl")) splitter = new JsonLinesSplitter();
  else if (file.endsWith(".json")) splitter = new JsonArraySplitter(file);
  else {
    throw new Error(
      `${file}: a LLaVA data set must be a .json file (an array of rows) or .jsonl (one row per line)`,
    );
  }
  let f: Deno.FsFile;
  try {
    f = await Deno.open(file);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new Error(`${file}: data set file not found; check data paths in the config`);
    }
    throw new Error(`${file}: cannot read the data set file: ${(e as Error).message}`);
  }
  try {
    let read = 0;
    for (;;) {
      const buf = new Uint8Array(size);
      const n = await f.read(buf);
      if (n === null) break;
      read += n;
      const rows = splitter.push(buf.subarray(0, n));
      opts.onBytes?.(read);
      yield* rows;
    }
    yield* splitter.end();
  } finally {
    f.close();
  }
}
