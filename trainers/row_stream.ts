/**
 * The rows of a LLaVA data file as raw bytes, read chunk by chunk and split by data/json_rows.ts: the
 * top-level elements of a `.json` array ({@linkcode JsonArraySplitter}) or the lines of a `.jsonl` file
 * ({@linkcode JsonLinesSplitter}). Only the row being split is held beyond the current chunk, so memory
 * does not grow with the file (a 1 GB file is read in 1 MiB chunks). Rows are not parsed here: each
 * comes as its bytes, with its index, the line it starts on and its byte offset.
 *
 * ```ts ignore
 * for await (const row of streamRows("data/llava_v1_5_mix665k.json")) {
 *   JSON.parse(new TextDecoder().decode(row.bytes)); // row.index, row.line
 * }
 * ```
 * @module
 */

import { JsonArraySplitter, JsonLinesSplitter, type RawRow, type RowSplitter } from "../data/json_rows.ts";

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
