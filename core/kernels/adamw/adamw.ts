/**
 * The AdamW optimizer: one fused kernel per parameter updates the weight and both moments in place.
 * Moments are f32 for every parameter; an f16 parameter also gets an f32 master copy, which the
 * optimizer updates and rounds back into the parameter, so small updates are not lost to f16.
 * @module
 */

import { type DType, f32Bits } from "../../dtype.ts";
import type { Engine } from "../../engine.ts";
import { grid1d } from "../../engine.ts";
import type { Tensor } from "../../tensor.ts";

const WG = 256;

/**
 * The AdamW update of element i (PyTorch's): decoupled decay w -= lr * wd * w, moments
 * m = b1 m + (1 - b1) g, v = b2 v + (1 - b2) g^2, then w -= lr * (m / bc1) / (sqrt(v / bc2) + eps),
 * with the bias corrections bc = 1 - beta^t computed on the host. For f16 the weight lives in
 * `master`, read from the f16 parameter itself on a slot's first use (`fromParam`).
 */
function adamwCode(dtype: DType): string {
  const master = dtype === "f16";
  return `${master ? "enable f16;\n" : ""}
@group(0) @binding(0) var<storage, read_write> param: array<${dtype}>; // [n]
@group(0) @binding(1) var<storage, read> grad: array<${dtype}>;        // [n]
@group(0) @binding(2) var<storage, read_write> m: array<f32>;          // [n]
@group(0) @binding(3) var<storage, read_write> v: array<f32>;          // [n]
${master ? "@group(0) @binding(4) var<storage, read_write> master: array<f32>; // [n]" : ""}
struct P { n: u32, lr: f32, beta1: f32, beta2: f32, eps: f32, wd: f32, bc1: f32, bc2: f32, fromParam: u32 }
@group(0) @binding(${master ? 5 : 4}) var<uniform> p: P;
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * ${WG}u;
  if (i >= p.n) { return; }
  let g = f32(grad[i]);
  ${master ? "var w = master[i];\n  if (p.fromParam == 1u) { w = f32(param[i]); }" : "var w = param[i];"}
  w -= p.lr * p.wd * w;
  let mi = p.beta1 * m[i] + (1.0 - p.beta1) * g;
  let vi = p.beta2 * v[i] + (1.0 - p.beta2) * g * g;
  w -= p.lr * (mi / p.bc1) / (sqrt(vi / p.bc2) + p.eps);
  m[i] = mi;
  v[i] = vi;
  ${master ? "master[i] = w;\n  param[i] = f16(w);" : "param[i] = w;"}
}`;
}

/** Options of {@linkcode AdamW}. */
export interface AdamWOptions {
  /** Learning rate (a default for {@linkcode AdamW.step}). */
  lr: number;
  /** Decay of the first moment; default 0.9. */
  beta1?: number;
  /** Decay of the second moment; default 0.999. */
  beta2?: number;
  /** Added to the root of the second moment; default 1e-8. */
  eps?: number;
  /** Decoupled weight decay (p -= lr * weightDecay * p); default 0. */
  weightDecay?: number;
}

/** The optimizer state of one parameter, as host arrays (for checkpoints). */
export interface AdamWParamState {
  /** How many updates this parameter has had (its bias-correction step). */
  step: number;
  /** First moment [n]. */
  m: Float32Array;
  /** Second moment [n]. */
  v: Float32Array;
  /** The f32 master weights [n] of an f16 parameter (absent for f32 ones). */
  master?: Float32Array;
}

/** The whole optimizer state, one entry per parameter in constructor order. */
export interface AdamWState {
  /** How many times {@linkcode AdamW.step} ran. */
  step: number;
  /** Per parameter: its state, or null if it has not been updated yet. */
  params: (AdamWParamState | null)[];
}

/** GPU state of one parameter. */
interface Slot {
  m: Tensor;
  v: Tensor;
  master: Tensor | null;
  step: number;
  /** The master copy must first be read from the parameter (f16 only). */
  fromParam: boolean;
}

