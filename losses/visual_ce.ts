/**
 * Cross-entropy of a linear classifier over many rows and a large vocabulary, computed in row chunks
 * so that the logits [R, V] never exist whole: the visual head's loss (ASVR: R = B * 729 patches per
 * depth, V = 16384 codes), where the full f32 logits of all 8 depths would take ~1.5 GB.
 *
 * Forward: per chunk of rows, logits = states[rows] @ weight^T + bias, the summed cross-entropy of
 * the chunk, then the chunk's logits are freed. Backward (one tape node for the whole loss): per
 * chunk, the logits are recomputed under a small tape (the idea of `checkpoint`), their gradient
 * flows into the chunk's states rows and into one weight/bias gradient accumulated in place. So
 * backward holds at most one chunk's logits and their gradient, plus one [R, C] states gradient and
 * one [V, C] weight gradient (none for parameters, which accumulate straight into `param.grad`).
 *
 * Why not one `checkpoint` per chunk: each checkpointed chunk would hand back a full [R, C] states
 * gradient (the slice's backward pads with zeros) and its own [V, C] weight gradient, and the tape
 * keeps every one of them alive until the enclosing scope ends, k chunks x ([R, C] + [V, C]).
 * @module
 */

import { addInPlace, record, runTape } from "../core/autograd.ts";
import { bytesPerElement, type DType, isFloat } from "../core/dtype.ts";
import type { Engine, TapeNode } from "../core/engine.ts";
import { grid1d } from "../core/engine.ts";
import { crossEntropy } from "../core/kernels/cross_entropy/cross_entropy.ts";
import { mul, scale } from "../core/kernels/elementwise/elementwise.ts";
import { matmul } from "../core/kernels/matmul/matmul.ts";
import { slice } from "../core/kernels/rows/rows.ts";
import type { Tensor } from "../core/tensor.ts";
import { IGNORE_INDEX } from "../core/labels.ts";
import { meanWeight } from "./mean_weight.ts";

/** Options of {@linkcode classifierCrossEntropy}. */
export interface ClassifierCrossEntropyOptions {
  /**
   * Rows per chunk (default {@linkcode defaultChunkRows}: a chunk's logits stay under 64 MiB). Any
   * positive integer; it need not divide R. Results do not depend on it beyond float rounding.
   */
  chunkRows?: number;
  /**
   * The number of counted rows, when the caller knows it (targets built on the host). Without it the
   * count is computed on the GPU from the targets (no readback).
   */
  count?: number;
}

/** The byte budget of one chunk's logits that {@linkcode defaultChunkRows} aims for (64 MiB). */
export const CHUNK_LOGITS_BYTES: number = 64 * 1024 * 1024;

/**
 * Rows per chunk so that a chunk's logits [rows, V] of `dtype` take at most `budgetBytes` (default
 * {@linkcode CHUNK_LOGITS_BYTES}); at least 1.
 */
export function defaultChunkRows(
  vocab: number,
  dtype: DType = "f32",
  budgetBytes = CHUNK_LOGITS_BYTES,
): number {
  return Math.max(1, Math.floor(budgetBytes / (vocab * bytesPerElement(dtype))));
}

/**
 * Mean cross-entropy of logits = states @ weight^T + bias against `targets`, over the counted rows,
 * computed in chunks of rows so that at most one chunk's logits [chunkRows, V] exist at any time, in
 * forward and in backward.
 *
 * - states: [R, C] (f32 or f16), the classifier's inputs.
 * - weight: [V, C] of states' dtype (an `nn.Linear(C, V)` weight); bias: [V] or null.
 * - targets: i32 [R]; a row counts when its target is a class id in [0, V) (-100: not counted).
 *
 * Returns an f32 scalar [], 0 when no row counts. Differentiable in states, weight and bias;
 * frozen ones (`requiresGrad = false`) get no gradient.
 *
 * @example
 * ```ts ignore
 * // one depth of the visual head: states [B*N, C], head weight [V, C], codes of depth d i32 [B*N]
 * const loss = classifierCrossEntropy(states, head.weight, head.bias, codes, { chunkRows: 1024 });
 * ```
 */
