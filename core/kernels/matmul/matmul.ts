/**
 * Matrix multiplication with autograd: out = op(a) @ op(b) + bias, batched, where op() is an
 * optional transpose read straight from storage (no copies, also in backward).
 *
 * Three kernels compute every matmul (and its gradients):
 * - `vec4`, the one GPUs use where the shapes allow it (the dims read 4-wide are multiples of 4:
 *   N, and K or M where the operand is stored with them contiguous): 64x64 or 128x128 output tiles,
 *   vec4 loads from storage, double-buffered vec4 tiles in workgroup memory (the next tile is loaded
 *   into registers while the current one is used: one barrier per step), and per thread 4 x 4 blocks
 *   of contiguous rows and columns, so that each step reads 2 vec4 per block from workgroup memory
 *   for 64 FMAs.
 * - `tiled`, the portable one used for every other shape: 64x64 (4 x 4 per thread) or, for large
 *   products, 128x128 (8 x 8 per thread) output tiles staged through workgroup memory by 16 x 16
 *   threads, reading storage buffers element by element.
 * - `texture`, for software adapters (Mesa's lavapipe, `isFallbackAdapter`). lavapipe runs 8
 *   invocations as the 8 lanes of a CPU vector; its storage-buffer and workgroup-memory loads go
 *   through a per-lane scalar loop, and loads from read-only storage textures are much cheaper
 *   (the same kernel ran ~3x faster than on vec4 storage buffers, ~2x faster than on sampled
 *   textures). So the operands are copied into rgba textures (4 elements per texel, the
 *   tensor's elements in order over a {@linkcode TEX_WIDTH}-texel-wide texture), and each
 *   invocation accumulates a 16 x 16 block in registers with no workgroup memory. Measured on 2
 *   cores at 1024^3: tiled ~1-2 GFLOP/s, texture ~20-40 GFLOP/s (the copies into textures included;
 *   the range is other processes' load). It needs the texel-grouped dims to be multiples of 4 (K,
 *   and M with transA, N without transB); other shapes use `tiled`.
 * @module
 */

import { record } from "../../autograd.ts";
import { sumTo } from "../reduce/reduce.ts";
import { type DType, isFloat } from "../../dtype.ts";
import { type Engine, grid1d, type KernelCall } from "../../engine.ts";
import type { Tensor } from "../../tensor.ts";
import { type MeasuredChoice, MeasuredChoices } from "../../timing.ts";
import { SplitTensor } from "../../split_tensor.ts";
import { concat, slice } from "../rows/rows.ts";

/** Options of {@linkcode matmul}. */
export interface MatmulOptions {
  /** `a` is stored [..., K, M] and used transposed. */
  transA?: boolean;
  /** `b` is stored [..., N, K] and used transposed (e.g. a [C_out, C] weight). */
  transB?: boolean;
  /** [N], added to every output row. */
  bias?: Tensor;
  /**
   * The kernel to use (default "auto": `texture` on software adapters when the shapes allow it,
   * else `vec4` when they allow it, else `tiled`; both with 128 x 128 tiles for large products,
   * 64 x 64 for small ones); "tiled" / "vec4" (64), "tiled128" / "vec4_128" or "texture" force one
   * (tests, benchmarks), and "vec4" and "texture" throw when the shapes do not allow them.
   */
  kernel?: MatmulKernel;
  /**
   * f16 operands on the vec4 kernel: each step's 8 or 16 products are summed with packed f16 FMAs
   * before they join the f32 accumulators (default false: every product is summed in f32). Fewer
   * instructions per product on GPUs with packed f16 math, at about 10x the rounding error (unit-normal
   * operands, K 44: max abs error 0.026 against 0.002). Other kernels and f32 ignore it. Calls that do
   * not say follow the engine ({@linkcode setPackedF16}).
   */
  packedF16?: boolean;
  /**
   * The vec4 kernel splits K into this many parts, each summed by its own workgroups into f32 partial
   * sums that a second kernel adds up (default: chosen on GPUs when the output tiles are too few to
   * fill one, see `splitParts`). Other kernels ignore it.
   */
  splitK?: number;
}

/** Which kernel computes a matmul (see {@linkcode MatmulOptions.kernel}). */
export type MatmulKernel = (typeof MATMUL_KERNELS)[number];

/** Every {@linkcode MatmulKernel}. */
export const MATMUL_KERNELS = ["auto", "tiled", "tiled128", "vec4", "vec4_128", "texture"] as const;

/** Width in texels of the textures that hold `texture`-kernel operands (a power of two). */
export const TEX_WIDTH = 4096;

/**
 * out = op(a) @ op(b) (+ bias), f32 or f16 (f16 storage, f32 accumulation).
 *
 * a: [..., M, K] ([..., K, M] with transA); b: [..., K, N] ([..., N, K] with transB), with the same
 * leading dims as `a`, or 2-D and then shared by every matrix of the batch; bias: [N].
 * Returns [..., M, N]. Backward gives dA, dB (summed over the batch when `b` was shared) and
 * dbias (column sums of the output gradient), each only where needed.
 *
 * A weight split over several buffers ({@linkcode SplitTensor}, rows of [N, K]) is taken with
 * `transB`: one product per piece, the output columns concatenated.
 *
 * @example
 * ```ts
 * const y = matmul(x, w, { transB: true, bias }); // x [B, T, C], w [C_out, C] -> y [B, T, C_out]
 * ```
 */
