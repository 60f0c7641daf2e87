/**
 * One LLaVA row to one training sequence: the template's token ids and labels, the image placeholder
 * widened to the N positions its features fill, and the sequence cut to the maximum length without
 * ever cutting through the image.
 *
 * ```ts ignore
 * const t = tokenizeRow(row, { template: "vicuna_v1", tokenizer, imageTokens: 729, maxLength: 2048 });
 * t.inputIds.slice(t.imageStart, t.imageStart + t.imageTokens); // 729 x -200
 * ```
 * @module
 */

import { IGNORE_INDEX } from "../core/labels.ts";
import { DataRowError, type LlavaRow } from "./llava_json.ts";
import { applyTemplate, IMAGE_TOKEN_ID, type TemplateName, type TemplateTokenizer } from "./templates.ts";

/** Options of {@linkcode tokenizeRow}. */
export interface TokenizeOptions {
  /** The conversation template. */
  template: TemplateName;
  /** The LLM's text tokenizer. */
  tokenizer: TemplateTokenizer;
  /** N: the positions an image's features fill (e.g. 729 for SigLIP at 384 px, patch 14). */
  imageTokens: number;
  /** The longest sequence kept (image positions included); longer ones are cut at the end. */
  maxLength: number;
}

/** A row as one training sequence of length T <= maxLength. */
export interface TokenizedRow {
  /** Token ids [T]; the N image positions hold {@linkcode IMAGE_TOKEN_ID}. */
  inputIds: number[];
  /** Labels [T] in HF convention (-100 unsupervised, the image positions always; the loss shifts them). */
  labels: number[];
  /** The first image position, or -1 for a row without an image. */
  imageStart: number;
  /** The number of image positions: N for a row with an image, else 0. */
  imageTokens: number;
  /** The row's length before it was cut to `maxLength`; absent when it was not cut. */
  cutFrom?: number;
  /**
   * Present when the template's rounds did not add up to the row's tokens: its text labels are all
   * masked, as the reference does, and its image still trains the visual loss.
   */
  textMasked?: true;
}

/** A positive integer option, or an error naming it. */
function positiveInt(v: number, name: string): number {
  if (!Number.isInteger(v) || v < 1) {
    throw new Error(`tokenizeRow: ${name} must be a positive integer, got ${v}`);
  }
  return v;
}

/**
 * Tokenizes a row with a template ({@linkcode applyTemplate}), widens the image placeholder to
 * `imageTokens` positions (ids {@linkcode IMAGE_TOKEN_ID}, labels -100), and cuts a sequence longer than
 * `maxLength` at its end. The image span is never cut: when it does not fit whole within `maxLength`
 * the row throws a {@linkcode DataRowError} that says how large `maxLength` must be, and so does a row
 * whose every supervised token is cut off (it would train nothing).
 */
export function tokenizeRow(row: LlavaRow, options: TokenizeOptions): TokenizedRow {
  const N = positiveInt(options.imageTokens, "imageTokens");
  const maxLength = positiveInt(options.maxLength, "maxLength");
  const { ids, labels, roundMismatch } = applyTemplate(row, options.template, options.tokenizer);
  const at = ids.indexOf(IMAGE_TOKEN_ID);
  let inputIds = ids, outLabels = labels;
  if (at >= 0) {
    inputIds = [...ids.slice(0, at), ...new Array<number>(N).fill(IMAGE_TOKEN_ID), ...ids.slice(at + 1)];
    outLabels = [...labels.slice(0, at), ...new Array<number>(N).fill(IGNORE_INDEX), ...labels.slice(at + 1)];
  }
  let cutFrom: number | undefined;
  if (inputIds.length > maxLength) {
    if (at >= 0 && at + N > maxLength) {
      throw new DataRowError(
        row.file,
        row.index,
        row.id,
        `the image's ${N} positions (${at}..${at + N - 1}) do not fit in maxLength ${maxLength}`,
        `set data.maxLength to at least ${at + N}, or shorten the text before the image`,
      );
    }
    const full = cutFrom = inputIds.length;
    const firstSupervised = outLabels.findIndex((l) => l !== IGNORE_INDEX);
    inputIds = inputIds.slice(0, maxLength);
    outLabels = outLabels.slice(0, maxLength);
    if (firstSupervised >= maxLength) {
      throw new DataRowError(
        row.file,
        row.index,
        row.id,
        `every supervised token lies past maxLength ${maxLength} (the row has ${full} tokens), so it would train nothing`,
        `set data.maxLength to at least ${firstSupervised + 1}, or data.onError: "skip"`,
      );
    }
  }
  const out: TokenizedRow = { inputIds, labels: outLabels, imageStart: at, imageTokens: at >= 0 ? N : 0 };
  if (cutFrom !== undefined) out.cutFrom = cutFrom;
  if (roundMismatch) out.textMasked = true;
  return out;
}
