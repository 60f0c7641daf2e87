/**
 * The per-depth classifiers of the built-in heads: D linear classifiers `heads.{d}` (width -> V_d,
 * with bias, as the reference's `nn.ModuleList` of `nn.Linear`), and their loss, the mean over depths
 * of each depth's mean cross-entropy over its counted rows (ASVR_SPEC section 4).
 * @module
 */

import { add, scale } from "../core/kernels/elementwise/elementwise.ts";
import type { Tensor } from "../core/tensor.ts";
import { depthTargets } from "../losses/targets.ts";
import { classifierCrossEntropy } from "../losses/visual_ce.ts";
import type { ParamSink } from "./param_init.ts";

/** Makes `heads.{d}.weight` [V_d, width] and `heads.{d}.bias` [V_d] (nn.Linear init) for each of `codebookSizes`. */
export function makeDepthClassifiers<T>(
  m: ParamSink<T>,
  width: number,
  codebookSizes: readonly number[],
): { weights: T[]; biases: T[] } {
  const made = codebookSizes.map((V, d) => m.linear(`heads.${d}.`, width, V));
  return { weights: made.map((x) => x.weight), biases: made.map((x) => x.bias) };
}

/** D classifiers, one per RQ depth. */
export class DepthClassifiers {
  /** Weight [V_d, C] of each depth. */
  readonly weights: readonly Tensor[];
  /** Bias [V_d] of each depth. */
  readonly biases: readonly Tensor[];

  /** The classifiers made by {@linkcode makeDepthClassifiers}. */
  constructor(made: { weights: Tensor[]; biases: Tensor[] }) {
    this.weights = made.weights;
    this.biases = made.biases;
  }

  /** The number of depths D. */
  get depths(): number {
    return this.weights.length;
  }

  /**
   * The mean over depths of CE(states_d @ W_d^T + b_d, codes[:, d]), each a mean over the rows whose
   * code is in [0, V_d) (-100: not counted; 0 when none counts), computed `chunkRows` rows at a time
   * (null: the loss's default, 64 MiB of logits per chunk). `stateOf(d)` gives states_d [R, C] with
   * R = B * N (row b * N + n for patch n of image b); codes: i32 [B, N, D]. Returns an f32 scalar [].
   */
  loss(stateOf: (d: number) => Tensor, codes: Tensor, chunkRows: number | null): Tensor {
    const D = codes.shape[2];
    let total: Tensor | null = null;
    for (let d = 0; d < D; d++) {
      const targets = depthTargets(codes, d); // i32 [R]
      const l = classifierCrossEntropy(stateOf(d), this.weights[d], this.biases[d], targets, {
        chunkRows: chunkRows ?? undefined,
      });
      total = total ? add(total, l) : l;
    }
    return scale(total!, 1 / D);
  }
}