export function matmul(a: Tensor, b: Tensor, opts: MatmulOptions = {}): Tensor {
  const { transA = false, transB = false, bias, kernel = "auto", splitK } = opts;
  const e = a.engine;
  const packedF16 = opts.packedF16 ?? enginePackedF16.has(e);
  const ra = a.shape.length, rb = b.shape.length;
  if (ra < 2 || rb < 2) throw new Error(`matmul: ${a} @ ${b}: operands need at least 2 dims`);
  if (a.dtype !== b.dtype || !isFloat(a.dtype)) {
    throw new Error(`matmul: ${a} @ ${b}: dtypes must be equal floats`);
  }
  if (b instanceof SplitTensor) return matmulSplitB(a, b, opts);
  const M = a.shape[ra - (transA ? 1 : 2)], K = a.shape[ra - (transA ? 2 : 1)];
  const Kb = b.shape[rb - (transB ? 1 : 2)], N = b.shape[rb - (transB ? 2 : 1)];
  if (K !== Kb) throw new Error(`matmul: ${a} @ ${b} (transA ${transA}, transB ${transB}): K ${K} != ${Kb}`);
  const lead = a.shape.slice(0, -2);
  const shared = rb === 2;
  if (!shared && (rb !== ra || b.shape.slice(0, -2).some((d, i) => d !== lead[i]))) {
    throw new Error(`matmul: ${a} @ ${b}: b must be 2-D or have a's leading dims`);
  }
  if (bias && (bias.dtype !== a.dtype || bias.shape.length !== 1 || bias.shape[0] !== N)) {
    throw new Error(`matmul: bias ${bias} must be ${a.dtype}[${N}]`);
  }
  const batch = lead.reduce((x, y) => x * y, 1);
  const out = e.empty([...lead, M, N], a.dtype);
  // dst [m, n] = op(x) [m, k] @ op(y) [k, n] for each matrix of the batch (with `sum`, summed over it).
  const product = (dst: Tensor, x: Operand, y: Operand, m: number, n: number, k: number, sum = false) => {
    const [nb, ns] = sum ? [1, batch] : [batch, 1];
    gemm({
      a: x,
      b: y,
      out: dst,
      bias: null,
      M: m,
      N: n,
      K: k,
      batch: nb,
      nsum: ns,
      kernel,
      packedF16,
      splitK,
    });
  };
  const A: Operand = { t: a, trans: transA, stride: M * K };
  const B: Operand = { t: b, trans: transB, stride: shared ? 0 : K * N };
  gemm({ a: A, b: B, out, bias: bias ?? null, M, N, K, batch, nsum: 1, kernel, packedF16, splitK });

  const inputs = bias ? [a, b, bias] : [a, b];
  return record(out, inputs, (g, needs) => {
    const grads: (Tensor | null)[] = inputs.map(() => null);
    const G: Operand = { t: g, trans: false, stride: M * N }, GT = { ...G, trans: true };
    // An operand read with its flag flipped is its transpose: op(B)^T = { ...B, trans: !transB }.
    if (needs[0]) {
      const da = grads[0] = e.empty(a.shape, a.dtype);
      if (!transA) product(da, G, { ...B, trans: !transB }, M, K, N); // dA [M, K] = g @ op(B)^T
      else product(da, B, GT, K, M, N); // dA stored [K, M] = op(B) @ g^T
    }
    if (needs[1]) {
      // A shared b's gradient sums over the batch.
      const db = grads[1] = e.empty(b.shape, b.dtype);
      if (!transB) product(db, { ...A, trans: !transA }, G, K, N, M, shared); // dB [K, N] = op(A)^T @ g
      else product(db, GT, A, N, K, M, shared); // dB stored [N, K] = g^T @ op(A)
    }
    if (bias && needs[2]) grads[2] = sumTo(g, [N]); // dbias [N]: column sums of g
    return grads;
  });
}

/** The engines whose f16 matmuls sum in packed f16 by default (see {@linkcode setPackedF16}). */
const enginePackedF16 = new WeakSet<Engine>();

/**
 * Makes f16 matmuls on engine `e` sum each step's products with packed f16 FMAs (see
 * {@linkcode MatmulOptions.packedF16}) unless a call says otherwise, or stops it; for a whole run,
 * `deno task train --packed-f16`.
 */
export function setPackedF16(e: Engine, on: boolean): void {
  if (on) enginePackedF16.add(e);
  else enginePackedF16.delete(e);
}

/** Sizes of a {@linkcode matmulInto}: `batch` products of op(a) [M, K] and op(b) [K, N]. */
export interface ProductDims {
  /** Products. */
  batch: number;
  /** Rows of op(a) and of the output. */
  M: number;
  /** Columns of op(b) and of the output. */
  N: number;
  /** Columns of op(a), rows of op(b). */
  K: number;
  /** `a`'s matrices are stored [K, M]. */
  transA?: boolean;
  /** `b`'s matrices are stored [N, K]. */
  transB?: boolean;
}

/**
 * out[z] = op(a[z]) @ op(b[z]) for z < batch into an existing `out`, without autograd: a, b and out
 * are read as consecutive matrices whatever their shapes (their sizes must match). For kernels built
 * out of products, such as attention's matmul path. f16 products follow the engine's {@linkcode setPackedF16}
 * unless `opts` say otherwise.
 */
export function matmulInto(
  out: Tensor,
  a: Tensor,
  b: Tensor,
  d: ProductDims,
  opts: Pick<MatmulOptions, "kernel" | "splitK" | "packedF16"> = {},
): void {
  const { batch, M, N, K, transA = false, transB = false } = d;
  const fits = a.size === batch * M * K && b.size === batch * K * N && out.size === batch * M * N;
  if (!fits || a.dtype !== b.dtype || a.dtype !== out.dtype || !isFloat(a.dtype)) {
    throw new Error(
      `matmulInto: ${out} = ${a} @ ${b} does not hold ${batch} products [${M}, ${K}] @ [${K}, ${N}]`,
    );
  }
  gemm({
    a: { t: a, trans: transA, stride: M * K },
    b: { t: b, trans: transB, stride: K * N },
    out,
    bias: null,
    M,
    N,
    K,
    batch,
    nsum: 1,
    kernel: opts.kernel ?? "auto",
    packedF16: opts.packedF16 ?? enginePackedF16.has(out.engine),
    splitK: opts.splitK,
  });
}

/**
 * a @ b^T for b [N, K] split by rows: y_i = a @ b_i^T (+ bias_i) [..., N_i], concatenated along the
 * last dim to [..., N]. Autograd goes through the pieces (each gets its own gradient).
 */
function matmulSplitB(a: Tensor, b: SplitTensor, opts: MatmulOptions): Tensor {
  if (!opts.transB || b.shape.length !== 2) {
    throw new Error(`matmul: ${b} is split by rows; only a 2-D weight used with transB can be split`);
  }
  const bias = opts.bias;
  const ys = b.pieces.map((piece, i) => {
    const [r0, r1] = [b.rowStarts[i], b.rowStarts[i + 1]];
    return matmul(a, piece, { ...opts, bias: bias ? slice(bias, 0, r0, r1) : undefined });
  });
  return concat(ys, -1);
}

/** A matmul operand: matrices of `t`, stored transposed when `trans`, `stride` elements apart (0: one shared). */
interface Operand {
  t: Tensor;
  trans: boolean;
  stride: number;
}

