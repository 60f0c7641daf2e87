/**
 * Fused causal attention with grouped-query heads (flash-attention style): online softmax over tiles
 * of keys held in workgroup memory, so no T x T matrix is ever stored. Backward recomputes the
 * softmax from the saved per-row logsumexp (flash-attention 2): one kernel computes dq looping over
 * key tiles, another dk/dv looping over query tiles of every query head of the kv group; no float
 * atomics. f32 or f16 storage; all math in f32.
 *
 * Kernel layout: one thread per query row (forward, dq) or key row (dk/dv), 64 rows per workgroup
 * (fewer for short sequences). A thread keeps its own row and accumulators as `array<vec4f, HV>` in
 * registers and reads the other side's rows from the shared tile, 4 rows at a time. Pipelines are
 * specialized on dtype, head size, rows per workgroup and tile height; sizes and masking are
 * parameters.
 *
 * {@linkcode attention} runs these kernels or the matmul path of attention_matmul.ts, which is faster
 * where its score blocks fit (see {@linkcode attentionKernel}), or, when asked, the FlashAttention-2
 * style kernels of attention_flash.ts.
 * @module
 */

import { record } from "../../autograd.ts";
import type { DType } from "../../dtype.ts";
import { type Engine, grid1d } from "../../engine.ts";
import type { Tensor } from "../../tensor.ts";
import { type MeasuredChoice, MeasuredChoices } from "../../timing.ts";
import type { AttentionDims } from "./attention_cpu.ts";
import { flashAttentionBackward, flashAttentionForward } from "./attention_flash.ts";
import {
  BLOCK_PARAMS_WGSL,
  blockGrid,
  DKDV_BINDINGS_WGSL,
  DQ_BINDINGS_WGSL,
  FORWARD_BINDINGS_WGSL,
  rowIoWgsl,
} from "./attention_blocks.ts";
import {
  type AttentionGrads,
  groupsPerChunk,
  matmulAttentionBackward,
  matmulAttentionForward,
  scoreBudget,
} from "./attention_matmul.ts";

/** Options of {@linkcode attention}. */
export interface AttentionOptions {
  /** Mask keys after the query (default true). */
  causal?: boolean;
  /** Multiplies q . k (default 1 / sqrt(HS)). */
  scale?: number;
  /** Sliding window (Mistral): query i attends to keys j with i - j < window. Default: no window. */
  window?: number;
  /**
   * Which implementation runs (default "auto": see {@linkcode attentionKernel}); "fused", "matmul" or
   * "flash" force one (tests, benchmarks), and "matmul" throws when one kv group's scores do not fit a
   * buffer.
   */
  kernel?: AttentionKernel;
}

/**
 * The implementations: `fused`, this file's kernels (one thread per row, memory O(T)), `matmul`,
 * attention_matmul.ts (score blocks through the matmul kernels, a bounded transient workspace), and
 * `flash`, attention_flash.ts (FlashAttention-2 style: a workgroup per block of rows, register-blocked
 * score tiles in workgroup memory, memory O(T)).
 */
export type AttentionKernel = (typeof ATTENTION_KERNELS)[number];

/** Every {@linkcode AttentionKernel}. */
export const ATTENTION_KERNELS = ["auto", "flash", "matmul", "fused"] as const;

/** An implementation itself: what "auto" resolves to. */
export type AttentionImpl = Exclude<AttentionKernel, "auto">;

/**
 * The implementation a call uses: the forced one, or the engine's (see {@linkcode setAttentionKernel}),
 * else the one measured fastest on this engine at the nearest T of the same class of call (see
 * tuneAttention in attention_tune.ts, `deno task train --tune`), else by measurement here:
 * - on GPUs, `matmul` whenever one kv group's scores fit its workspace, else `fused` (`flash` is not
 *   measured on a GPU yet);
 * - on software adapters, `matmul` for f32 with T and HS multiples of 4 and scores that fit, else
 *   `flash`. There the fast matmul, the texture kernel, needs multiples of 4 (the tiled one is 10-20x
 *   slower), and its f16 products with a transposed first operand (dv, dk) are slow at some shapes.
 *   Forward + backward on lavapipe, 2 cores (bench/attention_speed.ts, B NH T HS from 512 4 8 32 to
 *   1 8 1024 128, two runs; bench/results/2026-12-05_lavapipe_attention.jsonl): `flash` takes 0.37-0.92x
 *   the time of `fused` at every shape in f32 and f16; `matmul` takes 0.23-0.77x the time of `flash` for
 *   f32 with T a multiple of 4, except at T 8 in a batch of 512 and at T 256 (1.2-1.6x), and 2.5-3x at T 97.
 */
