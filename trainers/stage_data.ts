/**
 * One stage's data as micro-batches: the LLaVA rows of its file, a seeded order per epoch, each row
 * tokenized with the stage's template and its image decoded and preprocessed for the encoder, packed
 * by `collate` into an `AsvrBatch`. The next micro-batches load while the GPU works on the current one
 * (`data.prefetch` of them). A bad row (malformed, an unreadable image, an image path leading outside
 * the image root, a sequence whose image cannot fit) stops with an error naming the file, the row and
 * its id, or with `data.onError: "skip"` is left out and counted.
 * @module
 */

import { dirname } from "node:path";
import { rng, shuffleInPlace } from "../core/random.ts";
import type { AsvrBatch, AsvrModel } from "../models/asvr_model.ts";
import type { TextTokenizer } from "../tokenizers/text_tokenizer.ts";
import { type LlavaRow, readLlavaRows } from "../data/llava_json.ts";
import { RowLedger, type SkipKind } from "../data/row_ledger.ts";
import { ImagePathError, ImageRoot } from "../data/image_path.ts";
import { type TokenizedRow, tokenizeRow } from "../data/tokenize.ts";
import { collate } from "../data/collate.ts";
import { groupByLength, rowLengthEstimate } from "../data/length_groups.ts";
import { ImagePrefetcher, type ImageResult } from "../data/prefetch.ts";
import { type ImagePreprocessConfig, parseImagePreprocessConfig } from "../data/preprocess.ts";
import type { RunConfig, StageConfig } from "./config.ts";
import type { VisionConfig } from "../encoders/config.ts";
import { imageNorm } from "../encoders/image_norm.ts";
import { keepsClsRow } from "../encoders/slot_config.ts";

/** Options of {@linkcode StageData.open}. */
export interface StageDataOptions {
  /** Seeds the order of each epoch (with the epoch). */
  seed: number;
}

/** One loaded row, or why it was left out. */
type Loaded =
  | { row: TokenizedRow; pixels: Float32Array | null; index: number }
  | { bad: string; kind: SkipKind; index: number };

/** A stage's rows as micro-batches in a seeded order. */
export class StageData {
  /** The rows left out, cut and re-decoded so far, with the stage's limits. */
  readonly ledger: RowLedger;
  #cfg: RunConfig;
  #stage: StageConfig;
  #rows: LlavaRow[];
  #tokenizer: TextTokenizer;
  #image: ImagePreprocessConfig;
  #imageTokens: number;
  /** The folder rows' image paths are relative to, and must stay inside. */
  #imageRoot: ImageRoot;
  #seed: number;
  #orders = new Map<number, Int32Array>();
  /** Rows delivered in batches, per epoch. */
  #usedInEpoch = new Map<number, number>();
  /** Each row's length estimate, for `data.groupByLength` (computed on first use). */
  #lengths: number[] | null = null;
  #pending = new Map<string, Promise<Loaded[]>>();
  /** Decodes and preprocesses images in a worker, in the order they are asked for. */
  #images: ImagePrefetcher;
  /** The results of the images asked for so far, taken from the prefetcher in order. */
  #taken: Promise<unknown> = Promise.resolve();