/**
 * One (batched) product: out[z] = bias + sum over s < nsum of op(a[z * nsum + s]) @ op(b[z * nsum + s]),
 * where op(a) is M x K (a stored K x M when transposed) and op(b) is K x N.
 */
interface Gemm {
  a: Operand;
  b: Operand;
  /** [batch, M, N] */
  out: Tensor;
  /** [N] or null */
  bias: Tensor | null;
  M: number;
  N: number;
  K: number;
  /** Output matrices. */
  batch: number;
  /** Products summed into each output matrix (1 for a plain batched matmul). */
  nsum: number;
  kernel: MatmulKernel;
  /** See {@linkcode MatmulOptions.packedF16}. */
  packedF16: boolean;
  /** See {@linkcode MatmulOptions.splitK}. */
  splitK?: number;
}

/** Max workgroups per grid dimension (WebGPU's minimum limit, which every adapter grants). */
const MAX_GROUPS = 65535;
/** Rows of a product one grid covers: each workgroup row takes at least 16 (texture kernel at 8 x 8). */
const MAX_ROWS = MAX_GROUPS * 16;

function gemm(g: Gemm): void {
  g = flatten(g);
  if (g.batch * g.M * g.N === 0) return;
  if (g.M > MAX_ROWS) throw new Error(`matmul: ${describe(g)}: more rows than one dispatch grid covers`);
  const e = g.out.engine;
  if (g.kernel === "auto") g = tunedGemm(e, g);
  const useTexture = g.kernel === "texture" || (g.kernel === "auto" && e.info.isFallbackAdapter);
  const fits = textureFits(e, g);
  if (g.kernel === "texture" && !fits) {
    throw new Error(`matmul: shapes ${describe(g)} do not fit the texture kernel`);
  }
  if (useTexture && fits) return runTexture(e, g);
  const vec4 = g.kernel === "vec4" || g.kernel === "vec4_128" || g.kernel === "auto";
  if (vec4 && vec4Fits(g)) return runVec4(e, g);
  if (g.kernel === "vec4" || g.kernel === "vec4_128") {
    throw new Error(`matmul: shapes ${describe(g)} do not fit the vec4 kernel`);
  }
  runTiled(e, g);
}

// ---------------------------------------------------------------- measured choices (matmul_tune.ts)

/**
 * A product as the kernel choice sees it, after batches are merged into rows where storage allows:
 * `batch` products of op(a) [M, K] and op(b) [K, N], stored one after another.
 */
export interface ProductShape extends Required<ProductDims> {
  /** Operands' and output's dtype. */
  dtype: DType;
  /** f16 products summed in packed f16 (see {@linkcode MatmulOptions.packedF16}). */
  packedF16: boolean;
}

/** A kernel choice: the kernel and, for the vec4 kernels, the parts K is split into (1: none). */
export interface MatmulChoice {
  /** The kernel. */
  kernel: Exclude<MatmulKernel, "auto">;
  /** Parts of K (see {@linkcode MatmulOptions.splitK}; 1: not split). */
  splitK: number;
}

/** What a choice applies to besides M: everything else of a {@linkcode ProductShape}. */
function productClass(s: ProductShape): string {
  return `${s.dtype} ${s.packedF16} ${s.transA} ${s.transB} ${s.batch} ${s.N} ${s.K}`;
}

/** The shape of a product, or null where it is not plain consecutive matrices (a sum over a batch). */
function shapeOf(g: Gemm): ProductShape | null {
  const plain = g.nsum === 1 && (g.batch === 1 || (g.a.stride === g.M * g.K && g.b.stride === g.K * g.N));
  if (!plain) return null;
  const { M, N, K, batch } = g;
  const packedF16 = g.packedF16 && g.out.dtype === "f16"; // f32 products ignore it
  return { dtype: g.out.dtype, packedF16, M, N, K, batch, transA: g.a.trans, transB: g.b.trans };
}

/** Engines recording the shapes of their "auto" products (see {@linkcode recordMatmulShapes}), by shape. */
const engineRecordings = new WeakMap<Engine, Map<string, ProductShape>>();

/** The engines' measured choices ({@linkcode setTunedMatmul}): by {@linkcode productClass}, at the Ms measured. */
const engineMatmulTunings = new WeakMap<Engine, MeasuredChoices<MatmulChoice>>();

/**
 * Starts (or stops) recording the shapes of the products that matmul calls with the "auto" kernel run
 * on `e`; {@linkcode takeRecordedShapes} returns them. For measuring kernel choices at a model's own
 * shapes (tuneMatmul in matmul_tune.ts).
 */
export function recordMatmulShapes(e: Engine, on: boolean): void {
  if (!on) engineRecordings.delete(e);
  else if (!engineRecordings.has(e)) engineRecordings.set(e, new Map());
}

/** The distinct product shapes recorded on `e` since the last call (see {@linkcode recordMatmulShapes}). */
export function takeRecordedShapes(e: Engine): ProductShape[] {
  const recorded = engineRecordings.get(e);
  if (!recorded) return [];
  const shapes = [...recorded.values()];
  recorded.clear();
  return shapes;
}

/**
 * Records `choice` as the fastest measured for products like `s`: the choice of "auto" calls on `e`
 * whose shape differs from `s` at most in M, at the M nearest theirs (by ratio) of those measured,
 * within reach (see MeasuredChoices in core/timing.ts), where the choice takes the call's shape; until
 * {@linkcode forgetTunedMatmuls}.
 */
export function setTunedMatmul(e: Engine, s: ProductShape, choice: MatmulChoice): void {
  const tunings = engineMatmulTunings.get(e) ?? new MeasuredChoices<MatmulChoice>();
  engineMatmulTunings.set(e, tunings);
  tunings.set(productClass(s), s.M, { ...choice });
}

/** Whether products like `s` have a measured choice at this very M. */
export function isTunedMatmul(e: Engine, s: ProductShape): boolean {
  return engineMatmulTunings.get(e)?.has(productClass(s), s.M) ?? false;
}

/** The choices measured on `e` ({@linkcode setTunedMatmul}), as plain data. */
export function tunedMatmulChoices(e: Engine): MeasuredChoice<MatmulChoice>[] {
  return engineMatmulTunings.get(e)?.entries() ?? [];
}

/**
 * Replaces the choices measured on `e` with `choices` (as {@linkcode tunedMatmulChoices} gives them: from
 * a checkpoint, or from another engine measuring on the same kind of GPU).
 */
