/**
 * The key/value cache of incremental decoding: per layer, the rotated keys and the values of every
 * position seen so far (only the last `window` of them under a sliding window, which is all that a
 * later query can attend to).
 * @module
 */

import type { Engine } from "../core/engine.ts";
import type { Tensor } from "../core/tensor.ts";
import { concat, slice } from "../core/kernels/rows/rows.ts";

/** Sizes of a {@linkcode KvCache}. */
export interface KvCacheOptions {
  /** Decoder layers. */
  numLayers: number;
  /** Key/value heads NKV. */
  numKvHeads: number;
  /** Head size HS. */
  headDim: number;
  /** Sliding window: only the last `window` positions are kept; null keeps every position. */
  window: number | null;
}

/** Keys and values of one layer: [B, NKV, L, HS] each, L the positions kept. */
export interface LayerKv {
  /** Rotated keys [B, NKV, L, HS]. */
  keys: Tensor;
  /** Values [B, NKV, L, HS]. */
  values: Tensor;
}

/**
 * Cached keys and values of a decoder, per layer. `Decoder.prefill` fills it and `Decoder.step`
 * extends it one position at a time; {@linkcode length} counts the positions seen, which is the
 * RoPE position of the next row. The tensors are owned by the cache (no tidy scope frees them):
 * call {@linkcode dispose} when done.
 */
export class KvCache {
  /** The sizes the cache was made for. */
  readonly opts: Readonly<KvCacheOptions>;
  #layers: (LayerKv | null)[];
  #appended: number[]; // positions appended per layer, to catch a layer appended twice
  #length = 0;
  #batch: number | null = null;

  /** An empty cache. */
  constructor(opts: KvCacheOptions) {
    const { numLayers, numKvHeads, headDim, window } = opts;
    for (const [k, v] of Object.entries({ numLayers, numKvHeads, headDim })) {
      if (!(Number.isInteger(v) && v >= 1)) {
        throw new Error(`KvCache: ${k} must be an integer >= 1, got ${v}`);
      }
    }
    if (window !== null && !(Number.isInteger(window) && window >= 1)) {
      throw new Error(`KvCache: window must be an integer >= 1 or null, got ${window}`);
    }
    this.opts = Object.freeze({ ...opts });
    this.#layers = new Array(numLayers).fill(null);
    this.#appended = new Array(numLayers).fill(0);
  }

  /** Positions seen so far (committed by {@linkcode commit}): the position of the next row. */
  get length(): number {
    return this.#length;
  }

  /** Positions held per layer: {@linkcode length}, or at most `window` under a sliding window. */
  get kept(): number {
    return this.#layers[0]?.keys.shape[2] ?? 0;
  }

  /** The cached keys and values of `layer` (null before the first append). */
  layer(layer: number): LayerKv | null {
    this.#checkLayer(layer);
    return this.#layers[layer];
  }

  /**
   * Appends the keys and values of T new positions to `layer`: k, v [B, NKV, T, HS] (rotated keys).
   * The cache keeps its own copy (trimmed to the window), so `k` and `v` stay the caller's. Returns
   * the layer's keys and values after the append. Call {@linkcode commit} once every layer has its
   * new positions.
   */
  append(layer: number, k: Tensor, v: Tensor): LayerKv {
    this.#checkLayer(layer);
    const { numKvHeads: NKV, headDim: HS, window } = this.opts;
    const [B, nkv, T, hs] = k.shape;
    if (k.shape.length !== 4 || nkv !== NKV || hs !== HS || k.shape.join() !== v.shape.join()) {
      throw new Error(`KvCache.append: k ${k} and v ${v} must both be [B, ${NKV}, T, ${HS}]`);
    }
    if (this.#batch !== null && B !== this.#batch) {
      throw new Error(`KvCache.append: batch ${B} differs from the cached batch ${this.#batch}`);
    }
    if (this.#appended[layer] !== this.#length) {
      throw new Error(
        `KvCache.append: layer ${layer} already has this step's positions; call commit() first`,
      );
    }
    const e = k.engine;
    const old = this.#layers[layer];
    const grow = (prev: Tensor | undefined, x: Tensor): Tensor => {
      let t = prev ? concat([prev, x], 2) : copyOf(e, x);
      const L = t.shape[2];
      if (window !== null && L > window) {
        const cut = slice(t, 2, L - window, L);
        t.dispose();
        t = cut;
      }
      e.untrack(t);
      return t;
    };
    const next = { keys: grow(old?.keys, k), values: grow(old?.values, v) };
    old?.keys.dispose();
    old?.values.dispose();
    this.#layers[layer] = next;
    this.#appended[layer] += T;
    this.#batch = B;
    return next;
  }

  /** Ends a forward pass that appended T positions to every layer. */
  commit(T: number): void {
    const missing = this.#appended.findIndex((n) => n !== this.#length + T);
    if (missing >= 0) {
      throw new Error(
        `KvCache.commit(${T}): layer ${missing} has ${this.#appended[missing]} positions, expected ${
          this.#length + T
        }`,
      );
    }
    this.#length += T;
  }

  /** Frees the cached tensors and empties the cache. */
  dispose(): void {
    for (const kv of this.#layers) {
      kv?.keys.dispose();
      kv?.values.dispose();
    }
    this.#layers.fill(null);
    this.#appended.fill(0);
    this.#length = 0;
    this.#batch = null;
  }

  #checkLayer(layer: number): void {
    if (!(Number.isInteger(layer) && layer >= 0 && layer < this.#layers.length)) {
      throw new Error(`KvCache: layer ${layer} out of range 0..${this.#layers.length - 1}`);
    }
  }
}

/** A copy of x that owns its buffer. */
function copyOf(e: Engine, x: Tensor): Tensor {
  const t = e.empty(x.shape, x.dtype);
  e.copy(x, t);
  return t;
}
