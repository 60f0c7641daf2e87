/**
 * Tape-based reverse-mode autograd. Ops call {@linkcode record} with a backward closure; {@linkcode backward}
 * walks the tape in reverse, sums gradients of shared inputs and accumulates parameter gradients into
 * `param.grad`. Frozen parameters (`requiresGrad = false`) get no weight gradient while activation
 * gradients still flow through the op. {@linkcode checkpoint} re-runs a block's forward inside backward.
 * @module
 */

import type { Engine, TapeNode } from "./engine.ts";
import { grid1d } from "./engine.ts";
import type { Tensor } from "./tensor.ts";

/**
 * Records an op on the tape when gradients are enabled and some input needs one. `backward` gets the
 * output's gradient and which inputs need gradients, and returns one gradient (or null) per input,
 * each of its input's shape. Returns `output`.
 */
export function record(
  output: Tensor,
  inputs: Tensor[],
  backward: (grad: Tensor, needs: boolean[]) => (Tensor | null)[],
): Tensor {
  const e = output.engine;
  const needs = inputs.map((x) => x.requiresGrad);
  if (!needs.some(Boolean)) return output;
  if (!e.gradEnabled) {
    e.sawGradInput = true;
    return output;
  }
  output.requiresGrad = true;
  e.tape.push({ inputs, needs, output, backward: (g) => backward(g, needs) });
  return output;
}

/**
 * Back-propagates from `loss` (a scalar, or any tensor with `grad` as its gradient, default ones)
 * through the engine's tape, accumulating into the `grad` of every parameter that requires one,
 * then clears the tape.
 */
export function backward(loss: Tensor, grad?: Tensor): void {
  const e = loss.engine;
  const tape = e.tape;
  e.tape = [];
  const g = grad ?? e.full(loss.shape, 1, loss.dtype);
  const grads = runTape(e, tape, loss, g);
  if (loss.isParam) accumulateGrad(loss, g);
  grads.clear();
}

/**
 * Walks `tape` backwards from `output` with gradient `grad`; accumulates parameter gradients into
 * `param.grad` and returns the gradients of the non-parameter tensors it reached that no op on the
 * tape produced (its leaves). An intermediate gradient is freed as soon as nothing needs it any
 * more, so backward holds the gradients of the live frontier only, not of every activation.
 */
export function runTape(e: Engine, tape: TapeNode[], output: Tensor, grad: Tensor): Map<Tensor, Tensor> {
  const grads = new Map<Tensor, Tensor>([[output, grad]]);
  // How many entries of `grads` share each buffer (views count against their base).
  const refs = new Map<Tensor, number>();
  const owner = (t: Tensor) => t.base ?? t;
  const hold = (t: Tensor) => refs.set(owner(t), (refs.get(owner(t)) ?? 0) + 1);
  const freeIfUnused = (t: Tensor) => {
    const o = owner(t);
    if (!refs.has(o) && o !== owner(grad)) o.dispose();
  };
  const release = (t: Tensor) => {
    const o = owner(t), n = (refs.get(o) ?? 0) - 1;
    if (n > 0) refs.set(o, n);
    else refs.delete(o);
    freeIfUnused(o);
  };
  hold(grad);
  e.noGrad(() => {
    for (let i = tape.length - 1; i >= 0; i--) {
      const node = tape[i];
      const go = grads.get(node.output);
      if (!go) continue;
      const gin = node.backward(go);
      for (let j = 0; j < node.inputs.length; j++) {
        const gx = gin[j];
        if (!node.needs[j] || !gx) continue;
        const x = node.inputs[j];
        if (gx.size !== x.size) {
          throw new Error(`backward of an op returned a gradient ${gx} for input ${x}`);
        }
        if (x.isParam) {
          accumulateGrad(x, gx);
        } else {
          const prev = grads.get(x);
          const next = prev ? addGrads(prev, gx) : gx;
          grads.set(x, next);
          hold(next);
          if (prev) release(prev);
        }
      }
      // The output's gradient is consumed; free it and any input gradient nothing holds (e.g. one
      // already added into a parameter's grad). Work recorded on them still runs in order.
      grads.delete(node.output);
      release(go);
      for (const gx of gin) if (gx) freeIfUnused(gx);
    }
  });
  return grads;
}