export function setTunedMatmulChoices(e: Engine, choices: readonly MeasuredChoice<MatmulChoice>[]): void {
  const tunings = new MeasuredChoices<MatmulChoice>();
  for (const c of choices) tunings.set(c.class, c.size, { ...c.choice });
  engineMatmulTunings.set(e, tunings);
}

/** Forgets the choices measured on `e`: "auto" chooses by its rules again. */
export function forgetTunedMatmuls(e: Engine): void {
  engineMatmulTunings.delete(e);
}

/** An "auto" product: recorded when recording, and given its measured choice when it has one that fits. */
function tunedGemm(e: Engine, g: Gemm): Gemm {
  if (!engineRecordings.has(e) && !engineMatmulTunings.has(e)) return g;
  const s = shapeOf(g);
  if (!s) return g;
  engineRecordings.get(e)?.set(`${productClass(s)} ${s.M}`, s);
  const choice = engineMatmulTunings.get(e)?.nearest(productClass(s), s.M);
  if (!choice) return g;
  const fits = choice.kernel === "texture"
    ? textureFits(e, g)
    : choice.kernel.startsWith("vec4")
    ? vec4Fits(g)
    : true;
  return fits ? { ...g, kernel: choice.kernel, splitK: g.splitK ?? choice.splitK } : g;
}

/** Merges batches into matrix dims where storage allows: fewer, larger products. */
function flatten(g: Gemm): Gemm {
  const { a, b, M, N, K } = g;
  // A shared b: consecutive matrices of a are consecutive rows (and so are the outputs).
  if (b.stride === 0 && !a.trans && g.nsum === 1 && a.stride === M * K && g.batch * M <= MAX_ROWS) {
    return { ...g, M: g.batch * M, batch: 1 };
  }
  // A sum over the batch whose contracted dim is outermost in both operands is one longer contraction.
  if (g.batch === 1 && g.nsum > 1 && a.trans && !b.trans && a.stride === K * M && b.stride === K * N) {
    return { ...g, K: g.nsum * K, nsum: 1 };
  }
  return g;
}

function describe(g: Gemm): string {
  return `${g.batch}x(${g.nsum}) M ${g.M} N ${g.N} K ${g.K} transA ${g.a.trans} transB ${g.b.trans}`;
}

/** The 8 u32 parameters both kernels read. */
function gemmParams(g: Gemm, zBase: number, parts = 1, kChunk = g.K): number[] {
  return [g.M, g.N, g.K, g.a.stride, g.b.stride, g.nsum, zBase, g.bias ? 1 : 0, parts, kChunk];
}

const PARAMS_STRUCT = `struct P {
  M: u32, N: u32, K: u32,
  strideA: u32, strideB: u32, // elements between consecutive matrices of a, b (0: one shared)
  nsum: u32,                  // products summed into each output matrix
  zBase: u32,                 // output matrix of workgroup z = 0
  hasBias: u32,
  parts: u32,                 // vec4 kernel: workgroups z * parts .. + parts - 1 split output z's K
  kChunk: u32,                // into ranges of kChunk (the last one shorter)
}`;

// ---------------------------------------------------------------- tiled kernel (every adapter)

/**
 * WGSL of the portable kernel: TILE x TILE output tiles (64 or 128) staged through workgroup memory
 * BK deep (16 or 8, so a tile stage is 1024 elements of each operand: 4 loads per thread), 16 x 16
 * threads with R x R outputs each (R = TILE / 16: thread (x, y) owns rows y + 16 i, columns x + 16 j).
 * The R x R accumulators are generated as separate scalars, never a private array: a dynamically
 * indexed private array lands in local memory on NVIDIA (measured: 0.5 TFLOP/s at 4096^3 on an H200).
 */
export function tiledCode(dtype: DType, transA: boolean, transB: boolean, tile: 64 | 128 = 64): string {
  const T = dtype;
  const R = tile / 16, BK = 1024 / tile, S = tile + 1;
  const range = [...Array(R).keys()];
  // Tile loads: consecutive threads read consecutive addresses of each layout ([m or n, k] in the tile).
  const alongK = ["e / " + BK + "u", "e % " + BK + "u"], alongMN = ["e % " + tile + "u", "e / " + tile + "u"];
  const aLoad = transA ? alongMN : alongK;
  const bLoad = transB ? alongK : alongMN;
  const acc = (i: number, j: number) => `c${i}_${j}`;
  const lines = (f: (i: number, j: number) => string) =>
    range.flatMap((i) => range.map((j) => f(i, j))).join("\n  ");
  return `${T === "f16" ? "enable f16;" : ""}
@group(0) @binding(0) var<storage, read> a: array<${T}>;      // [batch, M, K] or [batch, K, M] (transA)
@group(0) @binding(1) var<storage, read> b: array<${T}>;      // [batch, K, N] or [batch, N, K] (transB)
@group(0) @binding(2) var<storage, read> bias: array<${T}>;   // [N] (read only when p.hasBias)
@group(0) @binding(3) var<storage, read_write> c: array<${T}>; // [batch, M, N]
${PARAMS_STRUCT}
@group(0) @binding(4) var<uniform> p: P;

// Tiles [${BK} k][${tile} m or n], rows padded to ${S} so that column-wise stores hit distinct banks.
var<workgroup> As: array<f32, ${BK * S}>;
var<workgroup> Bs: array<f32, ${BK * S}>;

fn loadA(base: u32, m: u32, k: u32) -> f32 {
  if (m >= p.M || k >= p.K) { return 0.0; }
  return f32(a[base + ${transA ? "k * p.M + m" : "m * p.K + k"}]);
}

fn loadB(base: u32, k: u32, n: u32) -> f32 {
  if (n >= p.N || k >= p.K) { return 0.0; }
  return f32(b[base + ${transB ? "n * p.K + k" : "k * p.N + n"}]);
}

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let z = wid.z + p.zBase;
  let m0 = wid.y * ${tile}u;
  let n0 = wid.x * ${tile}u;
  let t = lid.y * 16u + lid.x;
  ${lines((i, j) => `var ${acc(i, j)} = 0.0;`)}
  for (var s = 0u; s < p.nsum; s++) {
    let baseA = (z * p.nsum + s) * p.strideA;
    let baseB = (z * p.nsum + s) * p.strideB;
    for (var k0 = 0u; k0 < p.K; k0 += ${BK}u) {
      for (var r = 0u; r < 4u; r++) {
        let e = t + r * 256u;
        let am = ${aLoad[0]};
        let ak = ${aLoad[1]};
        As[ak * ${S}u + am] = loadA(baseA, m0 + am, k0 + ak);
        let bn = ${bLoad[0]};
        let bk = ${bLoad[1]};
        Bs[bk * ${S}u + bn] = loadB(baseB, k0 + bk, n0 + bn);
      }
      workgroupBarrier();
      for (var k = 0u; k < ${BK}u; k++) {
        ${range.map((i) => `let a${i} = As[k * ${S}u + lid.y + ${16 * i}u];`).join(" ")}
        ${range.map((j) => `let b${j} = Bs[k * ${S}u + lid.x + ${16 * j}u];`).join(" ")}
        ${lines((i, j) => `${acc(i, j)} = fma(a${i}, b${j}, ${acc(i, j)});`)}
      }
      workgroupBarrier();
    }
  }
  ${lines((i, j) => `store(z, m0 + lid.y + ${16 * i}u, n0 + lid.x + ${16 * j}u, ${acc(i, j)});`)}
}

fn store(z: u32, m: u32, n: u32, v: f32) {
  if (m < p.M && n < p.N) {
    var out = v;
    if (p.hasBias != 0u) { out += f32(bias[n]); }
    c[(z * p.M + m) * p.N + n] = ${T}(out);
  }
}`;
}

