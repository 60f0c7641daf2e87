/**
 * The "none" head: the LLaVA baseline, with no visual head and no visual loss. It has no parameters;
 * its loss is an f32 zero with no terms, so a training loop treats every head alike.
 * @module
 */

import type { Engine } from "../core/engine.ts";
import type { Tensor } from "../core/tensor.ts";
import type { HeadLoss, VisualHead, VisualTargets } from "./head.ts";

/** No visual head. */
export class NoneHead implements VisualHead {
  /** The config kind. */
  readonly kind = "none";
  #e: Engine;

  /** A head without parameters on engine `e`. */
  constructor(e: Engine) {
    this.#e = e;
  }

  /** No parameters. */
  params(): Map<string, Tensor> {
    return new Map();
  }

  /** An f32 scalar [] zero (not connected to anything) and no terms; the inputs are ignored. */
  loss(_hidden: Tensor, _targets: VisualTargets): HeadLoss {
    return { total: this.#e.zeros([]), terms: {} };
  }
}
