/**
 * Seeded parameter initialization for the heads, after PyTorch's module defaults: `nn.Linear`
 * draws weight and bias from U(-1/sqrt(fan_in), 1/sqrt(fan_in)); norms start at ones.
 *
 * A head makes its parameters through a {@linkcode ParamSink}: {@linkcode ParamMaker} creates them on
 * the GPU, {@linkcode ShapeRecorder} only notes each name and shape. Running the same code with the
 * recorder gives the head's parameter shapes without an engine, which is how `--plan` counts a head
 * (one description of the architecture, not two).
 * @module
 */

import type { DType } from "../core/dtype.ts";
import type { Engine } from "../core/engine.ts";
import { randn, rng } from "../core/random.ts";
import type { Tensor } from "../core/tensor.ts";

/** Options of a parameter made by a {@linkcode ParamSink}. */
export interface ParamOptions {
  /** Kept (loaded and saved) but never trained: `requiresGrad` false (default false). */
  frozen?: boolean;
}

/** Where a head's parameters are made: on the GPU (`ParamMaker`) or as shapes only (`ShapeRecorder`). */
export interface ParamSink<T> {
  /** A parameter of `shape` from U(-bound, bound). */
  uniform(name: string, shape: number[], bound: number, opts?: ParamOptions): T;
  /** A parameter of `shape` from N(0, std^2). */
  normal(name: string, shape: number[], std: number, opts?: ParamOptions): T;
  /** A parameter of `shape` filled with `value`. */
  fill(name: string, shape: number[], value: number, opts?: ParamOptions): T;
  /** `${pre}weight` [out, inDim] and `${pre}bias` [out] with nn.Linear's default init. */
  linear(pre: string, inDim: number, out: number): { weight: T; bias: T };
}

/** Creates named parameters into one map, from one seeded stream. */
export class ParamMaker implements ParamSink<Tensor> {
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
  uniform(name: string, shape: number[], bound: number, opts?: ParamOptions): Tensor {
    const n = numel(shape);
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) data[i] = (2 * this.#uniform() - 1) * bound;
    return this.#add(name, shape, data, opts);
  }

  /** A parameter of `shape` from N(0, std^2). */
  normal(name: string, shape: number[], std: number, opts?: ParamOptions): Tensor {
    return this.#add(name, shape, randn(numel(shape), this.#seed * 104729 + ++this.#count, std), opts);
  }

  /** A parameter of `shape` filled with `value`. */
  fill(name: string, shape: number[], value: number, opts?: ParamOptions): Tensor {
    return this.#add(name, shape, new Float32Array(numel(shape)).fill(value), opts);
  }

  /** `${pre}weight` [out, inDim] and `${pre}bias` [out] with nn.Linear's default init. */
  linear(pre: string, inDim: number, out: number): { weight: Tensor; bias: Tensor } {
    const bound = 1 / Math.sqrt(inDim);
    return {
      weight: this.uniform(`${pre}weight`, [out, inDim], bound),
      bias: this.uniform(`${pre}bias`, [out], bound),
    };
  }

  #add(name: string, shape: number[], data: Float32Array, opts?: ParamOptions): Tensor {
    if (this.params.has(name)) throw new Error(`ParamMaker: parameter "${name}" made twice`);
    const t = this.#e.param(data, shape, { dtype: this.#dtype, name });
    if (opts?.frozen) t.requiresGrad = false;
    this.params.set(name, t);
    return t;
  }
}

/** A parameter as `--plan` counts it: its shape, and whether it is kept but never trained. */
export interface ParamShape {
  /** The shape. */
  shape: number[];
  /** Kept (loaded and saved) but never trained (default false). */
  frozen?: boolean;
}

/** Notes the name and shape of each parameter a head would make; makes nothing. */
export class ShapeRecorder implements ParamSink<number[]> {
  /** The parameters noted so far, by name, in the order made. */
  readonly shapes: Map<string, ParamShape> = new Map();

  /** Notes `name`: `shape`. */
  uniform(name: string, shape: number[], _bound: number, opts?: ParamOptions): number[] {
    return this.#add(name, shape, opts);
  }

  /** Notes `name`: `shape`. */
  normal(name: string, shape: number[], _std: number, opts?: ParamOptions): number[] {
    return this.#add(name, shape, opts);
  }

  /** Notes `name`: `shape`. */
  fill(name: string, shape: number[], _value: number, opts?: ParamOptions): number[] {
    return this.#add(name, shape, opts);
  }

  /** Notes `${pre}weight` [out, inDim] and `${pre}bias` [out]. */
  linear(pre: string, inDim: number, out: number): { weight: number[]; bias: number[] } {
    return { weight: this.#add(`${pre}weight`, [out, inDim]), bias: this.#add(`${pre}bias`, [out]) };
  }

  #add(name: string, shape: number[], opts?: ParamOptions): number[] {
    if (this.shapes.has(name)) throw new Error(`ShapeRecorder: parameter "${name}" made twice`);
    this.shapes.set(name, opts?.frozen ? { shape: [...shape], frozen: true } : { shape: [...shape] });
    return shape;
  }
}

function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}
