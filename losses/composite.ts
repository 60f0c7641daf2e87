/**
 * The training loss as a weighted sum of its terms, L = textWeight * L_text + visualWeight * sum of
 * the visual terms (one per visual head: "semantic", "pixel", ...), each term also reported alone.
 * @module
 */

import { add, scale } from "../core/kernels/elementwise/elementwise.ts";
import type { Tensor } from "../core/tensor.ts";
import type { LossConfig } from "./config.ts";

/** The terms of the loss: f32 scalars [] (each differentiable, or not, as computed). */
export interface LossTerms {
  /** The text loss (absent for a head-only objective). */
  text?: Tensor;
  /**
   * The visual terms by the names their head gives them (`visual_semantic`, `visual_pixel`), kept
   * as they are from head to metrics; absent or empty for the text-only baseline.
   */
  visual?: Record<string, Tensor>;
}

/** The combined loss and every term by name: `text`, each visual term's own name, and `total`. */
export interface CombinedLoss {
  /** The weighted sum, differentiable in every term that entered it. */
  total: Tensor;
  /** The terms as given (unweighted) plus `total`, for logging. */
  terms: Record<string, Tensor>;
}

/**
 * Combines the loss terms: total = textWeight * text + visualWeight * (sum of the visual terms).
 * A group whose weight is 0 is reported but left out of `total`, so backward does no work for it;
 * a weight of 1 adds no op. Throws when no term enters the total.
 */
export function combineLosses(
  terms: LossTerms,
  cfg: Pick<LossConfig, "textWeight" | "visualWeight">,
): CombinedLoss {
  const named: Record<string, Tensor> = {};
  const parts: Tensor[] = [];
  const weighted = (t: Tensor, w: number) => (w === 1 ? t : scale(t, w));
  if (terms.text) {
    named.text = checkScalar(terms.text, "text");
    if (cfg.textWeight !== 0) parts.push(weighted(terms.text, cfg.textWeight));
  }
  const visual = Object.entries(terms.visual ?? {});
  for (const [name, t] of visual) {
    if (name === "text" || name === "total") {
      throw new Error(
        `combineLosses: a visual term may not be called ${JSON.stringify(name)} (the text loss and the ` +
          `sum use that name); name it after its targets, e.g. "visual_semantic"`,
      );
    }
    named[name] = checkScalar(t, name);
  }
  if (visual.length && cfg.visualWeight !== 0) {
    const sum = visual.map(([, t]) => t).reduce((a, b) => add(a, b));
    parts.push(weighted(sum, cfg.visualWeight));
  }
  if (parts.length === 0) {
    const given = Object.keys(named).join(", ") || "none";
    throw new Error(
      `combineLosses: no term enters the total (terms given: ${given}; textWeight ${cfg.textWeight}, ` +
        `visualWeight ${cfg.visualWeight}); give a text or visual term with a weight > 0`,
    );
  }
  const total = parts.reduce((a, b) => add(a, b));
  named.total = total;
  return { total, terms: named };
}

function checkScalar(t: Tensor, name: string): Tensor {
  if (t.size !== 1 || t.dtype !== "f32") {
    throw new Error(`combineLosses: term ${name} must be an f32 scalar, got ${t}; reduce it to a mean first`);
  }
  return t;
}