export function classifierCrossEntropy(
  states: Tensor,
  weight: Tensor,
  bias: Tensor | null,
  targets: Tensor,
  opts: ClassifierCrossEntropyOptions = {},
): Tensor {
  const { R, V } = checkInputs(states, weight, bias, targets);
  const e = states.engine;
  const rows = chunkRowsOf(opts.chunkRows, V, states, R);
  const count = opts.count;
  if (count !== undefined && !(Number.isInteger(count) && count >= 0 && count <= R)) {
    throw new Error(
      `classifierCrossEntropy: opts.count is ${count}; it must be the number of counted rows, an integer in 0..${R}`,
    );
  }
  const chunks: [number, number][] = [];
  for (let r0 = 0; r0 < R; r0 += rows) chunks.push([r0, Math.min(R, r0 + rows)]);

  // The weight of the sum: 1 / max(count, 1), on the GPU unless the caller gave the count.
  const w = count === undefined ? meanWeight(targets, V, IGNORE_INDEX) : null;
  const toMean = (s: Tensor) => (w ? mul(s, w) : scale(s, 1 / Math.max(count!, 1)));

  const total = e.zeros([]); // f32: the sum of the row losses
  e.noGrad(() => {
    for (const [r0, r1] of chunks) {
      e.tidy(() => addInPlace(total, chunkLoss(states, weight, bias, targets, r0, r1)));
    }
  });
  const out = e.noGrad(() => toMean(total));
  total.dispose();

  const inputs = bias ? [states, weight, bias] : [states, weight];
  return record(out, inputs, (g, needs) => {
    const gs = toMean(g); // d loss / d (sum of row losses)
    // The states gradient [R, C] is filled chunk by chunk. A weight or bias that is a parameter
    // accumulates into its param.grad inside the chunk tapes; otherwise it gets one gradient here.
    const grads = inputs.map((x, i) => {
      if (!needs[i]) return null;
      if (i === 0) return e.empty(x.shape, x.dtype);
      return x.isParam ? null : e.zeros(x.shape, x.dtype);
    });
    for (const [r0, r1] of chunks) {
      e.tidy(() => {
        const xs = slice(states, 0, r0, r1); // [c, C], not recorded (backward runs without a tape)
        xs.requiresGrad = needs[0];
        const leaf = (x: Tensor, need: boolean) => {
          if (x.isParam) return x;
          const v = x.view(x.shape);
          v.requiresGrad = need;
          return v;
        };
        const wv = leaf(weight, needs[1]), bv = bias ? leaf(bias, needs[2]) : null;
        const tape: TapeNode[] = [];
        const l = e.withTape(tape, () => chunkLoss(xs, wv, bv, targets, r0, r1, true));
        const got = runTape(e, tape, l, gs);
        const [dx, dw, db] = grads;
        const gx = got.get(xs);
        if (dx && gx) writeRows(dx, gx, r0);
        else if (dx) clearRows(dx, r0, r1); // no gradient reached these rows
        const gw = got.get(wv);
        if (dw && gw) addInPlace(dw, gw);
        const gb = bv ? got.get(bv) : undefined;
        if (db && gb) addInPlace(db, gb);
      });
    }
    gs.dispose();
    return grads;
  });
}

/**
 * The summed cross-entropy of rows r0..r1: logits [c, V] = x @ weight^T + bias, then CE "sum". With
 * `sliced` the states are already the chunk's rows.
 */
function chunkLoss(
  x: Tensor,
  weight: Tensor,
  bias: Tensor | null,
  targets: Tensor,
  r0: number,
  r1: number,
  sliced = false,
): Tensor {
  const xs = sliced ? x : slice(x, 0, r0, r1); // [c, C]
  const logits = matmul(xs, weight, { transB: true, bias: bias ?? undefined }); // [c, V]
  const ts = slice(targets, 0, r0, r1); // i32 [c]
  return crossEntropy(logits, ts, { ignoreIndex: IGNORE_INDEX, reduction: "sum" });
}

function checkInputs(
  states: Tensor,
  weight: Tensor,
  bias: Tensor | null,
  targets: Tensor,
): { R: number; C: number; V: number } {
  const op = "classifierCrossEntropy";
  if (states.shape.length !== 2 || !isFloat(states.dtype)) {
    throw new Error(`${op}: states must be f32 or f16 [R, C], got ${states}; reshape [B, N, C] to [B*N, C]`);
  }
  const [R, C] = states.shape;
  if (weight.shape.length !== 2 || weight.shape[1] !== C || weight.dtype !== states.dtype) {
    throw new Error(
      `${op}: weight must be ${states.dtype}[V, ${C}] (an nn.Linear(${C}, V) weight), got ${weight}`,
    );
  }
  const V = weight.shape[0];
  if (V < 1) throw new Error(`${op}: weight ${weight} has no classes`);
  if (bias && (bias.shape.length !== 1 || bias.shape[0] !== V || bias.dtype !== states.dtype)) {
    throw new Error(`${op}: bias must be ${states.dtype}[${V}] or null, got ${bias}`);
  }
  if (targets.dtype !== "i32" || targets.size !== R) {
    throw new Error(
      `${op}: targets must be i32 [${R}] (one class id or -100 per row of ${states}), got ${targets}`,
    );
  }
  return { R, C, V };
}