/** The tiled kernel's tile: 128 when the product is large enough to fill a GPU with such tiles. */
function tileFor(g: Gemm): 64 | 128 {
  if (g.kernel === "tiled" || g.kernel === "vec4") return 64;
  if (g.kernel === "tiled128" || g.kernel === "vec4_128") return 128;
  return g.batch * Math.ceil(g.M / 128) * Math.ceil(g.N / 128) >= 128 ? 128 : 64;
}

function runTiled(e: Engine, g: Gemm): void {
  const tile = tileFor(g);
  const { dtype } = g.out, transA = g.a.trans, transB = g.b.trans;
  // The WGSL depends on these only, so a cached call neither builds nor hashes it.
  const key = `matmul_tiled:${dtype}:${transA}:${transB}:${tile}`;
  const code = () => tiledCode(dtype, transA, transB, tile);
  const bindings = [g.a.t, g.b.t, g.bias ?? g.a.t, g.out];
  runBatched(e, g, { label: `matmul_tiled${tile}`, key, code, bindings }, tile, tile);
}

/**
 * Runs a product's kernel on `tileN` x `tileM` output tiles, one workgroup each, per batch element:
 * one dispatch per MAX_GROUPS batch elements (each told its first element by gemmParams).
 */
function runBatched(
  e: Engine,
  g: Gemm,
  call: Omit<KernelCall, "params" | "workgroups">,
  tileN: number,
  tileM: number,
): void {
  for (let z = 0; z < g.batch; z += MAX_GROUPS) {
    e.run({
      ...call,
      params: gemmParams(g, z),
      workgroups: [Math.ceil(g.N / tileN), Math.ceil(g.M / tileM), Math.min(MAX_GROUPS, g.batch - z)],
    });
  }
}

// ---------------------------------------------------------------- vec4 kernel (GPUs, shapes in 4s)

/**
 * Whether the vec4 kernel takes a product: every dim read 4 elements at a time is a multiple of 4
 * (N for b without transB and for the output; K for an operand stored with K contiguous; M for `a`
 * with transA), so each vec4 lies inside one row and inside the matrix or wholly past its edge.
 */
function vec4Fits(g: Gemm): boolean {
  return g.N % 4 === 0 && (g.a.trans ? g.M % 4 === 0 : g.K % 4 === 0) && (!g.b.trans || g.K % 4 === 0);
}

/**
 * WGSL of the vec4 kernel: TILE x TILE output tiles (64 or 128), BK = 1024 / TILE deep steps, 16 x 16
 * threads. Thread (x, y) owns rows 64 g + 4 y + i and columns 64 h + 4 x + j (g, h < TILE / 64,
 * i, j < 4): per block, 4 vec4 accumulators (one per row, 4 columns each). Workgroup memory holds two
 * buffers of each operand's tile as [BK k][TILE / 4] vec4 along M or N; each step, every thread loads
 * one vec4 of each operand for the next step into registers, computes from the current buffer with
 * the k loop unrolled, stores its registers into the other buffer, and meets the others at one
 * barrier. An operand stored with K contiguous (a, b with transB) is loaded 4 k at a time and written
 * transposed into the tile; one stored with M or N contiguous is copied as is. Rows and columns past
 * the matrix are clamped (computed, never stored); k past K loads zeros.
 *
 * Tiles and products are f32, except with `packedF16` (f16 storage): f16 tiles and a step's products
 * summed in f16 registers before they join the f32 accumulators. With `split`, workgroup z computes
 * the K range (z % p.parts) * p.kChunk .. + p.kChunk of output matrix z / p.parts and writes its f32
 * partial sums, without the bias, to `c` [batch, parts, M, N]; {@linkcode splitSumCode} adds them up.
 */
