/**
 * The checks every built-in head runs on its inputs: hidden states of the width it was built for,
 * and codes (and codebooks) of its target tokenizer with the sizes its config names.
 * @module
 */

import type { Tensor } from "../core/tensor.ts";
import type { VisualTargetCodes, VisualTargets } from "./head.ts";

/** What a head expects of its inputs. */
export interface VisualInputSpec {
  /** The head, for error messages (e.g. "AsvrDepthHead"). */
  head: string;
  /** The LLM width d_llm of the hidden states. */
  llmWidth: number;
  /** The targets entry the head learns (its config's `target`). */
  target: string;
  /** Number of depths D of the codes. */
  depths: number;
  /** Width Dc of the codebook vectors, when the head reads the codebooks (teacher forcing). */
  codebookDim?: number;
}

/** The checked inputs: sizes and the selected codes. */
export interface VisualInputs {
  /** Batch size B. */
  B: number;
  /** Patches per image N. */
  N: number;
  /** The target's codes and codebooks. */
  visual: VisualTargetCodes;
}

/**
 * Checks hidden [B, N, d_llm] and `targets[spec.target]` (codes i32 [B, N, D], codebooks [D, K, Dc]);
 * throws an error naming the head, the field and the expected shape.
 */
export function checkVisualInputs(
  hidden: Tensor,
  targets: VisualTargets,
  spec: VisualInputSpec,
): VisualInputs {
  const where = `${spec.head}.loss`;
  if (hidden.shape.length !== 3 || hidden.shape[2] !== spec.llmWidth) {
    throw new Error(
      `${where}: hidden is ${hidden}; it must be [B, N, ${spec.llmWidth}] (the LLM's hidden states at the ` +
        `image positions, d_llm = ${spec.llmWidth} as the head was built)`,
    );
  }
  const [B, N] = hidden.shape;
  const visual = targets[spec.target];
  if (!visual) {
    const have = Object.keys(targets);
    throw new Error(
      `${where}: targets has no "${spec.target}" entry (it has ${have.length ? have.join(", ") : "none"}); ` +
        `pass the "${spec.target}" tokenizer's codes, or change the head's target`,
    );
  }
  const D = spec.depths;
  const { codes, codebooks } = visual;
  if (
    codes.dtype !== "i32" || codes.shape.length !== 3 || codes.shape[0] !== B || codes.shape[1] !== N ||
    codes.shape[2] !== D
  ) {
    throw new Error(
      `${where}: targets.${spec.target}.codes is ${codes}; it must be i32[${B},${N},${D}] ` +
        `(one code per patch and depth, -100 where unsupervised; D = the head's depths)`,
    );
  }
  if (spec.codebookDim !== undefined) {
    const Dc = spec.codebookDim;
    if (
      codebooks.shape.length !== 3 || codebooks.shape[0] !== D || codebooks.shape[2] !== Dc ||
      (codebooks.dtype !== "f32" && codebooks.dtype !== "f16")
    ) {
      throw new Error(
        `${where}: targets.${spec.target}.codebooks is ${codebooks}; it must be f32 or f16 [${D}, K, ${Dc}] ` +
          `(one codebook per depth; Dc = the head's codebookDim)`,
      );
    }
  }
  return { B, N, visual };
}