/**
 * AdamW with decoupled weight decay and bias correction, as in PyTorch. State (moments, f32 master
 * weights of f16 parameters) is created on a parameter's first update; each parameter counts its own
 * steps, so one that had no gradient for a while is corrected as if those steps did not happen.
 * @example
 * ```ts ignore
 * const opt = new AdamW(params, { lr: 1e-4, weightDecay: 0.01 });
 * backward(loss); opt.step(); zeroGrad(params);
 * ```
 */
export class AdamW {
  /** The parameters, in the order of the state's entries. */
  readonly params: readonly Tensor[];
  /** The learning rate {@linkcode step} uses when given none. */
  lr: number;
  /** Decay of the first moment. */
  readonly beta1: number;
  /** Decay of the second moment. */
  readonly beta2: number;
  /** Added to the root of the second moment. */
  readonly eps: number;
  /** Decoupled weight decay. */
  readonly weightDecay: number;

  #engine: Engine;
  #slots: (Slot | null)[];
  #step = 0;

  /** An optimizer over `params` (f32 or f16 tensors); no GPU memory is taken until the first step. */
  constructor(params: Tensor[], opts: AdamWOptions) {
    for (const p of params) {
      if (p.dtype !== "f32" && p.dtype !== "f16") throw new Error(`AdamW: parameter ${p} must be f32 or f16`);
    }
    if (params.length === 0) throw new Error("AdamW: no parameters");
    this.params = [...params];
    this.#engine = params[0].engine;
    this.#slots = params.map(() => null);
    this.lr = opts.lr;
    this.beta1 = opts.beta1 ?? 0.9;
    this.beta2 = opts.beta2 ?? 0.999;
    this.eps = opts.eps ?? 1e-8;
    this.weightDecay = opts.weightDecay ?? 0;
  }

  /** How many times {@linkcode step} ran (set when restoring a state parameter by parameter). */
  get stepCount(): number {
    return this.#step;
  }
  set stepCount(n: number) {
    if (!Number.isSafeInteger(n) || n < 0) throw new Error(`AdamW.stepCount: ${n} is not an integer >= 0`);
    this.#step = n;
  }

