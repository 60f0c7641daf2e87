/**
 * The label conventions shared by the data pipeline (which writes the labels), the losses and the
 * decoders (which read them): one constant, kept at the bottom of the import graph so that `data/`,
 * `losses/` and `backbones/` all take it from here rather than from one another.
 * @module
 */

/**
 * The label (or visual target code) that marks a position as not supervised: -100, as in PyTorch and
 * Hugging Face. `crossEntropy` ignores it by default.
 */
export const IGNORE_INDEX: number = -100;