export function attentionKernel(
  e: Engine,
  d: AttentionDims,
  dtype: DType,
  opts: AttentionOptions = {},
): AttentionImpl {
  const fits = groupsPerChunk(d, dtype, scoreBudget(e)) > 0;
  const kernel = opts.kernel ?? "auto";
  const preferred = engineKernels.get(e);
  if (kernel === "auto" && preferred && (preferred !== "matmul" || fits)) return preferred;
  const tuned = kernel === "auto" ? engineTunings.get(e)?.nearest(tuneClass(d, dtype, opts), d.T) : undefined;
  if (tuned && (tuned !== "matmul" || fits)) return tuned;
  switch (kernel) {
    case "fused":
      return "fused";
    case "flash":
      return "flash";
    case "matmul":
      if (!fits) {
        const rows = (d.NH / d.NKV) * d.T;
        throw new Error(
          `attention: one kv group's scores [${rows}, ${d.T}] do not fit a buffer; use kernel "fused"`,
        );
      }
      return "matmul";
    case "auto":
      if (!e.info.isFallbackAdapter) return fits ? "matmul" : "fused";
      return fits && dtype === "f32" && d.T % 4 === 0 && d.HS % 4 === 0 ? "matmul" : "flash";
  }
}

/** The engines' attention implementations set by {@linkcode setAttentionKernel}. */
const engineKernels = new WeakMap<Engine, AttentionImpl>();

/** The engines' measured choices ({@linkcode setTunedKernel}): by {@linkcode tuneClass}, at the Ts measured. */
const engineTunings = new WeakMap<Engine, MeasuredChoices<AttentionImpl>>();

/**
 * What a measured choice applies to besides T: dtype, heads, head size, the mask's kind and whether T is
 * a multiple of 4 (the matmul path's fast kernels read rows of T 4 at a time: its speed changes with it).
 */
function tuneClass(d: AttentionDims, dtype: DType, opts: AttentionOptions): string {
  return `${dtype} ${d.NH}/${d.NKV} ${d.HS} ${opts.causal ?? true} ${(opts.window ?? 0) > 0} ${
    d.T % 4 === 0
  }`;
}

/**
 * Records `kernel` as the fastest measured at dims `d` (see tuneAttention in attention_tune.ts): the
 * choice of "auto" calls on `e` with the same dtype, heads, head size, kind of mask and divisibility of T
 * by 4 whose T is nearest `d.T` (by ratio) of those measured, within reach (see MeasuredChoices in
 * core/timing.ts), until {@linkcode setAttentionKernel} resets `e`.
 */
export function setTunedKernel(
  e: Engine,
  d: AttentionDims,
  dtype: DType,
  opts: AttentionOptions,
  kernel: AttentionImpl,
): void {
  const tunings = engineTunings.get(e) ?? new MeasuredChoices<AttentionImpl>();
  engineTunings.set(e, tunings);
  tunings.set(tuneClass(d, dtype, opts), d.T, kernel);
}

/** Whether "auto" calls like one at dims `d` have a choice measured at this very T. */
export function isTunedAttention(e: Engine, d: AttentionDims, dtype: DType, opts: AttentionOptions): boolean {
  return engineTunings.get(e)?.has(tuneClass(d, dtype, opts), d.T) ?? false;
}

/** The choices measured on `e` ({@linkcode setTunedKernel}), as plain data. */
export function tunedAttentionChoices(e: Engine): MeasuredChoice<AttentionImpl>[] {
  return engineTunings.get(e)?.entries() ?? [];
}

/**
 * Replaces the choices measured on `e` with `choices` (as {@linkcode tunedAttentionChoices} gives them:
 * from a checkpoint, or from another engine measuring on the same kind of GPU).
 */
export function setTunedAttentionChoices(e: Engine, choices: readonly MeasuredChoice<AttentionImpl>[]): void {
  const tunings = new MeasuredChoices<AttentionImpl>();
  for (const c of choices) tunings.set(c.class, c.size, c.choice);
  engineTunings.set(e, tunings);
}

