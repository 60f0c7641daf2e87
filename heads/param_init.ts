/**
 * Seeded parameter initialization for the heads, after PyTorch's module defaults: `nn.Linear`
 * draws weight and bias from U(-1/sqrt(fan_in), 1/sqrt(fan_in)); norms start at ones.
 * @module
 */

import type { DType } from "../core/dtype.ts";
import type { Engine } from "../core/engine.ts";
import { randn, rng } from "../core/random.ts";
import type { Tensor } from "../core/tensor.ts";

/** Creates named parameters into one map, from one seeded stream. */
export class ParamMaker {
  /** The parameters made so far, by name. */
  readonly params: Map<string, Tensor> = new Map();
  #e: Engine;
  #dtype: DType;
  #uniform: () => number;
  #seed: number;
  #count = 0;

  /** Parameters of `dtype` on `e`, drawn from `seed`. */
  constructor(e: Engine, dtype: DType, seed: number) {
    this.#e = e;
    this.#dtype = dtype;
    this.#seed = seed;
    this.#uniform = rng(seed * 7919 + 17);
  }

  /** A parameter of `shape` from U(-bound, bound). */
  uniform(name: string, shape: number[], bound: number): Tensor {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) data[i] = (2 * this.#uniform() - 1) * bound;
    return this.#add(name, shape, data);
  }

  /** A parameter of `shape` from N(0, std^2). */
  normal(name: string, shape: number[], std: number): Tensor {
    const n = shape.reduce((a, b) => a * b, 1);
    return this.#add(name, shape, randn(n, this.#seed * 104729 + ++this.#count, std));
  }

  /** A parameter of `shape` filled with `value`. */
  fill(name: string, shape: number[], value: number): Tensor {
    const n = shape.reduce((a, b) => a * b, 1);
    return this.#add(name, shape, new Float32Array(n).fill(value));
  }

  /** `${pre}weight` [out, inDim] and `${pre}bias` [out] with nn.Linear's default init. */
  linear(pre: string, inDim: number, out: number): { weight: Tensor; bias: Tensor } {
    const bound = 1 / Math.sqrt(inDim);
    return {
      weight: this.uniform(`${pre}weight`, [out, inDim], bound),
      bias: this.uniform(`${pre}bias`, [out], bound),
    };
  }

  #add(name: string, shape: number[], data: Float32Array): Tensor {
    if (this.params.has(name)) throw new Error(`ParamMaker: parameter "${name}" made twice`);
    const t = this.#e.param(data, shape, { dtype: this.#dtype, name });
    this.params.set(name, t);
    return t;
  }
}