export function vec4Code(
  dtype: DType,
  transA: boolean,
  transB: boolean,
  tile: 64 | 128,
  packedF16 = false,
  split = false,
): string {
  const T = dtype;
  const BK = 1024 / tile, TQ = tile / 4, G = tile / 64;
  const groups = [...Array(G).keys()], four = [0, 1, 2, 3];
  const acc = (g: number, i: number, h: number) => `c${g}${i}_${h}`;
  const blocks = (f: (g: number, i: number, h: number) => string) =>
    groups.flatMap((g) => four.flatMap((i) => groups.map((h) => f(g, i, h))));
  /** Loads of one operand ("A" or "B"): whether it is stored with K contiguous, and its M or N. */
  const operand = (X: "A" | "B", kMajor: boolean, dim: string, origin: string) => {
    const x = X.toLowerCase();
    // K contiguous: thread t loads k 4 (t % (BK / 4)) .. + 3 of tile row t / (BK / 4).
    // M or N contiguous: thread t loads vec4 t % TQ of k row t / TQ.
    return kMajor
      ? `fn load${X}(base: u32, ${origin}: u32, k0: u32, t: u32) -> W {
  let r = min(${origin} + t / ${BK / 4}u, p.${dim} - 1u);
  let k = k0 + (t % ${BK / 4}u) * 4u;
  return select(W(0.0), W(${x}[base + r * (p.K / 4u) + k / 4u]), k < kHi);
}
fn store${X}(buf: u32, t: u32, v: W) {
  let r = t / ${BK / 4}u;
  let k = buf * ${BK}u + (t % ${BK / 4}u) * 4u;
  ${four.map((c) => `${X}s[(k + ${c}u) * ${TQ}u + r / 4u][r % 4u] = v[${c}];`).join("\n  ")}
}`
      : `fn load${X}(base: u32, ${origin}: u32, k0: u32, t: u32) -> W {
  let k = k0 + t / ${TQ}u;
  let q = min(${origin} / 4u + t % ${TQ}u, p.${dim} / 4u - 1u);
  return select(W(0.0), W(${x}[base + min(k, p.K - 1u) * (p.${dim} / 4u) + q]), k < kHi);
}
fn store${X}(buf: u32, t: u32, v: W) {
  ${X}s[(buf * ${BK}u + t / ${TQ}u) * ${TQ}u + t % ${TQ}u] = v;
}`;
  };
  // Each product goes into the f32 accumulators; packed f16: a step's BK products are summed in f16
  // (packed f16 FMAs) and then added to the f32 accumulators.
  const packed = packedF16 && dtype === "f16";
  const part = (g: number, i: number, h: number) => packed ? `h${g}${i}_${h}` : acc(g, i, h);
  const kStep = (k: number) => {
    const row = `(buf * ${BK}u + ${k}u) * ${TQ}u`;
    return "{ " + [
      ...groups.map((g) => `let a${g} = As[${row} + ${16 * g}u + lid.y];`),
      ...groups.map((h) => `let b${h} = Bs[${row} + ${16 * h}u + lid.x];`),
      ...blocks((g, i, h) => `${part(g, i, h)} = fma(W(a${g}[${i}]), b${h}, ${part(g, i, h)});`),
    ].join(" ") + " }";
  };
  const ks = [...Array(BK).keys()].map(kStep).join("\n    ");
  const step = packed
    ? `{
    ${blocks((g, i, h) => `var ${part(g, i, h)} = W(0.0);`).join(" ")}
    ${ks}
    ${blocks((g, i, h) => `${acc(g, i, h)} += vec4f(${part(g, i, h)});`).join(" ")}
    }`
    : ks;
  return `${T === "f16" ? "enable f16;" : ""}
alias V = vec4<${T}>;  // storage
alias W = ${packed ? "V" : "vec4f"};  // tiles and products
@group(0) @binding(0) var<storage, read> a: array<V>;      // [batch, M, K] or [batch, K, M] (transA), 4 per element
@group(0) @binding(1) var<storage, read> b: array<V>;      // [batch, K, N] or [batch, N, K] (transB)
${
    split // the bias is added by the kernel that sums the parts
      ? `@group(0) @binding(2) var<storage, read_write> c: array<vec4f>; // [batch, parts, M, N] f32 partial sums
${PARAMS_STRUCT}
@group(0) @binding(3) var<uniform> p: P;`
      : `@group(0) @binding(2) var<storage, read> bias: array<V>;   // [N] (read only when p.hasBias)
@group(0) @binding(3) var<storage, read_write> c: array<V>; // [batch, M, N]
${PARAMS_STRUCT}
@group(0) @binding(4) var<uniform> p: P;`
  }
var<private> kHi: u32;  // end of this workgroup's K range

// Two buffers of each tile: [2][${BK} k][${TQ}] vec4 along M (As) or N (Bs).
var<workgroup> As: array<W, ${2 * BK * TQ}>;
var<workgroup> Bs: array<W, ${2 * BK * TQ}>;

${operand("A", !transA, "M", "m0")}
${operand("B", transB, "N", "n0")}

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let z = wid.z / p.parts + p.zBase;
  let kLo = (wid.z % p.parts) * p.kChunk;  // this workgroup's K range: kLo .. kHi - 1
  kHi = min(p.K, kLo + p.kChunk);
  let m0 = wid.y * ${tile}u;
  let n0 = wid.x * ${tile}u;
  let t = lid.y * 16u + lid.x;
  ${blocks((g, i, h) => `var ${acc(g, i, h)} = vec4f(0.0);`).join(" ")}
  // Steps run over the nsum products and, in each, over the K range in steps of ${BK}.
  let kSteps = (kHi - min(kLo, kHi) + ${BK - 1}u) / ${BK}u;
  let steps = p.nsum * kSteps;
  var ra = loadA(z * p.nsum * (p.strideA / 4u), m0, kLo, t);
  var rb = loadB(z * p.nsum * (p.strideB / 4u), n0, kLo, t);
  storeA(0u, t, ra);
  storeB(0u, t, rb);
  workgroupBarrier();
  for (var st = 0u; st < steps; st++) {
    let buf = st & 1u;
    let next = st + 1u;
    if (next < steps) {
      let s = z * p.nsum + next / kSteps;
      let k0 = kLo + (next % kSteps) * ${BK}u;
      ra = loadA(s * (p.strideA / 4u), m0, k0, t);
      rb = loadB(s * (p.strideB / 4u), n0, k0, t);
    }
    ${step}
    if (next < steps) {
      storeA(1u - buf, t, ra);
      storeB(1u - buf, t, rb);
    }
    workgroupBarrier();
  }
  ${
    groups.flatMap((g) =>
      four.flatMap((i) =>
        groups.map((h) =>
          `store(${split ? "wid.z" : "z"}, m0 + ${64 * g + i}u + 4u * lid.y, n0 + ${64 * h}u + 4u * lid.x, ${
            acc(g, i, h)
          });`
        )
      )
    ).join("\n  ")
  }
}

${
    split
      ? `fn store(zp: u32, m: u32, n: u32, v: vec4f) {
  if (m < p.M && n < p.N) { c[(zp * p.M + m) * (p.N / 4u) + n / 4u] = v; }
}`
      : `fn store(z: u32, m: u32, n: u32, v: vec4f) {
  if (m < p.M && n < p.N) {
    var out = v;
    if (p.hasBias != 0u) { out += vec4f(bias[n / 4u]); }
    c[(z * p.M + m) * (p.N / 4u) + n / 4u] = V(out);
  }
}`
  }`;
}

/**
 * How many parts the vec4 kernel splits K into: `g.splitK` when given, else, with the "auto" kernel on a
 * GPU, enough parts for ~256 workgroups when the output tiles alone give fewer than 128 (e.g. N = 128
 * products, as in LoRA) and K is long (each part at least 256 deep, at most 16 parts); else 1.
 */