/**
 * Sets the implementation that attention calls without a `kernel` of their own use on engine `e`, e.g.
 * "flash" where a GPU's timings favour it (`deno task train --attention flash`); "auto" restores the
 * built-in choice of {@linkcode attentionKernel} and forgets the choices measured on `e`. Calls whose
 * scores do not fit the matmul path's workspace keep the built-in choice when "matmul" is set.
 */
export function setAttentionKernel(e: Engine, kernel: AttentionKernel): void {
  switch (kernel) {
    case "auto":
      engineKernels.delete(e);
      engineTunings.delete(e);
      return;
    case "fused":
    case "matmul":
    case "flash":
      engineKernels.set(e, kernel);
      return;
    default:
      throw new Error(
        `attention: unknown kernel ${JSON.stringify(kernel)}; use one of auto, fused, matmul, flash`,
      );
  }
}

/** The implementation set on `e` by {@linkcode setAttentionKernel} ("auto" when none is). */
export function engineAttentionKernel(e: Engine): AttentionKernel {
  return engineKernels.get(e) ?? "auto";
}

/** Largest supported head size. */
export const MAX_HEAD_SIZE = 128;

/** Sizes of a call, read off the tensors and checked with the options. */
function dimsOf(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions): AttentionDims {
  const fail = (why: string) => new Error(`attention(q ${q}, k ${k}, v ${v}): ${why}`);
  if (q.shape.length !== 4 || k.shape.length !== 4) throw fail("q, k, v must be [B, heads, T, HS]");
  const [B, NH, T, HS] = q.shape;
  const NKV = k.shape[1];
  if (k.shape.join() !== v.shape.join()) throw fail("k and v shapes differ");
  if (k.shape[0] !== B || k.shape[2] !== T || k.shape[3] !== HS) throw fail("B, T or HS differ");
  if (NKV === 0 || NH % NKV !== 0) throw fail("NH must be a multiple of NKV");
  if (HS < 1 || HS > MAX_HEAD_SIZE) throw fail(`head size must be 1..${MAX_HEAD_SIZE}`);
  if (q.dtype !== k.dtype || q.dtype !== v.dtype) throw fail("dtypes differ");
  if (q.dtype !== "f32" && q.dtype !== "f16") throw fail("dtype must be f32 or f16");
  if (opts.window !== undefined && !(Number.isInteger(opts.window) && opts.window >= 1)) {
    throw new Error(`attention: window must be an integer >= 1, got ${opts.window}`);
  }
  return { B, NH, NKV, T, HS };
}

/** What a pipeline is specialized on. */
interface Spec {
  /** Storage type. */
  dtype: string;
  /** Head size. */
  HS: number;
  /** Own rows (queries or keys) per workgroup, one per thread. */
  rows: number;
  /** Rows of the other side per shared tile (a multiple of 4). */
  tile: number;
  /** Whether loops over the chunks of a row are unrolled (see {@linkcode eachChunk}). */
  unroll: boolean;
}

/**
 * The specialization of a call. Workgroups own 64 rows, or 32 or 16 for short sequences (T = 8 in
 * the ASVR depth transformer). The tile is the largest of 32, 16, 8 rows whose two f32 tiles (plus
 * 2 f32 per row) fit in workgroup memory. Loops over a row are unrolled except on CPU adapters above
 * HS 64, where LLVM takes over 10 s per unrolled kernel.
 */
function specOf(e: Engine, dtype: string, d: AttentionDims): Spec {
  const limit = e.limit("maxComputeWorkgroupStorageSize");
  const HV = Math.ceil(d.HS / 4);
  const tile = [32, 16, 8].find((rows) => rows * (2 * HV * 16 + 8) <= limit) ?? 4;
  const rows = d.T <= 16 ? 16 : d.T <= 32 ? 32 : 64;
  return { dtype, HS: d.HS, rows, tile, unroll: !e.info.isFallbackAdapter || d.HS <= 64 };
}