  /**
   * Updates every parameter that has a gradient (others are skipped) with learning rate `lr`
   * (default {@linkcode lr}): one dispatch per parameter (per piece of a split one), nothing waits on the GPU.
   */
  step(lr: number = this.lr): void {
    this.#step++;
    this.params.forEach((p, i) => {
      const pieces = p.pieces; // the parameter, or a split one's row blocks
      if (!pieces.some((q) => q.grad)) return;
      const s = this.#slots[i] ??= this.#newSlot(p);
      s.step++;
      const bc1 = 1 - this.beta1 ** s.step, bc2 = 1 - this.beta2 ** s.step;
      const floats = [lr, this.beta1, this.beta2, this.eps, this.weightDecay, bc1, bc2].map(f32Bits);
      const [m, v, master] = [s.m.pieces, s.v.pieces, s.master?.pieces];
      pieces.forEach((q, k) => {
        const g = q.grad;
        if (!g) return;
        if (g.size !== q.size || g.dtype !== q.dtype) throw new Error(`AdamW: gradient ${g} of ${p}`);
        this.#engine.run({
          label: "adamw",
          code: adamwCode(q.dtype),
          bindings: master ? [q, g, m[k], v[k], master[k]] : [q, g, m[k], v[k]],
          params: [q.size, ...floats, s.fromParam ? 1 : 0],
          workgroups: grid1d(q.size, WG),
        });
      });
      s.fromParam = false;
    });
  }

  /** The state as host arrays (reads the GPU), for checkpoints. */
  async state(): Promise<AdamWState> {
    const params: (AdamWParamState | null)[] = [];
    for (let i = 0; i < this.params.length; i++) {
      const info = this.paramInfo(i);
      if (!info) {
        params.push(null);
        continue;
      }
      const entry: AdamWParamState = {
        step: info.step,
        m: (await this.readState(i, "m"))!,
        v: (await this.readState(i, "v"))!,
      };
      const master = await this.readState(i, "master");
      if (master) entry.master = master;
      params.push(entry);
    }
    return { step: this.#step, params };
  }

  /**
   * Parameter `i`'s state without reading it: its update count and whether it holds f32 master weights
   * to save; null before its first update (no state yet).
   */
  paramInfo(i: number): { step: number; master: boolean } | null {
    const s = this.#slots[i];
    return s ? { step: s.step, master: s.master !== null && !s.fromParam } : null;
  }

  /**
   * One part of parameter `i`'s state read back: "m", "v" or "master" (null when it has none: no
   * update yet, an f32 parameter's master, or an f16 master not yet taken from its parameter). For
   * writing a large state one tensor at a time.
   */
  async readState(i: number, part: "m" | "v" | "master"): Promise<Float32Array | null> {
    const s = this.#slots[i];
    if (!s) return null;
    const t = part === "m" ? s.m : part === "v" ? s.v : s.fromParam ? null : s.master;
    return t ? (await t.read()) as Float32Array : null;
  }

  /**
   * Restores a state from {@linkcode state} (same parameters, same order). An f16 parameter without
   * saved master weights takes them from its current value; master weights of f32 parameters are ignored.
   */
  loadState(state: AdamWState): void {
    if (state.params.length !== this.params.length) {
      throw new Error(`AdamW.loadState: ${state.params.length} entries for ${this.params.length} parameters`);
    }
    state.params.forEach((st, i) => this.loadParamState(i, st));
    this.#step = state.step;
  }

  /**
   * Restores the state of parameter `i` alone (null: none yet), as {@linkcode loadState} does for every
   * one: to restore a large model's state one parameter at a time, then set {@linkcode stepCount}.
   */
  loadParamState(i: number, st: AdamWParamState | null): void {
    const p = this.params[i];
    if (!p) throw new Error(`AdamW.loadParamState: no parameter ${i} (${this.params.length} in all)`);
    if (!st) {
      this.#disposeSlot(i);
      return;
    }
    const check = (name: string, a: Float32Array) => {
      if (a.length !== p.size) throw new Error(`AdamW.loadState: ${name} has ${a.length} values for ${p}`);
    };
    check("m", st.m);
    check("v", st.v);
    if (st.master) check("master", st.master);
    const s = this.#slots[i] ??= this.#newSlot(p);
    this.#engine.write(s.m, st.m);
    this.#engine.write(s.v, st.v);
    if (s.master && st.master) this.#engine.write(s.master, st.master);
    s.fromParam = s.master !== null && !st.master;
    s.step = st.step;
  }

  /** Frees the optimizer's GPU state (the parameters stay). */
  dispose(): void {
    this.#slots.forEach((_, i) => this.#disposeSlot(i));
  }

  #newSlot(p: Tensor): Slot {
    const e = this.#engine;
    const keep = (t: Tensor) => {
      e.untrack(t);
      return t;
    };
    const f16 = p.dtype === "f16";
    // Split like the parameter (pieces are sized so that f32 fits), so piece k updates with its state.
    const zeros = () => {
      const t = keep(e.emptyLike(p, "f32"));
      for (const q of t.pieces) e.encoder.clearBuffer(q.buffer, 0, q.bindSize);
      return t;
    };
    return {
      m: zeros(),
      v: zeros(),
      master: f16 ? keep(e.emptyLike(p, "f32")) : null,
      step: 0,
      fromParam: f16,
    };
  }

  #disposeSlot(i: number): void {
    const s = this.#slots[i];
    if (!s) return;
    s.m.dispose();
    s.v.dispose();
    s.master?.dispose();
    this.#slots[i] = null;
  }
}