function splitParts(e: Engine, g: Gemm, tile: number): number {
  const tiles = g.batch * Math.ceil(g.M / tile) * Math.ceil(g.N / tile);
  let parts = g.splitK ??
    (g.kernel === "auto" && !e.info.isFallbackAdapter && tiles < 128
      ? Math.min(Math.ceil(256 / tiles), Math.floor(g.K / 256), 16)
      : 1);
  parts = Math.max(1, Math.min(parts, Math.ceil(g.K / 4)));
  return g.batch * parts <= MAX_GROUPS ? parts : 1;
}

function runVec4(e: Engine, g: Gemm): void {
  const tile = tileFor(g);
  const { dtype } = g.out, transA = g.a.trans, transB = g.b.trans;
  const packed = g.packedF16 && dtype === "f16";
  let parts = splitParts(e, g, tile);
  // Each part's K range is whole steps (BK deep); no part is empty.
  const BK = 1024 / tile, kChunk = Math.ceil(g.K / parts / BK) * BK;
  parts = Math.max(1, Math.ceil(g.K / kChunk));
  const split = parts > 1;
  // The WGSL depends on these only, so a cached call neither builds nor hashes it.
  const key = `matmul_vec4:${dtype}:${transA}:${transB}:${tile}:${packed}:${split}`;
  const code = () => vec4Code(dtype, transA, transB, tile, packed, split);
  const label = `matmul_vec4_${tile}${split ? "_splitk" : ""}`;
  if (split) {
    // [batch, parts, M, N] f32 partial sums, then summed (+ bias) into the output.
    const partial = e.empty([g.batch * parts * g.M * g.N], "f32");
    e.run({
      label,
      key,
      code,
      bindings: [g.a.t, g.b.t, partial],
      params: gemmParams(g, 0, parts, kChunk),
      workgroups: [Math.ceil(g.N / tile), Math.ceil(g.M / tile), g.batch * parts],
    });
    const n4 = g.batch * g.M * g.N / 4;
    e.run({
      label: "matmul_splitk_sum",
      key: `matmul_splitk_sum:${dtype}`,
      code: () => splitSumCode(dtype),
      bindings: [partial, g.bias ?? g.a.t, g.out],
      params: [n4, g.M * g.N / 4, g.N / 4, parts, g.bias ? 1 : 0],
      workgroups: grid1d(n4, 256),
    });
    partial.dispose();
    return;
  }
  runBatched(e, g, { label, key, code, bindings: [g.a.t, g.b.t, g.bias ?? g.a.t, g.out] }, tile, tile);
}

/** WGSL that sums the split-K partial sums of each output (4 at a time) and adds the bias. */
function splitSumCode(dtype: DType): string {
  return `${dtype === "f16" ? "enable f16;" : ""}
alias V = vec4<${dtype}>;
@group(0) @binding(0) var<storage, read> partial: array<vec4f>;  // [batch, parts, M, N]
@group(0) @binding(1) var<storage, read> bias: array<V>;         // [N] (read only when p.hasBias)
@group(0) @binding(2) var<storage, read_write> c: array<V>;      // [batch, M, N]
struct P { n4: u32, mn4: u32, N4: u32, parts: u32, hasBias: u32 }  // counts of vec4s
@group(0) @binding(3) var<uniform> p: P;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= p.n4) { return; }
  let z = i / p.mn4;
  let at = i % p.mn4;
  var sum = vec4f(0.0);
  for (var s = 0u; s < p.parts; s++) { sum += partial[(z * p.parts + s) * p.mn4 + at]; }
  if (p.hasBias != 0u) { sum += vec4f(bias[at % p.N4]); }
  c[i] = V(sum);
}`;
}

// ---------------------------------------------------------------- texture kernel (software adapters)

/** Threads per workgroup of the texture kernel: 8 along N (one CPU vector of lanes) x TEX_WG_Y. */
const TEX_WG_Y = 2;

/**
 * Outputs per thread along a dim of size `d`: 16 for large dims, else 8 (a 16 x 16 kernel runs
 * ~1.4x faster than 8 x 8 but takes ~1.3 s to compile on lavapipe, 8 x 8 ~0.3 s).
 */
function texTile(d: number): number {
  return d >= 64 ? 16 : 8;
}

function textureFits(e: Engine, g: Gemm): boolean {
  const maxRows = e.limit("maxTextureDimension2D");
  const rows = (t: Tensor) => Math.ceil(t.size / 4 / TEX_WIDTH);
  return g.K % 4 === 0 && g.K > 0 && (!g.a.trans || g.M % 4 === 0) && (g.b.trans || g.N % 4 === 0) &&
    rows(g.a.t) <= maxRows && rows(g.b.t) <= maxRows;
}

/**
 * WGSL of the texture kernel: each thread computes a TM x TN block of outputs in registers; a
 * step loads one texel (4 k) per row of A and per column of B (or 4 texels of 4 rows/columns when
 * that operand's texels run along M or N), then does TM * TN * 4 FMAs, each accumulator's 4 FMAs
 * in a row (fewer register spills than k-major order).
 */
