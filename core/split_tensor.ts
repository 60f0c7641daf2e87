/**
 * A tensor split by rows over several GPU buffers: how a parameter larger than the adapter's
 * `maxStorageBufferBindingSize` (or `maxBufferSize`) is stored, e.g. a 32000 x 4096 f32 embedding on
 * an adapter that binds 128 MiB.
 *
 * The pieces are ordinary tensors holding consecutive blocks of the outermost dimension; each is small
 * enough to bind whole even at f32, so f32 companions of the same layout (AdamW's moments, the master
 * weights of an f16 parameter) fit as well. `Engine.read`, `write`, `zeros` and `copy` take split
 * tensors whole; ops that take them (matmul's `b` with `transB`, embedding's weight) run once per
 * piece; kernels refuse to bind one whole. Autograd sees the pieces: each is a parameter with its own
 * `grad`, so loops over gradients go through `param.pieces`.
 * @module
 */

import type { DType } from "./dtype.ts";
import type { Engine } from "./engine.ts";
import { Tensor } from "./tensor.ts";

/** A tensor whose rows (outermost index) are spread over several tensors. Create with `Engine.empty(..., { split: true })`. */
export class SplitTensor extends Tensor {
  /** The first row of each piece, then the row count: piece i holds rows rowStarts[i] .. rowStarts[i + 1]. */
  readonly rowStarts: readonly number[];
  readonly #pieces: readonly Tensor[];

  /** @internal Use `Engine.empty(shape, dtype, { split: true })` or `Engine.splitLike`. */
  constructor(engine: Engine, shape: readonly number[], dtype: DType, pieces: Tensor[]) {
    super(engine, shape, dtype, null, false);
    const starts = [0];
    for (const p of pieces) {
      if (
        p.dtype !== dtype || p.shape.length !== shape.length ||
        p.shape.some((d, i) => i > 0 && d !== shape[i])
      ) {
        throw new Error(`SplitTensor: piece ${p} does not fit ${dtype}[${shape}]`);
      }
      starts.push(starts.at(-1)! + p.shape[0]);
    }
    if (starts.at(-1) !== shape[0]) {
      throw new Error(`SplitTensor: pieces hold ${starts.at(-1)} rows of ${shape[0]}`);
    }
    this.rowStarts = Object.freeze(starts);
    this.#pieces = Object.freeze([...pieces]);
  }

  /** The row blocks, in order. */
  override get pieces(): readonly Tensor[] {
    return this.#pieces;
  }

  /** A split tensor has no single buffer: this throws, naming the fix. */
  override get buffer(): GPUBuffer {
    throw new Error(
      `${this.describe()} is split over ${this.#pieces.length} buffers (larger than one binding on this adapter); ` +
        `this op cannot take it whole (use its pieces)`,
    );
  }

  /** True once its pieces are disposed. */
  override get disposed(): boolean {
    return this.#pieces.some((p) => p.disposed);
  }

  /** Whether autograd computes gradients for the pieces. */
  override get requiresGrad(): boolean {
    return this.#pieces[0].requiresGrad;
  }
  override set requiresGrad(v: boolean) {
    for (const p of this.#pieces) p.requiresGrad = v;
  }

  /** True when the pieces are parameters. */
  override get isParam(): boolean {
    return this.#pieces[0].isParam;
  }
  override set isParam(v: boolean) {
    for (const p of this.#pieces) p.isParam = v;
  }

  /** The gradients live on the pieces (`t.pieces[i].grad`); reading this throws, so no loop skips them. */
  override get grad(): Tensor | null {
    throw new Error(`${this.describe()}: a split tensor's gradient lives on its pieces (loop over t.pieces)`);
  }
  override set grad(_g: Tensor | null) {
    throw new Error(`${this.describe()}: a split tensor's gradient lives on its pieces (loop over t.pieces)`);
  }

  /** Frees every piece (and its gradient). */
  override dispose(): void {
    for (const p of this.#pieces) p.dispose();
  }

  /** Split tensors cannot be viewed (a view would span buffers). */
  override view(shape: readonly number[]): Tensor {
    throw new Error(
      `view: ${this.describe()} is split over ${this.#pieces.length} buffers; cannot view it as [${shape}]`,
    );
  }

  /** "f32[32000,4096] (split in 4)" plus the name when there is one. */
  override describe(): string {
    return `${super.describe()} (split in ${this.#pieces.length})`;
  }
}

/** The number of rows per piece when `shape` is split so a piece of f32 fits `maxPieceBytes`. */
export function rowsPerPiece(shape: readonly number[], maxPieceBytes: number): number {
  const rowElems = shape.slice(1).reduce((a, b) => a * b, 1);
  return Math.floor(maxPieceBytes / Math.max(4, rowElems * 4));
}

/** Where `t`'s pieces start, then its row count: a split tensor's `rowStarts`, else [0, rows]. */
export function pieceRows(t: Tensor): readonly number[] {
  return t instanceof SplitTensor ? t.rowStarts : [0, t.shape[0]];
}
