/**
 * The account of one data file's rows over a stage: the rows left out (by kind, each row once however
 * many epochs meet it), the rows cut to `maxLength` and the rows whose text held bytes that are not
 * UTF-8. It stops the stage when no row is usable, or when the rows left out pass a share of the file
 * (`data.maxSkipShare`), and gives the stage's summary line and its counts as metrics fields.
 *
 * ```ts ignore
 * const ledger = new RowLedger("data/llava_v1_5_mix665k.json", 665298, 0.01);
 * ledger.skip(17, "image", 'data/x.json row 17 (id "a"): images/1.jpg: image file not found');
 * ledger.summary(); // "1 of 665298 rows skipped (0.00015%, limit 1%): 1 image; first: data/x.json row 17 ..."
 * ledger.counts(); // { rows_skipped: 1, rows_skipped_malformed: 0, rows_skipped_text: 0, rows_skipped_image: 1, ... }
 * ```
 * @module
 */

/**
 * Why a row was left out: a malformed row, text that cannot become a sequence, its image (missing,
 * unreadable, oversized, not an image), or its image path leading outside the image root.
 */
export type SkipKind = "malformed" | "text" | "image" | "path";

/** Every {@linkcode SkipKind}. */
export const SKIP_KINDS: readonly SkipKind[] = ["malformed", "text", "image", "path"];

/** How many rows the summary quotes. */
const QUOTED = 3;

/** Rows left out, cut and re-decoded in one data file, with the limits of a stage. */
export class RowLedger {
  readonly #file: string;
  readonly #total: number;
  readonly #maxShare: number;
  readonly #skipped = new Map<number, { kind: SkipKind; why: string }>();
  readonly #cut = new Set<number>();
  readonly #textMasked = new Set<number>();
  readonly #invalidUtf8 = new Set<number>();

  /**
   * `file` names the data in errors; `totalRows` counts every row of the file (kept and malformed);
   * `maxSkipShare` in [0, 1] is the share of them that may be left out.
   */
  constructor(file: string, totalRows: number, maxSkipShare: number) {
    this.#file = file;
    this.#total = totalRows;
    this.#maxShare = maxSkipShare;
  }

  /** Distinct rows left out so far. */
  get skipped(): number {
    return this.#skipped.size;
  }

  /** Distinct rows cut to `maxLength` so far. */
  get cut(): number {
    return this.#cut.size;
  }

  /** Rows whose bytes that are not UTF-8 were replaced by U+FFFD. */
  get invalidUtf8(): number {
    return this.#invalidUtf8.size;
  }

  /**
   * Leaves row `index` out for `why` (its message names the row). Throws when then no row of the file
   * is usable, or when the rows left out pass `maxSkipShare` of the file.
   */
  skip(index: number, kind: SkipKind, why: string): void {
    if (this.#skipped.has(index)) return;
    this.#skipped.set(index, { kind, why });
    const n = this.#skipped.size;
    if (n >= this.#total) {
      throw new Error(
        `${this.#file}: no usable rows: all ${this.#total} were left out (${this.#counts()}); first: ` +
          `${this.#first()}; fix the data`,
      );
    }
    if (n > this.#maxShare * this.#total) {
      throw new Error(
        `${this.#file}: ${n} of ${this.#total} rows left out (${percent(n / this.#total)}), over ` +
          `data.maxSkipShare ${percent(this.#maxShare)} (${this.#counts()}); first: ${this.#first()}; fix ` +
          `the data or raise data.maxSkipShare`,
      );
    }
  }

  /** Records that row `index` was cut to `maxLength`. */
  markCut(index: number): void {
    this.#cut.add(index);
  }

  /** Records that row `index`'s rounds did not add up, so its text labels were masked. */
  markTextMasked(index: number): void {
    this.#textMasked.add(index);
  }

  /** Records rows whose bytes that are not UTF-8 were replaced. */
  markInvalidUtf8(indices: Iterable<number>): void {
    for (const i of indices) this.#invalidUtf8.add(i);
  }

  /**
   * The counts so far as metrics fields: `rows_skipped` (all kinds), `rows_skipped_<kind>` for every
   * {@linkcode SkipKind} (0 or more), `rows_cut`, `rows_text_masked` and `rows_invalid_utf8`.
   */
  counts(): Record<string, number> {
    const out: Record<string, number> = { rows_skipped: this.#skipped.size };
    for (const k of SKIP_KINDS) out[`rows_skipped_${k}`] = 0;
    for (const { kind } of this.#skipped.values()) out[`rows_skipped_${kind}`]++;
    out.rows_cut = this.#cut.size;
    out.rows_text_masked = this.#textMasked.size;
    out.rows_invalid_utf8 = this.#invalidUtf8.size;
    return out;
  }

  /**
   * What happened to the file's rows, or "" when nothing did: `3 of 1000 rows skipped (0.3%, limit
   * 1%): 2 image, 1 malformed; first: ...; 5 rows cut to maxLength; 1 row with bytes that are not UTF-8
   * (replaced by U+FFFD)`.
   */
  summary(): string {
    const parts: string[] = [];
    const n = this.#skipped.size;
    if (n > 0) {
      parts.push(
        `${n} of ${this.#total} rows skipped (${percent(n / this.#total)}, limit ` +
          `${percent(this.#maxShare)}): ${this.#counts()}; first: ${this.#first()}`,
      );
    }
    if (this.#cut.size > 0) parts.push(`${rows(this.#cut.size)} cut to maxLength`);
    if (this.#textMasked.size > 0) {
      parts.push(`${rows(this.#textMasked.size)} whose rounds did not add up (text labels masked)`);
    }
    if (this.#invalidUtf8.size > 0) {
      parts.push(`${rows(this.#invalidUtf8.size)} with bytes that are not UTF-8 (replaced by U+FFFD)`);
    }
    return parts.join("; ");
  }

  /** The count per kind, the most frequent first. */
  #counts(): string {
    const by = new Map<SkipKind, number>();
    for (const { kind } of this.#skipped.values()) by.set(kind, (by.get(kind) ?? 0) + 1);
    return [...by].sort((a, b) => b[1] - a[1]).map(([k, c]) => `${c} ${k}`).join(", ");
  }

  /** The first rows left out (in the order met), quoted. */
  #first(): string {
    return [...this.#skipped.values()].slice(0, QUOTED).map((s) => s.why).join(" | ");
  }
}

function rows(n: number): string {
  return n === 1 ? "1 row" : `${n} rows`;
}

function percent(x: number): string {
  return `${Number((100 * x).toPrecision(2))}%`;
}