export function textureCode(dtype: DType, transA: boolean, transB: boolean, TM: number, TN: number): string {
  const T = dtype;
  const fmt = dtype === "f16" ? "rgba16float" : "rgba32float";
  const xyzw = "xyzw";
  const L: string[] = [];
  const range = (n: number) => [...Array(n).keys()];
  const rows = range(TM), cols = range(TN), ks = range(4);
  // A(m0 + i, 4 kc + kk) and B(4 kc + kk, n0 + j) among the texels loaded in a step.
  const av = (i: number, kk: number) => transA ? `a${kk}_${i >> 2}.${xyzw[i & 3]}` : `a${i}.${xyzw[kk]}`;
  const bv = (kk: number, j: number) => transB ? `b${j}.${xyzw[kk]}` : `b${kk}_${j >> 2}.${xyzw[j & 3]}`;
  L.push(`${T === "f16" ? "enable f16;" : ""}
// a, b: the tensors' elements in order, 4 per texel, ${TEX_WIDTH} texels per texture row.
@group(0) @binding(0) var ta: texture_storage_2d<${fmt}, read>; // [batch, M, K] or [batch, K, M] (transA)
@group(0) @binding(1) var tb: texture_storage_2d<${fmt}, read>; // [batch, K, N] or [batch, N, K] (transB)
@group(0) @binding(2) var<storage, read> bias: array<${T}>;      // [N] (read only when p.hasBias)
@group(0) @binding(3) var<storage, read_write> c: array<${T}>;   // [batch, M, N]
${PARAMS_STRUCT}
@group(0) @binding(4) var<uniform> p: P;

fn lda(i: u32) -> vec4f { return textureLoad(ta, vec2u(i % ${TEX_WIDTH}u, i / ${TEX_WIDTH}u)); }
fn ldb(i: u32) -> vec4f { return textureLoad(tb, vec2u(i % ${TEX_WIDTH}u, i / ${TEX_WIDTH}u)); }

@compute @workgroup_size(8, ${TEX_WG_Y})
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let M = p.M; let N = p.N; let K4 = p.K / 4u; let M4 = M / 4u; let N4 = N / 4u; let nsum = p.nsum;
  let hasBias = p.hasBias != 0u;
  let z = gid.z + p.zBase;
  let m0 = gid.y * ${TM}u;
  let n0 = gid.x * ${TN}u;`);
  // Texel offsets within a matrix of this thread's rows / columns, clamped inside the matrix
  // (clamped rows and columns compute values that are never stored).
  if (transA) L.push(...range(TM / 4).map((q) => `  let ca${q} = min(m0 / 4u + ${q}u, M4 - 1u);`));
  else L.push(...rows.map((i) => `  let ra${i} = min(m0 + ${i}u, M - 1u) * K4;`));
  if (transB) L.push(...cols.map((j) => `  let rb${j} = min(n0 + ${j}u, N - 1u) * K4;`));
  else L.push(...range(TN / 4).map((q) => `  let cb${q} = min(n0 / 4u + ${q}u, N4 - 1u);`));
  L.push(...rows.map((i) => "  " + cols.map((j) => `var c${i}_${j} = 0.0;`).join(" ")));
  L.push(`  for (var s = 0u; s < nsum; s++) {
    let baseA = (z * nsum + s) * (p.strideA / 4u);
    let baseB = (z * nsum + s) * (p.strideB / 4u);
    for (var kc = 0u; kc < K4; kc++) {`);
  if (transA) {
    for (const kk of ks) {
      L.push(
        ...range(TM / 4).map((q) => `      let a${kk}_${q} = lda(baseA + (kc * 4u + ${kk}u) * M4 + ca${q});`),
      );
    }
  } else L.push(...rows.map((i) => `      let a${i} = lda(baseA + ra${i} + kc);`));
  if (transB) L.push(...cols.map((j) => `      let b${j} = ldb(baseB + rb${j} + kc);`));
  else {
    for (const kk of ks) {
      L.push(
        ...range(TN / 4).map((q) => `      let b${kk}_${q} = ldb(baseB + (kc * 4u + ${kk}u) * N4 + cb${q});`),
      );
    }
  }
  for (const i of rows) {
    for (const j of cols) {
      const sum = ks.reduce((acc, kk) => `fma(${av(i, kk)}, ${bv(kk, j)}, ${acc})`, `c${i}_${j}`);
      L.push(`      c${i}_${j} = ${sum};`);
    }
  }
  L.push(`    }
  }`);
  L.push(...cols.map((j) => `  var bias${j} = 0.0;`));
  L.push(`  if (hasBias) {`);
  L.push(...cols.map((j) => `    bias${j} = f32(bias[min(n0 + ${j}u, N - 1u)]);`));
  L.push(`  }`);
  for (const i of rows) {
    L.push(`  let o${i} = (z * M + m0 + ${i}u) * N + n0;`);
    for (const j of cols) {
      L.push(`  if (m0 + ${i}u < M && n0 + ${j}u < N) { c[o${i} + ${j}u] = ${T}(c${i}_${j} + bias${j}); }`);
    }
  }
  L.push(`}`);
  return L.join("\n");
}

/** Per engine: operand textures by format, height and slot. */
const operandTextures = new WeakMap<Engine, Map<string, GPUTexture>>();

/**
 * Copies a tensor into the operand texture `slot` (0: a, 1: b), 4 elements per texel. Textures
 * are kept per engine by height (rounded up to a power of two) and reused by later matmuls: work
 * is recorded in order, so a later copy lands after the earlier dispatch has read the texture.
 */
function upload(e: Engine, t: Tensor, slot: number): GPUTexture {
  const format: GPUTextureFormat = t.dtype === "f16" ? "rgba16float" : "rgba32float";
  const texelBytes = t.dtype === "f16" ? 8 : 16;
  const texels = t.size / 4;
  const full = Math.floor(texels / TEX_WIDTH), rest = texels - full * TEX_WIDTH;
  const height = 2 ** Math.ceil(Math.log2(Math.max(1, Math.ceil(texels / TEX_WIDTH))));
  let textures = operandTextures.get(e);
  if (!textures) operandTextures.set(e, textures = new Map());
  const key = `${format}:${height}:${slot}`;
  let tex = textures.get(key);
  if (!tex) {
    tex = e.device.createTexture({
      label: `matmul operand ${key}`,
      size: [TEX_WIDTH, height],
      format,
      usage: GPUTextureUsage.STORAGE_BINDING | GPUTextureUsage.COPY_DST,
    });
    textures.set(key, tex);
  }
  const rowBytes = TEX_WIDTH * texelBytes, buffer = t.buffer;
  if (full) {
    e.encoder.copyBufferToTexture({ buffer, bytesPerRow: rowBytes }, { texture: tex }, [TEX_WIDTH, full]);
  }
  if (rest) {
    const lastRow = { texture: tex, origin: [0, full] };
    e.encoder.copyBufferToTexture({ buffer, offset: full * rowBytes }, lastRow, [rest, 1]);
  }
  return tex;
}

function runTexture(e: Engine, g: Gemm): void {
  const TM = texTile(g.M), TN = texTile(g.N);
  const { dtype } = g.out, transA = g.a.trans, transB = g.b.trans;
  // The WGSL depends on these only, so a cached call neither builds nor hashes it.
  const key = `matmul_texture:${dtype}:${transA}:${transB}:${TM}:${TN}`;
  const code = () => textureCode(dtype, transA, transB, TM, TN);
  const ta = upload(e, g.a.t, 0).createView(), tb = upload(e, g.b.t, 1).createView();
  // Without a bias, a dummy buffer fills its binding (a itself is read through its texture).
  const bindings = [ta, tb, g.bias ?? g.a.t, g.out];
  runBatched(e, g, { label: "matmul_texture", key, code, bindings }, 8 * TN, TEX_WG_Y * TM);
}