function chunkRowsOf(asked: number | undefined, V: number, states: Tensor, R: number): number {
  if (asked !== undefined && !(Number.isInteger(asked) && asked >= 1)) {
    throw new Error(`classifierCrossEntropy: opts.chunkRows is ${asked}; it must be a positive integer`);
  }
  // A chunk's logits must also fit one storage binding of this adapter.
  const maxBinding = states.engine.limit("maxStorageBufferBindingSize");
  const fit = defaultChunkRows(V, states.dtype, maxBinding);
  const rows = Math.min(asked ?? defaultChunkRows(V, states.dtype), fit);
  return Math.max(1, Math.min(rows, R));
}

// dst[(row0 + i) * C + j] = src[i * C + j] (src null: 0) for the n = rows * C elements of a chunk.
function writeRowsCode(dtype: DType, zero: boolean): string {
  return `${dtype === "f16" ? "enable f16;" : ""}
@group(0) @binding(0) var<storage, read_write> dst: array<${dtype}>; // [R, C]
${zero ? "" : `@group(0) @binding(1) var<storage, read> src: array<${dtype}>; // [c, C]`}
struct P { n: u32, offset: u32 }
@group(0) @binding(${zero ? 1 : 2}) var<uniform> p: P;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= p.n) { return; }
  dst[p.offset + i] = ${zero ? `${dtype}(0)` : "src[i]"};
}`;
}

/** Copies the chunk gradient src [c, C] into rows row0.. of dst [R, C]. */
function writeRows(dst: Tensor, src: Tensor, row0: number): void {
  const C = dst.shape[1], n = src.size;
  if (n === 0) return;
  const e: Engine = dst.engine;
  e.run({
    label: "classifier_ce_write_rows",
    code: writeRowsCode(dst.dtype, false),
    bindings: [dst, src],
    params: [n, row0 * C],
    workgroups: grid1d(n, 256),
  });
}

/** Zeroes rows r0..r1 of dst [R, C]. */
function clearRows(dst: Tensor, r0: number, r1: number): void {
  const C = dst.shape[1], n = (r1 - r0) * C;
  if (n === 0) return;
  dst.engine.run({
    label: "classifier_ce_clear_rows",
    code: writeRowsCode(dst.dtype, true),
    bindings: [dst],
    params: [n, r0 * C],
    workgroups: grid1d(n, 256),
  });
}

/** What {@linkcode visualLogitsBytes} estimates. */
export interface VisualLogitsBytesOptions {
  /** Rows of the loss (e.g. B * N patches * D depths). */
  rows: number;
  /** Classes per row (the codebook size V). */
  vocab: number;
  /** Rows per chunk (default {@linkcode defaultChunkRows} of vocab and dtype). */
  chunkRows?: number;
  /** The logits' dtype, that of the states (default "f32"). */
  dtype?: "f32" | "f16";
}

/** Bytes of logits at peak, chunked and not. */
export interface VisualLogitsBytes {
  /** Rows per chunk used. */
  chunkRows: number;
  /** Peak bytes of logits in {@linkcode classifierCrossEntropy}: one chunk's logits and their gradient. */
  chunked: number;
  /** Bytes of the whole logits [rows, vocab] (an unchunked loss holds these, and as much again in backward). */
  unchunked: number;
}

/**
 * For planning memory: the bytes of logits that {@linkcode classifierCrossEntropy} holds at peak
 * (backward: one chunk's recomputed logits and their gradient, 2 x chunkRows x vocab elements) and the
 * bytes of the full logits an unchunked loss would make.
 *
 * Worked example, the 7B recipe's visual head: B = 4 samples x 729 patches x 8 depths = 23328 rows,
 * V = 16384, f32: unchunked 23328 x 16384 x 4 = 1,528,823,808 bytes (~1.5 GB, twice that with the
 * gradient); chunked with the default 1024 rows, 2 x 64 MiB = 134,217,728 bytes.
 *
 * @example
 * ```ts
 * const { chunked, unchunked } = visualLogitsBytes({ rows: 4 * 729 * 8, vocab: 16384 });
 * // chunked = 134217728 (128 MiB), unchunked = 1528823808 (~1.5 GB)
 * ```
 */
export function visualLogitsBytes(opts: VisualLogitsBytesOptions): VisualLogitsBytes {
  const { rows, vocab, dtype = "f32" } = opts;
  for (const [name, v] of [["rows", rows], ["vocab", vocab]] as const) {
    if (!Number.isInteger(v) || v < 0) {
      throw new Error(`visualLogitsBytes: ${name} is ${v}; it must be an integer >= 0`);
    }
  }
  const asked = opts.chunkRows ?? defaultChunkRows(Math.max(vocab, 1), dtype);
  if (!Number.isInteger(asked) || asked < 1) {
    throw new Error(`visualLogitsBytes: chunkRows is ${asked}; it must be a positive integer`);
  }
  const bpe = bytesPerElement(dtype);
  const chunkRows = Math.min(asked, rows);
  return { chunkRows, chunked: 2 * chunkRows * vocab * bpe, unchunked: rows * vocab * bpe };
}
