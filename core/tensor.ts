/**
 * A tensor: a shape, a dtype and one pooled GPU buffer, contiguous and row-major.
 * @module
 */

import type { DType, HostArray } from "./dtype.ts";
import type { Engine } from "./engine.ts";
import { bytesPerElement } from "./dtype.ts";

/** A contiguous row-major GPU tensor. Create through an {@linkcode Engine}. */
export class Tensor {
  /** The engine that owns its buffer. */
  readonly engine: Engine;
  /** The shape, outermost first. */
  readonly shape: readonly number[];
  /** The element type. */
  readonly dtype: DType;
  /** The number of elements. */
  readonly size: number;
  /** An optional name (parameters: the Hugging Face name). */
  name?: string;

  /** For a view, the tensor that owns the buffer. */
  readonly base: Tensor | null = null;

  #buffer: GPUBuffer | null;
  #owner: boolean;
  #requiresGrad = false;
  #isParam = false;
  #grad: Tensor | null = null;

  /** @internal Use the engine's factories (`tensor`, `empty`, `zeros`, `param`). */
  constructor(
    engine: Engine,
    shape: readonly number[],
    dtype: DType,
    buffer: GPUBuffer | null,
    owner = true,
  ) {
    for (const d of shape) {
      if (!Number.isInteger(d) || d < 0) {
        throw new Error(`tensor shape [${shape}]: dims must be integers >= 0`);
      }
    }
    this.engine = engine;
    this.shape = Object.freeze([...shape]);
    this.dtype = dtype;
    this.size = shape.reduce((a, b) => a * b, 1);
    this.#buffer = buffer;
    this.#owner = owner;
  }

  /** Whether autograd computes a gradient for this tensor. */
  get requiresGrad(): boolean {
    return this.#requiresGrad;
  }
  set requiresGrad(v: boolean) {
    this.#requiresGrad = v;
  }

  /** True for trainable parameters (leaves whose gradient accumulates into `grad`). */
  get isParam(): boolean {
    return this.#isParam;
  }
  set isParam(v: boolean) {
    this.#isParam = v;
  }

  /** The accumulated gradient of a parameter, after {@linkcode backward}. */
  get grad(): Tensor | null {
    return this.#grad;
  }
  set grad(g: Tensor | null) {
    this.#grad = g;
  }

  /**
   * The tensors that hold the data: the tensor itself, or for a tensor split over several buffers
   * (core/split_tensor.ts) its row blocks, in order. Loops over parameters and their gradients go
   * through the pieces, so they work on both.
   */
  get pieces(): readonly Tensor[] {
    return [this];
  }

  /** The GPU buffer (throws if the tensor was disposed). */
  get buffer(): GPUBuffer {
    if (this.base?.disposed) this.#buffer = null;
    if (!this.#buffer) throw new Error(`use of a disposed tensor ${this.describe()}`);
    return this.#buffer;
  }

  /** True once disposed. */
  get disposed(): boolean {
    return this.#buffer === null || (this.base?.disposed ?? false);
  }

  /** Bytes of data (size x element size). */
  get byteLength(): number {
    return this.size * bytesPerElement(this.dtype);
  }

  /** Bytes bound to kernels: the data rounded up to a multiple of 4 (at least 4). */
  get bindSize(): number {
    return Math.max(4, Math.ceil(this.byteLength / 4) * 4);
  }

  /** Reads the values back (f16 widens to f32). */
  read(): Promise<HostArray> {
    return this.engine.read(this);
  }

  /** Returns the buffer to the pool. Safe to call twice. */
  dispose(): void {
    if (!this.#buffer) return;
    if (this.#owner) this.engine.pool.release(this.#buffer);
    this.#buffer = null;
    if (this.grad) {
      this.grad.dispose();
      this.grad = null;
    }
  }

  /**
   * A new tensor object over the same buffer, with another shape of the same size (a free reshape).
   * The view does not own the buffer; dispose the original to free it.
   */
  view(shape: readonly number[]): Tensor {
    const size = shape.reduce((a, b) => a * b, 1);
    if (size !== this.size) throw new Error(`view: cannot view ${this.describe()} as [${shape}]`);
    const v = new Tensor(this.engine, shape, this.dtype, this.buffer, false);
    (v as { base: Tensor | null }).base = this.base ?? this;
    return v;
  }

  /** "f32[2,3]" plus the name when there is one. */
  describe(): string {
    return `${this.name ? this.name + ":" : ""}${this.dtype}[${this.shape.join(",")}]`;
  }

  /** Same as {@linkcode describe}. */
  toString(): string {
    return this.describe();
  }
}
