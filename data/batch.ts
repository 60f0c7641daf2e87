/**
 * The batch type shared by the data pipeline (which builds it: `collate`) and the model (which
 * consumes it: `AsvrModel.forward`). It lives here, below `models/`, so that `data/` needs nothing
 * from the model to produce batches. Labels mark unsupervised positions with
 * `IGNORE_INDEX` (-100, `core/labels.ts`).
 * @module
 */

/**
 * One training batch: B rows of T tokens (row-major host arrays), each row with at most one image
 * whose N features go to N contiguous positions.
 */
export interface AsvrBatch {
  /** Token ids i32 [B, T]; the ids at image positions are ignored (any placeholder, e.g. -200). */
  inputIds: Int32Array;
  /**
   * Labels i32 [B, T] as HF takes them (the loss shifts them): -100 (`IGNORE_INDEX`) where
   * unsupervised, which image positions always are.
   */
  labels: Int32Array;
  /** Per row, the N positions (ascending, contiguous) where its image features go; [] without an image. */
  imagePositions: number[][];
  /** Pixels f32 [B, 3, H, W] (preprocessed; rows without an image read as zeros), or null if none is needed. */
  pixels: Float32Array | null;
  /** Per row, whether it has an image (B entries). */
  hasImage: boolean[];
  /**
   * Precomputed projector inputs f32 [B, N, inDim] (an ONNX encoder's output, see
   * `AsvrModel.precompute`, or a feature cache); only with `encoder.input` "continuous".
   */
  features?: Float32Array;
  /** Precomputed codes i32 [B, N, D] by tokenizer name (an ONNX tokenizer's output, or a target cache). */
  codes?: Record<string, Int32Array>;
}
