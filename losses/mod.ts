/**
 * Losses: the text loss (shifted next-token cross-entropy), the chunked classifier cross-entropy of
 * the visual head, the preparation of visual targets (alignment, text-only rows), the loss config
 * and the weighted sum of the terms.
 *
 * ```ts ignore
 * import { classifierCrossEntropy, combineLosses, depthTargets, parseLossConfig, textLoss, visualTargets } from "./mod.ts";
 * const cfg = parseLossConfig({ alignment: "same" }, "config.loss");
 * const codes = visualTargets(rawCodes, hasImage, cfg); // i32 [B, N, D]
 * const perDepth = states.map((s, d) => classifierCrossEntropy(s, heads[d].weight, heads[d].bias, depthTargets(codes, d)));
 * const semantic = scale(perDepth.reduce((a, b) => add(a, b)), 1 / perDepth.length);
 * const { total, terms } = combineLosses({ text: textLoss(logits, labels), visual: { semantic } }, cfg);
 * ```
 * @module
 */

export {
  type Alignment,
  ALIGNMENTS,
  type LossConfig,
  parseLossConfig,
  TEXT_ONLY_ROWS,
  type TextOnlyRows,
} from "./config.ts";
export { type CombinedLoss, combineLosses, type LossTerms } from "./composite.ts";
export { alignCodes, depthTargets, maskRows, visualTargets } from "./targets.ts";
export { textLoss, textLossFromHidden } from "./text_ce.ts";
export {
  CHUNK_LOGITS_BYTES,
  classifierCrossEntropy,
  type ClassifierCrossEntropyOptions,
  defaultChunkRows,
  type VisualLogitsBytes,
  visualLogitsBytes,
  type VisualLogitsBytesOptions,
} from "./visual_ce.ts";