/** WGSL shared by the tiled kernels: types, sizes, parameters, the masking rule, row loads and stores. */
function header(s: Spec, load: string[], store: string[]): string {
  return `${s.dtype === "f16" ? "enable f16;" : ""}
alias E = ${s.dtype};         // storage type; math is f32
const HS = ${s.HS}u;          // head size
const HV = ${Math.ceil(s.HS / 4)}u;  // vec4 chunks per row (zero-padded past HS)
const WG = ${s.rows}u;        // own rows per workgroup, one per thread
const TILE = ${s.tile}u;      // rows of the other side per shared tile
${BLOCK_PARAMS_WGSL}
// Whether query i attends to keys j..j+3, and whether queries i..i+3 attend to key j (rows past T: no).
fn keys4(i: u32, j: u32) -> vec4<bool> {
  let x = vec4u(j) + vec4u(0u, 1u, 2u, 3u);
  return x >= vec4u(jlo(i)) & x <= vec4u(jhi(i)) & vec4<bool>(i < p.T);
}
fn queries4(i: u32, j: u32) -> vec4<bool> {
  let x = vec4u(i) + vec4u(0u, 1u, 2u, 3u);
  return x >= vec4u(ilo(j)) & x <= vec4u(ihi(j)) & vec4<bool>(j < p.T);
}
// The 4-row groups [first, end) of the tile starting at row t0 that hold rows lo..hi.
fn groupRange(t0: u32, lo: u32, hi: u32) -> vec2u {
  if (hi < t0 || lo >= t0 + TILE) { return vec2u(0u, 0u); }
  return vec2u(select(0u, (lo - t0) & ~3u, lo > t0), min(TILE, hi - t0 + 1u));
}
${rowIoWgsl(s.HS, load, store)}
`;
}

/**
 * `body(c)` for each vec4 chunk c of a row: unrolled (c = 0u, 1u, ...), so that the private row
 * arrays are indexed by constants and stay in registers (2x faster backward on lavapipe, and no
 * reliance on the driver unrolling), or as a WGSL loop over `c`.
 */
function eachChunk(s: Spec, body: (c: string) => string): string {
  if (!s.unroll) return `for (var c = 0u; c < HV; c++) {\n        ${body("c")}\n      }`;
  return Array.from({ length: Math.ceil(s.HS / 4) }, (_, c) => body(`${c}u`)).join("\n      ");
}

/** WGSL: the 4 dot products of `x` with chunk c of tile rows r..r+3. */
function dot4(x: string, tile: string, c: string): string {
  const row = (k: number) => `${tile}[(r + ${k}u) * HV + ${c}]`;
  return `vec4f(dot(${x}, ${row(0)}), dot(${x}, ${row(1)}), dot(${x}, ${row(2)}), dot(${x}, ${row(3)}))`;
}

/** WGSL: w.x * (chunk c of tile row r) + ... + w.w * (chunk c of tile row r+3). */
function axpy4(w: string, tile: string, c: string): string {
  const row = (k: number) => `${tile}[(r + ${k}u) * HV + ${c}]`;
  return `${w}.x * ${row(0)} + ${w}.y * ${row(1)} + ${w}.z * ${row(2)} + ${w}.w * ${row(3)}`;
}

const MAIN = `@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) t: u32) {
  let w = wid.x + wid.y * nwg.x;
  if (w >= p.ngroups) { return; }`;

/**
 * The start of the forward and dq kernels: the workgroup owns query rows i0..i0+WG-1 of head bh and
 * needs keys wlo..whi of its kv head, whose rows start at row kv0; this thread owns query i.
 */
const QUERY_BLOCK = `${MAIN}
  let i0 = (w % p.nb) * WG;
  let bh = w / p.nb;                                  // b * NH + h
  let nkv = p.NH / p.G;
  let kv0 = ((bh / p.NH) * nkv + (bh % p.NH) / p.G) * p.T;
  let wlo = jlo(i0);
  let whi = jhi(min(i0 + WG, p.T) - 1u);
  let i = i0 + t;
  let row = bh * p.T + min(i, p.T - 1u);              // rows past T: any data, masked`;

/** Loads the tile of keys and values starting at key t0. */
const LOAD_KV_TILE = `
    workgroupBarrier();
    for (var x = t; x < TILE * HV; x += WG) {
      let j = kv0 + min(t0 + x / HV, p.T - 1u);
      kt[x] = ld_k(j, x % HV);
      vt[x] = ld_v(j, x % HV);
    }
    workgroupBarrier();`;

