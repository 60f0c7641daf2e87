/**
 * The text loss: shifted next-token cross-entropy over the supervised tokens (HF's causal LM loss,
 * labels -100 elsewhere), from logits or, for large vocabularies, from the hidden states and the LM
 * head weight in row chunks so the logits [B, T, V] never exist whole.
 * @module
 */

import { causalLmLoss, shiftLabels } from "../backbones/causal_lm_loss.ts";
import { reshape } from "../core/autograd.ts";
import type { Tensor } from "../core/tensor.ts";
import { classifierCrossEntropy, type ClassifierCrossEntropyOptions } from "./visual_ce.ts";

/**
 * Shifted next-token cross-entropy: logits [B, T, V] at positions 0..T-2 against labels i32 [B, T]
 * at 1..T-1, the mean over supervised labels (!= -100); 0 when none is. An f32 scalar,
 * differentiable in the logits. Besides the logits it holds only per-row statistics, and in
 * backward the logits' gradient; use {@linkcode textLossFromHidden} to avoid the logits entirely.
 */
export function textLoss(logits: Tensor, labels: Tensor): Tensor {
  if (labels.dtype !== "i32") throw new Error(`textLoss: labels must be i32 [B, T], got ${labels}`);
  return causalLmLoss(logits, labels);
}

/**
 * The same loss as {@linkcode textLoss} from the final hidden states [B, T, C] and the LM head
 * weight [V, C] (`lm_head.weight`, or the embeddings when tied): logits are made and dropped in
 * chunks of rows by {@linkcode classifierCrossEntropy}, so at most one chunk's logits [chunkRows, V]
 * (and their gradient) exist, never [B, T, V]. Differentiable in hidden and the head weight.
 */
export function textLossFromHidden(
  hidden: Tensor,
  headWeight: Tensor,
  labels: Tensor,
  opts: ClassifierCrossEntropyOptions = {},
): Tensor {
  if (hidden.shape.length !== 3) {
    throw new Error(`textLossFromHidden: hidden must be [B, T, C], got ${hidden}`);
  }
  const [B, T, C] = hidden.shape;
  if (labels.dtype !== "i32" || labels.shape.length !== 2 || labels.shape[0] !== B || labels.shape[1] !== T) {
    throw new Error(
      `textLossFromHidden: labels must be i32 [${B}, ${T}] for hidden ${hidden}, got ${labels}`,
    );
  }
  const targets = shiftLabels(labels).view([B * T]); // [B*T]: position t predicts label t + 1
  return classifierCrossEntropy(reshape(hidden, [B * T, C]), headWeight, null, targets, opts);
}
