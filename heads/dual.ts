/**
 * The dual head (ASVR's dual ablation): an appearance head on the "pixel" codes and a semantic head
 * on the "semantic" codes, built from their own configs; the losses add and both terms are reported.
 * Parameters: each side's under `appearance.` and `semantic.`.
 * @module
 */

import { add } from "../core/kernels/elementwise/elementwise.ts";
import type { Tensor } from "../core/tensor.ts";
import type { HeadLoss, VisualHead, VisualTargets } from "./head.ts";

/** Two heads whose losses add. Build with `buildHead` from a `dual` config. */
export class DualHead implements VisualHead {
  /** The config kind. */
  readonly kind = "dual";
  /** The head on the pixel (appearance) codes. */
  readonly appearance: VisualHead;
  /** The head on the semantic codes. */
  readonly semantic: VisualHead;

  /** Combines two built heads (their terms must not share a name). */
  constructor(appearance: VisualHead, semantic: VisualHead) {
    this.appearance = appearance;
    this.semantic = semantic;
  }

  /** Both sides' parameters, prefixed `appearance.` and `semantic.`. */
  params(): Map<string, Tensor> {
    const out = new Map<string, Tensor>();
    for (const [n, t] of this.appearance.params()) out.set(`appearance.${n}`, t);
    for (const [n, t] of this.semantic.params()) out.set(`semantic.${n}`, t);
    return out;
  }

  /** total = appearance total + semantic total; terms: both sides' terms (e.g. visual_pixel, visual_semantic). */
  loss(hidden: Tensor, targets: VisualTargets): HeadLoss {
    const a = this.appearance.loss(hidden, targets);
    const s = this.semantic.loss(hidden, targets);
    const clash = Object.keys(a.terms).filter((k) => k in s.terms);
    if (clash.length) {
      throw new Error(
        `DualHead.loss: both sides report the term(s) ${clash.join(", ")}; give the appearance side the ` +
          `"pixel" target and the semantic side the "semantic" target`,
      );
    }
    return { total: add(a.total, s.total), terms: { ...a.terms, ...s.terms } };
  }
}
