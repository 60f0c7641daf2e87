/**
 * The pixel normalization each vision encoder family was trained with (its Hugging Face image
 * processor's `image_mean` / `image_std`): what images must be normalized with before the encoder
 * sees them, `(x / 255 - mean) / std` per channel.
 * @module
 */

import type { VisionConfig } from "./config.ts";

/** Per-channel mean and standard deviation of an encoder's inputs (RGB, pixels scaled to [0, 1]). */
export interface VisionImageNorm {
  /** Per-channel mean. */
  mean: [number, number, number];
  /** Per-channel standard deviation. */
  std: [number, number, number];
}

/** The normalization an encoder of `cfg`'s family expects: SigLIP's 0.5 / 0.5 (pixels to [-1, 1]), OpenAI CLIP's. */
export function imageNorm(cfg: Pick<VisionConfig, "arch">): VisionImageNorm {
  const arch = cfg.arch;
  switch (arch) {
    case "siglip":
      return { mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] };
    case "clip":
      return {
        mean: [0.48145466, 0.4578275, 0.40821073],
        std: [0.26862954, 0.26130258, 0.27577711],
      };
    default: {
      const never: never = arch;
      throw new Error(`imageNorm: unhandled encoder family ${never}`);
    }
  }
}
