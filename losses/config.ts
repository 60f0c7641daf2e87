/**
 * The loss slot's config: the weights of the text and visual terms, how visual targets align with
 * the image positions, what happens to the rows of samples without an image, and the row chunk of
 * the visual cross-entropy.
 * @module
 */

import { z } from "zod";
import { parseSchema } from "../schema/parse.ts";

/**
 * Which codes the hidden state at image patch i predicts: "same", the codes of patch i (the
 * reference code); "next", the codes of patch i + 1, the last patch predicting nothing (the paper's
 * equation, next-token style).
 */
export type Alignment = "same" | "next";

/** Every {@linkcode Alignment}. */
export const ALIGNMENTS: readonly Alignment[] = ["same", "next"];

/**
 * What the visual loss does with the rows of a sample that has no image: "mask", they count for
 * nothing (targets -100); "train", they are trained on like any other (the reference feeds a zero
 * image and still trains the head on its codes).
 */
export type TextOnlyRows = "mask" | "train";

/** Every {@linkcode TextOnlyRows}. */
export const TEXT_ONLY_ROWS: readonly TextOnlyRows[] = ["mask", "train"];

/** The loss config: L = textWeight * L_text + visualWeight * (sum of the visual terms). */
export interface LossConfig {
  /** Weight of the text loss (default 1). */
  textWeight: number;
  /** Weight of the visual terms (default 1; the paper weighs text and visual 1:1). */
  visualWeight: number;
  /** Which patch's codes each image position predicts (default "same", as the reference code). */
  alignment: Alignment;
  /** Rows of samples without an image: "mask" (default) or "train" (as the reference). */
  textOnlyRows: TextOnlyRows;
  /** Rows per chunk of the visual cross-entropy (default: a chunk's logits stay under 64 MiB). */
  chunkRows?: number;
}

/** A loss weight: a finite number >= 0 (zod's numbers are finite). */
const weight = z.number().min(0);

/** The loss config's rules and defaults; its parsed output is a {@linkcode LossConfig}. */
const lossSchema: z.ZodType<LossConfig, Partial<LossConfig>> = z.strictObject({
  textWeight: weight.default(1),
  visualWeight: weight.default(1),
  alignment: z.enum(ALIGNMENTS).default("same"),
  textOnlyRows: z.enum(TEXT_ONLY_ROWS).default("mask"),
  chunkRows: z.number().int().positive().optional(),
});

/**
 * Validates a loss config given as data and fills in the defaults. `path` names where the value
 * sits (e.g. "config.loss"); errors name `path.field`, the value found and what is allowed
 * (`config.loss.alignment: Invalid option: expected one of "same"|"next" (got "prev")`).
 *
 * @example
 * ```ts
 * const cfg = parseLossConfig({ alignment: "next" }, "config.loss");
 * // { textWeight: 1, visualWeight: 1, alignment: "next", textOnlyRows: "mask" }
 * ```
 */
export function parseLossConfig(value: unknown, path: string): LossConfig {
  return parseSchema(lossSchema, value, path);
}