function forwardCode(s: Spec): string {
  return `${header(s, ["q", "k", "v"], ["o"])}
${FORWARD_BINDINGS_WGSL}
var<workgroup> kt: array<vec4f, TILE * HV>;  // [TILE, HV] keys
var<workgroup> vt: array<vec4f, TILE * HV>;  // [TILE, HV] values
var<private> qr: array<vec4f, HV>;   // own query row, times scale
var<private> acc: array<vec4f, HV>;  // sum_j exp(s_j - m) v_j

${QUERY_BLOCK}
  for (var c = 0u; c < HV; c++) { qr[c] = ld_q(row, c) * p.scale; }
  var m = -3.0e38;  // running max of the scores
  var l = 0.0;      // running sum of exp(s_j - m)
  for (var t0 = wlo / TILE * TILE; t0 <= whi; t0 += TILE) {
    ${LOAD_KV_TILE}
    let rg = groupRange(t0, wlo, whi);  // the same for all threads
    for (var r = rg.x; r < rg.y; r += 4u) {
      let ok = keys4(i, t0 + r);
      var s = vec4f(0.0);
      ${eachChunk(s, (c) => `s += ${dot4(`qr[${c}]`, "kt", c)};`)}
      s = select(vec4f(-3.0e38), s, ok);
      let mNew = max(m, max(max(s.x, s.y), max(s.z, s.w)));
      let pr = select(vec4f(0.0), exp(s - mNew), ok);
      let a = exp(m - mNew);
      l = l * a + pr.x + pr.y + pr.z + pr.w;
      ${eachChunk(s, (c) => `acc[${c}] = acc[${c}] * a + ${axpy4("pr", "vt", c)};`)}
      m = mNew;
    }
  }
  if (i < p.T) {
    for (var c = 0u; c < HV; c++) { st_o(row, c, acc[c] / l); }
    lse[row] = m + log(l);
  }
}`;
}

function rowDotCode(dtype: string, HS: number): string {
  return `${dtype === "f16" ? "enable f16;" : ""}
@group(0) @binding(0) var<storage, read> g: array<${dtype}>;   // [B, NH, T, HS]
@group(0) @binding(1) var<storage, read> o: array<${dtype}>;   // [B, NH, T, HS]
@group(0) @binding(2) var<storage, read_write> D: array<f32>;  // [B, NH, T]
struct P { rows: u32 }
@group(0) @binding(3) var<uniform> p: P;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let row = gid.x + gid.y * nwg.x * 64u;
  if (row >= p.rows) { return; }
  var s = 0.0;
  for (var d = 0u; d < ${HS}u; d++) { s += f32(g[row * ${HS}u + d]) * f32(o[row * ${HS}u + d]); }
  D[row] = s;
}`;
}

function dqCode(s: Spec): string {
  return `${header(s, ["q", "k", "v", "g"], ["dq"])}
${DQ_BINDINGS_WGSL}
var<workgroup> kt: array<vec4f, TILE * HV>;
var<workgroup> vt: array<vec4f, TILE * HV>;
var<private> qr: array<vec4f, HV>;   // own query row, times scale
var<private> gr: array<vec4f, HV>;   // its d out
var<private> acc: array<vec4f, HV>;  // sum_j ds_j k_j

${QUERY_BLOCK}
  for (var c = 0u; c < HV; c++) {
    qr[c] = ld_q(row, c) * p.scale;
    gr[c] = ld_g(row, c);
  }
  let L = lse[row];
  let Di = D[row];
  for (var t0 = wlo / TILE * TILE; t0 <= whi; t0 += TILE) {
    ${LOAD_KV_TILE}
    let rg = groupRange(t0, wlo, whi);  // the same for all threads
    for (var r = rg.x; r < rg.y; r += 4u) {
      var s = vec4f(0.0);   // scores with keys t0+r..t0+r+3
      var dp = vec4f(0.0);  // d out . their values
      ${eachChunk(s, (c) => `s += ${dot4(`qr[${c}]`, "kt", c)};\n      dp += ${dot4(`gr[${c}]`, "vt", c)};`)}
      let ds = select(vec4f(0.0), exp(s - L), keys4(i, t0 + r)) * (dp - Di);
      ${eachChunk(s, (c) => `acc[${c}] += ${axpy4("ds", "kt", c)};`)}
    }
  }
  if (i < p.T) {
    for (var c = 0u; c < HV; c++) { st_dq(row, c, acc[c] * p.scale); }
  }
}`;
}

