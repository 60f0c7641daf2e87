/**
 * The contract every visual head implements. A visual head turns the LLM's hidden states at the image
 * positions, H [B, N, d_llm], into a visual loss against the discrete codes of a frozen visual
 * tokenizer (ASVR_SPEC sections 3-4). The model that owns the head does the bookkeeping around it:
 * it gathers H at the image positions, applies the alignment (`same`: patch i predicts its own codes;
 * `next`: patch i predicts the codes of patch i + 1) and masks rows (text-only samples, the last patch
 * under `next`) by writing -100 into the codes. The head only learns from what it is given.
 *
 * Each kind of head is described once, by a `HeadKind` registered with `registerHead` (see
 * `registry.ts`); the framework's kinds register through the same door as a user's (`builtin.ts`,
 * and `examples/custom_head.ts` for writing one).
 * @module
 */

import type { DType } from "../core/dtype.ts";
import type { Tensor } from "../core/tensor.ts";

/** The visual tokenizers whose codes a built-in head can learn: SigLIP-RQ semantic codes or pixel-VQ codes. */
export type VisualTarget = "semantic" | "pixel";

/** Every {@linkcode VisualTarget}. */
export const VISUAL_TARGETS: readonly VisualTarget[] = ["semantic", "pixel"];

/** The codes of one visual tokenizer for a batch of images. */
export interface VisualTargetCodes {
  /** i32 [B, N, D]: the code of each patch at each RQ depth; -100 marks an unsupervised entry. */
  codes: Tensor;
  /** [D, K, Dc]: the tokenizer's frozen codebooks (one per depth), for teacher forcing. */
  codebooks: Tensor;
}

/** The targets of a batch, by tokenizer name ("semantic", "pixel", or a custom tokenizer's name). */
export type VisualTargets = Record<string, VisualTargetCodes>;

/** What a head's {@linkcode VisualHead.loss} returns. */
export interface HeadLoss {
  /** f32 scalar []: the loss to add to the text loss (differentiable in the head's params and H). */
  total: Tensor;
  /**
   * Each part of `total`, reported separately for logging (e.g. `visual_semantic`, `visual_pixel`);
   * the parts sum to `total`. Empty for a head without a loss.
   */
  terms: Record<string, Tensor>;
}

/** A visual head: parameters plus a loss over hidden states at image positions. */
export interface VisualHead {
  /** The config kind it was built from (e.g. "asvr_depth", or a registered custom kind). */
  readonly kind: string;
  /**
   * The parameters under their checkpoint names (for the built-in heads, the reference code's
   * state-dict names), including any that are kept but not trained (`requiresGrad` false).
   */
  params(): Map<string, Tensor>;
  /**
   * The visual loss of hidden states H [B, N, d_llm] (d_llm = the `llmWidth` the head was built for)
   * against `targets`. Records onto the autograd tape, so `backward(total)` reaches the head's params
   * and H. Call it inside a tidy scope: the intermediates are freed when that scope ends.
   */
  loss(hidden: Tensor, targets: VisualTargets): HeadLoss;
}

/** What a head needs to know about the model it is attached to. */
export interface HeadContext {
  /** The LLM's width d_llm (the last dim of the hidden states). */
  llmWidth: number;
  /** Storage dtype of the head's parameters (default "f32"); must match the hidden states' dtype. */
  dtype?: DType;
  /** Seed of the random initialization (default 0). */
  seed?: number;
  /**
   * Rows per chunk of the head's cross-entropy where its own config sets none (the run's
   * `loss.chunkRows`); undefined: the loss's own choice, 64 MiB of logits per chunk.
   */
  chunkRows?: number;
}

/** The one field every head config has. */
export interface HeadConfigBase {
  /** Which head: a registered kind (`registeredHeadKinds()`). */
  kind: string;
}

/** A head config of any kind: `kind` plus the kind's own fields. */
export type HeadConfig = HeadConfigBase & { [field: string]: unknown };