  private constructor(
    cfg: RunConfig,
    stage: StageConfig,
    rows: LlavaRow[],
    ledger: RowLedger,
    tokenizer: TextTokenizer,
    image: ImagePreprocessConfig,
    imageTokens: number,
    seed: number,
  ) {
    this.#cfg = cfg;
    this.#stage = stage;
    this.#rows = rows;
    this.ledger = ledger;
    this.#tokenizer = tokenizer;
    this.#image = image;
    this.#imageTokens = imageTokens;
    this.#seed = seed;
    this.#imageRoot = new ImageRoot(stage.imageRoot ?? dirname(stage.data), {
      followSymlinks: cfg.data.followSymlinks,
      option: "data.followSymlinks",
    });
    this.#images = new ImagePrefetcher([], { lookahead: (cfg.data.prefetch + 1) * stage.batchSize });
  }

  /** Reads the stage's data file and sets up preprocessing for the model's encoder. */
  static async open(
    cfg: RunConfig,
    stage: StageConfig,
    tokenizer: TextTokenizer,
    model: AsvrModel,
    opts: StageDataOptions,
  ): Promise<StageData> {
    const { rows, skipped, invalidUtf8 } = await readLlavaRows(stage.data, { onError: cfg.data.onError });
    const ledger = new RowLedger(stage.data, rows.length + skipped.length, cfg.data.maxSkipShare);
    if (rows.length === 0) throw new Error(`${stage.data}: no rows; give the stage a data file with rows`);
    for (const s of skipped) ledger.skip(s.index, "malformed", `${stage.data} row ${s.index}: ${s.reason}`);
    ledger.markInvalidUtf8(invalidUtf8);
    const { image, imageTokens: N } = encoderInput(
      cfg,
      model.encoder,
      stage.imageMode,
      `stage ${stage.name}`,
    );
    return new StageData(cfg, stage, rows, ledger, tokenizer, image, N, opts.seed);
  }

  /** Distinct rows left out so far (bad rows in the file, and rows that failed to load). */
  get skipped(): number {
    return this.ledger.skipped;
  }

  /** The usable rows. */
  get rows(): number {
    return this.#rows.length;
  }

  /** Rows per epoch (every usable row once). */
  rowsPerEpoch(_epoch: number): number {
    return this.#rows.length;
  }

  /**
   * The micro-batch of `size` rows starting at position `start` of epoch `epoch`'s order, or null when
   * every one of its rows was bad (and skipped). Starts loading the next `data.prefetch` micro-batches,
   * `stride` rows apart (default `size`; a data-parallel rank's next micro-batch is `size` x ranks on).
   */
  async batch(epoch: number, start: number, size: number, stride = size): Promise<AsvrBatch | null> {
    const taken = this.#ensure(epoch, start, size);
    this.#pending.delete(`${epoch}:${start}:${size}`);
    for (let k = 1; k <= this.#cfg.data.prefetch; k++) {
      const s = start + k * stride;
      if (s + size <= this.#rows.length) this.#ensure(epoch, s, size);
    }
    const loaded = await taken;
    const good: { row: TokenizedRow; pixels: Float32Array | null }[] = [];
    for (const l of loaded) {
      if ("bad" in l) {
        if (this.#cfg.data.onError === "error") throw new Error(l.bad);
        this.ledger.skip(l.index, l.kind, l.bad);
      } else {
        if (l.row.cutFrom !== undefined) this.ledger.markCut(l.index);
        if (l.row.textMasked) this.ledger.markTextMasked(l.index);
        good.push(l);
      }
    }
    const used = (this.#usedInEpoch.get(epoch) ?? 0) + good.length;
    this.#usedInEpoch.set(epoch, used);
    if (used === 0 && start + 2 * size > this.#rows.length) {
      // The epoch's last micro-batch, and not one row of the epoch could be used.
      throw new Error(
        `${this.#stage.data}: no usable rows: every row of epoch ${epoch + 1} was left out ` +
          `(${this.ledger.summary()}); fix the data`,
      );
    }
    if (good.length === 0) return null;
    const S = this.#image.size;
    const anyImage = good.some((g) => g.pixels);
    return collate(good.map((g) => g.row), anyImage ? good.map((g) => g.pixels) : null, {
      padId: this.#tokenizer.unkId ?? 0,
      imageShape: [3, S, S],
    });
  }

  /** Stops loading ahead and ends the image worker. */
  close(): void {
    this.#pending.clear();
    this.#images.close();
  }

  /** An image's pixels, from the worker (jobs are pushed and taken in the same order). */
  #fetchImage(path: string): Promise<ImageResult> {
    this.#images.push({ path, cfg: this.#image, maxBytes: this.#cfg.data.maxImageBytes });
    const next = this.#taken.then(() => this.#images.next());
    this.#taken = next.catch(() => {});
    return next;
  }

  /** The loading of a micro-batch's rows, started now unless already under way. */
  #ensure(epoch: number, start: number, size: number): Promise<Loaded[]> {
    const key = `${epoch}:${start}:${size}`;
    let p = this.#pending.get(key);
    if (!p) {
      const idx = Array.from(this.#order(epoch).subarray(start, start + size));
      p = Promise.all(idx.map((i) => this.#loadRow(this.#rows[i])));
      this.#pending.set(key, p);
    }
    return p;
  }

  async #loadRow(row: LlavaRow): Promise<Loaded> {
    const where = `${row.file} row ${row.index} (id "${row.id}")`;
    let tokens: TokenizedRow;
    try {
      tokens = tokenizeRow(row, {
        template: this.#stage.template,
        tokenizer: this.#tokenizer,
        imageTokens: this.#imageTokens,
        maxLength: this.#cfg.data.maxLength,
      });
    } catch (err) {
      return { bad: (err as Error).message, kind: "text", index: row.index };
    }
    if (!row.image) return { row: tokens, pixels: null, index: row.index };
    let path: string;
    try {
      path = await this.#imageRoot.resolve(row.image);
    } catch (err) {
      const kind = err instanceof ImagePathError ? "path" : "image";
      return {
        bad: `${where}: ${(err as Error).message}, or set data.onError: "skip"`,
        kind,
        index: row.index,
      };
    }
    let r: ImageResult;
    try {
      r = await this.#fetchImage(path);
    } catch (err) {
      return {
        bad: `${where}: the image worker failed: ${(err as Error).message}`,
        kind: "image",
        index: row.index,
      };
    }
    if (!r.ok) {
      return {
        bad: `${where}: ${r.error}; fix the image or set data.onError: "skip"`,
        kind: "image",
        index: row.index,
      };
    }
    return { row: tokens, pixels: r.pixels, index: row.index };
  }

  /**
   * Epoch `epoch`'s order of the rows: a seeded shuffle, or file order with `data.shuffle: false`; then,
   * with `data.groupByLength`, rearranged into micro-batches of rows of similar length.
   */
  #order(epoch: number): Int32Array {
    let o = this.#orders.get(epoch);
    if (o) return o;
    o = Int32Array.from(this.#rows.keys());
    const r = rng(this.#seed * 7919 + epoch);
    if (this.#cfg.data.shuffle) shuffleInPlace(o, r);
    if (this.#cfg.data.groupByLength) {
      this.#lengths ??= this.#rows.map((row) => rowLengthEstimate(row, this.#imageTokens));
      o = groupByLength(o, this.#lengths, this.#stage.batchSize, r);
    }
    this.#orders.set(epoch, o);
    return o;
  }
}

/**
 * How images reach the model's encoder: the preprocessing (size, squaring `mode`, the encoder's
 * mean/std, a fill of the mean colour for "pad") and N, the image positions per row.
 */
export function encoderInput(
  cfg: RunConfig,
  enc: AsvrModel["encoder"] | { cfg: VisionConfig; numPatches: number },
  mode: ImagePreprocessConfig["mode"],
  where: string,
): { image: ImagePreprocessConfig; imageTokens: number } {
  if (!("numPatches" in enc)) {
    throw new Error(
      `${where}: images need a GPU vision encoder (siglip or clip); an ONNX encoder is not supported here`,
    );
  }
  const norm = imageNorm(enc.cfg);
  const fill = norm.mean.map((m) => Math.floor(m * 255)) as [number, number, number];
  const image = parseImagePreprocessConfig({
    size: cfg.data.imageSize ?? enc.cfg.imageSize,
    mode,
    fill,
    mean: norm.mean,
    std: norm.std,
  }, "data");
  return { image, imageTokens: enc.numPatches + (keepsClsRow(cfg.encoder) ? 1 : 0) };
}