function dkdvCode(s: Spec): string {
  return `${header(s, ["q", "k", "v", "g"], ["dk", "dv"])}
${DKDV_BINDINGS_WGSL}
var<workgroup> qt: array<vec4f, TILE * HV>;  // [TILE, HV] queries
var<workgroup> gt: array<vec4f, TILE * HV>;  // [TILE, HV] their d out
var<workgroup> lt: array<f32, TILE>;         // their lse
var<workgroup> dt: array<f32, TILE>;         // their D
var<private> kr: array<vec4f, HV>;   // own key row, times scale
var<private> vr: array<vec4f, HV>;   // its value row
var<private> dka: array<vec4f, HV>;  // sum_i ds_i q_i
var<private> dva: array<vec4f, HV>;  // sum_i p_i g_i

${MAIN}
  let j0 = (w % p.nb) * WG;   // the workgroup owns key rows j0..j0+WG-1 of kv head bkv
  let bkv = w / p.nb;         // b * NKV + kv head
  let nkv = p.NH / p.G;
  let wlo = ilo(j0);          // and needs queries wlo..whi of each query head of the group
  let whi = ihi(min(j0 + WG, p.T) - 1u);
  let j = j0 + t;
  let row = bkv * p.T + min(j, p.T - 1u);
  for (var c = 0u; c < HV; c++) {
    kr[c] = ld_k(row, c) * p.scale;
    vr[c] = ld_v(row, c);
  }
  for (var h = 0u; h < p.G; h++) {
    let q0 = ((bkv / nkv) * p.NH + (bkv % nkv) * p.G + h) * p.T;  // the query head's row 0
    for (var t0 = wlo / TILE * TILE; t0 <= whi; t0 += TILE) {
      workgroupBarrier();
      for (var x = t; x < TILE * HV; x += WG) {
        let i = q0 + min(t0 + x / HV, p.T - 1u);  // rows past T: any data, masked
        qt[x] = ld_q(i, x % HV);
        gt[x] = ld_g(i, x % HV);
      }
      for (var x = t; x < TILE; x += WG) {
        let i = q0 + min(t0 + x, p.T - 1u);
        lt[x] = lse[i];
        dt[x] = D[i];
      }
      workgroupBarrier();
      let rg = groupRange(t0, wlo, whi);  // the same for all threads
      for (var r = rg.x; r < rg.y; r += 4u) {
        var s = vec4f(0.0);   // scores of queries t0+r..t0+r+3 with the own key
        var dp = vec4f(0.0);  // their d out . the own value
        ${
    eachChunk(s, (c) => `s += ${dot4(`kr[${c}]`, "qt", c)};\n      dp += ${dot4(`vr[${c}]`, "gt", c)};`)
  }
        let pr = select(vec4f(0.0), exp(s - vec4f(lt[r], lt[r + 1u], lt[r + 2u], lt[r + 3u])), queries4(t0 + r, j));
        let ds = pr * (dp - vec4f(dt[r], dt[r + 1u], dt[r + 2u], dt[r + 3u]));
        ${
    eachChunk(s, (c) => `dva[${c}] += ${axpy4("pr", "gt", c)};\n      dka[${c}] += ${axpy4("ds", "qt", c)};`)
  }
      }
    }
  }
  if (j < p.T) {
    for (var c = 0u; c < HV; c++) {
      st_dk(row, c, dka[c] * p.scale);
      st_dv(row, c, dva[c]);
    }
  }
}`;
}

/**
 * The forward kernel alone: out [B, NH, T, HS] and the per-row logsumexp of the scaled scores
 * lse [B, NH, T] (f32), from q [B, NH, T, HS], k and v [B, NKV, T, HS]. No autograd.
 */
export function attentionForward(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  opts: AttentionOptions = {},
): { out: Tensor; lse: Tensor } {
  const d = dimsOf(q, k, v, opts);
  const e = q.engine;
  const out = e.empty(q.shape, q.dtype);
  const lse = e.empty([d.B, d.NH, d.T], "f32");
  if (d.T * d.B * d.NH === 0) return { out, lse };
  const kernel = attentionKernel(e, d, q.dtype, opts);
  if (kernel === "matmul") {
    matmulAttentionForward(q, k, v, d, opts, out, lse);
    return { out, lse };
  }
  if (kernel === "flash") {
    flashAttentionForward(q, k, v, d, opts, out, lse);
    return { out, lse };
  }
  const spec = specOf(e, q.dtype, d);
  e.run({
    label: "attention_fwd",
    code: forwardCode(spec),
    bindings: [q, k, v, out, lse],
    ...blockGrid(d, spec.rows, d.NH, opts),
  });
  return { out, lse };
}