/**
 * Gradient checkpointing: runs `fn` without keeping its intermediates, and re-runs it inside backward
 * to get the gradients of `inputs` and of the parameters it uses. `fn` must be deterministic.
 */
export function checkpoint(fn: (...xs: Tensor[]) => Tensor, ...inputs: Tensor[]): Tensor {
  const e = inputs[0].engine;
  if (!e.gradEnabled) return fn(...inputs);
  const prevSaw = e.sawGradInput;
  e.sawGradInput = false;
  const out = e.tidy(() => e.noGrad(() => fn(...inputs)));
  const trainable = e.sawGradInput || inputs.some((x) => x.requiresGrad);
  e.sawGradInput = prevSaw;
  if (!trainable) return out;
  const needs = inputs.map((x) => x.requiresGrad);
  out.requiresGrad = true;
  e.tape.push({
    inputs,
    needs,
    output: out,
    backward: (g) =>
      e.tidy(() => {
        const xs = inputs.map((x, i) => {
          const v = x.view(x.shape);
          v.requiresGrad = needs[i];
          return v;
        });
        const sub: TapeNode[] = [];
        const y = e.withTape(sub, () => fn(...xs));
        const grads = runTape(e, sub, y, g);
        return xs.map((v) => grads.get(v) ?? null);
      }),
  });
  return out;
}

/** A view of `x` with another shape, differentiable. */
export function reshape(x: Tensor, shape: readonly number[]): Tensor {
  const v = x.view(shape);
  return record(v, [x], (g) => [g.view(x.shape)]);
}

/** A new tensor equal to `x` with no tape history (gradients stop here). */
export function detach(x: Tensor): Tensor {
  const out = x.engine.empty(x.shape, x.dtype);
  x.engine.copy(x, out);
  return out;
}

/** Sets every parameter's gradient to zero (keeping the buffers). */
export function zeroGrad(params: Iterable<Tensor>): void {
  for (const p of leaves(params)) {
    if (p.grad) p.engine.encoder.clearBuffer(p.grad.buffer, 0, p.grad.bindSize);
  }
}

/** The tensors that hold parameters' data and gradients: each parameter, or a split one's pieces. */
export function leaves(params: Iterable<Tensor>): Tensor[] {
  return [...params].flatMap((p) => p.pieces);
}

/** Adds `g` into `param.grad`, creating it (untracked by scopes) on first use. */
export function accumulateGrad(param: Tensor, g: Tensor): void {
  const e = param.engine;
  if (!param.grad) {
    const grad = e.empty(param.shape, param.dtype);
    e.untrack(grad);
    e.copy(g, grad);
    param.grad = grad;
    return;
  }
  addInPlace(param.grad, g);
}

/** dst += src, elementwise, same size and dtype. */
export function addInPlace(dst: Tensor, src: Tensor): void {
  if (dst.size !== src.size || dst.dtype !== src.dtype) throw new Error(`addInPlace: ${dst} += ${src}`);
  const e = dst.engine;
  e.run({
    label: "add_inplace",
    code: addCode(dst.dtype),
    bindings: [dst, src],
    params: [dst.size],
    workgroups: grid1d(dst.size, 256),
  });
}

/** A new tensor a + b, same size and dtype (the sum of two gradients). */
function addGrads(a: Tensor, b: Tensor): Tensor {
  const e = a.engine;
  const out = e.empty(a.shape, a.dtype);
  e.copy(a, out);
  addInPlace(out, b);
  return out;
}

function addCode(dtype: string): string {
  return `${dtype === "f16" ? "enable f16;" : ""}
@group(0) @binding(0) var<storage, read_write> dst: array<${dtype}>;
@group(0) @binding(1) var<storage, read> src: array<${dtype}>;
struct P { n: u32 }
@group(0) @binding(2) var<uniform> p: P;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= p.n) { return; }
  dst[i] = ${dtype}(f32(dst[i]) + f32(src[i]));
}`;
}
