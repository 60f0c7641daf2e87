/**
 * The causal language-modelling loss of Hugging Face's `*ForCausalLM`: position t predicts the label
 * of position t + 1, averaged over the supervised labels (-100: not supervised).
 * @module
 */

import { reshape } from "../core/autograd.ts";
import { crossEntropy } from "../core/kernels/cross_entropy/cross_entropy.ts";
import { concat, slice } from "../core/kernels/rows/rows.ts";
import type { Tensor } from "../core/tensor.ts";
import { IGNORE_INDEX } from "../core/labels.ts";

/**
 * The targets of each position: labels i32 [B, T] -> i32 [B, T] with out[b, t] = labels[b, t + 1]
 * and out[b, T - 1] = -100 (the last position has nothing to predict).
 */
export function shiftLabels(labels: Tensor): Tensor {
  if (labels.dtype !== "i32" || labels.shape.length !== 2) {
    throw new Error(`shiftLabels: labels must be i32 [B, T], got ${labels}`);
  }
  const [B, T] = labels.shape;
  if (T < 1) throw new Error(`shiftLabels: labels ${labels} have no positions`);
  const e = labels.engine;
  const pad = e.full([B, 1], IGNORE_INDEX, "i32"); // [B, 1]
  return T <= 1 ? pad.view([B, T]) : concat([slice(labels, 1, 1, T), pad], 1); // [B, T]
}

/**
 * HF's causal LM loss: cross-entropy of logits [B, T, V] at positions 0..T-2 against labels
 * i32 [B, T] at positions 1..T-1, the mean over labels != -100. Returns an f32 scalar,
 * differentiable in the logits. (No [B, T-1, V] copy of the logits is made: the labels are shifted
 * instead, and the last position gets -100.)
 */
export function causalLmLoss(logits: Tensor, labels: Tensor): Tensor {
  if (logits.shape.length !== 3) throw new Error(`causalLmLoss: logits must be [B, T, V], got ${logits}`);
  const [B, T, V] = logits.shape;
  if (labels.shape.length !== 2 || labels.shape[0] !== B || labels.shape[1] !== T) {
    throw new Error(`causalLmLoss: labels must be i32 [${B}, ${T}] for logits ${logits}, got ${labels}`);
  }
  const targets = shiftLabels(labels).view([B * T]); // [B*T]
  return crossEntropy(reshape(logits, [B * T, V]), targets, { ignoreIndex: IGNORE_INDEX });
}