/** The fused backward kernels: dq, and dk with dv (both computed when either is given). */
function fusedBackward(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  dout: Tensor,
  lse: Tensor,
  D: Tensor,
  d: AttentionDims,
  opts: AttentionOptions,
  { dq, dk, dv }: AttentionGrads,
): void {
  const e = q.engine;
  const spec = specOf(e, q.dtype, d);
  if (dq) {
    e.run({
      label: "attention_bwd_dq",
      code: dqCode(spec),
      bindings: [q, k, v, dout, lse, D, dq],
      ...blockGrid(d, spec.rows, d.NH, opts),
    });
  }
  if (dk && dv) {
    e.run({
      label: "attention_bwd_dkdv",
      code: dkdvCode(spec),
      bindings: [q, k, v, dout, lse, D, dk, dv],
      ...blockGrid(d, spec.rows, d.NKV, opts),
    });
  }
}

/**
 * The backward kernels alone: given the forward's inputs, its out and lse and the gradient dout
 * [B, NH, T, HS], returns dq [B, NH, T, HS] and dk, dv [B, NKV, T, HS] (dk/dv summed over the query
 * heads of each kv group). `needs` = [q, k, v] skips the dq kernel, or the dk/dv kernel, when unneeded.
 */
export function attentionBackward(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  out: Tensor,
  lse: Tensor,
  dout: Tensor,
  opts: AttentionOptions = {},
  needs: readonly boolean[] = [true, true, true],
): { dq: Tensor | null; dk: Tensor | null; dv: Tensor | null } {
  const d = dimsOf(q, k, v, opts);
  const e = q.engine;
  if (dout.dtype !== q.dtype || dout.size !== q.size) {
    throw new Error(`attention backward: dout ${dout} for q ${q}`);
  }
  const rows = d.B * d.NH * d.T;
  const D = e.empty([d.B, d.NH, d.T], "f32");
  const dq = needs[0] ? e.empty(q.shape, q.dtype) : null;
  const dkv = needs[1] || needs[2];
  const dk = dkv ? e.empty(k.shape, k.dtype) : null;
  const dv = dkv ? e.empty(v.shape, v.dtype) : null;
  if (rows > 0) {
    e.run({
      label: "attention_bwd_rowdot",
      code: rowDotCode(q.dtype, d.HS),
      bindings: [dout, out, D],
      params: [rows],
      workgroups: grid1d(rows, 64),
    });
    const kernel = attentionKernel(e, d, q.dtype, opts);
    if (kernel === "matmul") {
      matmulAttentionBackward(q, k, v, dout, lse, D, d, opts, { dq, dk, dv });
    } else if (kernel === "flash") {
      flashAttentionBackward(q, k, v, dout, lse, D, d, opts, { dq, dk, dv });
    } else fusedBackward(q, k, v, dout, lse, D, d, opts, { dq, dk, dv });
  }
  D.dispose();
  if (!needs[1]) dk?.dispose();
  if (!needs[2]) dv?.dispose();
  return { dq, dk: needs[1] ? dk : null, dv: needs[2] ? dv : null };
}

/**
 * Scaled-dot-product attention, differentiable: softmax(scale q k^T, masked) v with
 * q [B, NH, T, HS] and k, v [B, NKV, T, HS], NH % NKV == 0 (grouped-query attention: query head h
 * uses kv head floor(h / (NH / NKV))); HS <= 128. Returns out [B, NH, T, HS] in q's dtype.
 * Saved for backward, which must run in the same tidy scope as the forward: the per-row logsumexp
 * [B, NH, T]. The matmul path also needs a transient workspace of at most two 128 MiB score buffers
 * (`SCORE_BUDGET` in attention_matmul.ts) while it runs.
 */
export function attention(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions = {}): Tensor {
  const { out, lse } = attentionForward(q, k, v, opts);
  record(out, [q, k, v], (g, needs) => {
    const { dq, dk, dv } = attentionBackward(q, k, v, out, lse, g, opts, needs);
    return [dq, dk, dv];
  });
  if (!out.requiresGrad) lse.dispose(); // not recorded: nothing will need it
  return out;
}
