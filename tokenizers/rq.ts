/**
 * Residual quantization (RQ) on the GPU: the visual tokenizer that turns a frozen encoder's
 * features into discrete targets (ASVR_SPEC section 2), and its decoder.
 *
 * Depth d = 0..D-1: `k_d = argmin_k ||r_d - C_d[k]||^2` (plain squared L2, no normalization; ties
 * go to the lowest index), `r_{d+1} = r_d - C_d[k_d]`, `r_0 = x`. The codebooks are one per depth
 * [D, K, Dc], or one shared by every depth [1, K, Dc].
 *
 * Kernels:
 * - `rq_nearest_partial`: squared distances computed directly, sum_c (r_c - C[k]_c)^2 in f32 (no
 *   `||c||^2 - 2 r.c` cancellation), in 64-row x 64-code tiles with 16-wide slices of Dc staged in
 *   workgroup memory; each workgroup covers one chunk of K and leaves its best (distance, code) per
 *   row. Chunking over K and over rows keeps the grid large and the memory small at K = 16384,
 *   Dc = 1152, R = 4 * 729.
 * - `rq_nearest_pick`: per row, the best over the chunks (ties: the lowest code).
 * - `rq_add_codes`: r += sign * C[k] (the residual update, and the decoder's accumulation).
 *
 * ```ts ignore
 * const x = e.tensor(features, [R, Dc]);
 * const cb = codebooks.toTensor(e);                 // f32 [D, K, Dc]
 * const codes = rqEncode(x, cb, { depths: 8 });     // i32 [R, 8]
 * const xq = rqDecode(codes, cb);                   // f32 [R, Dc], sum_d C_d[k_d]
 * ```
 * @module
 */

import type { Engine } from "../core/engine.ts";
import { grid1d } from "../core/engine.ts";
import { f32Bits } from "../core/dtype.ts";
import { cast } from "../core/kernels/elementwise/elementwise.ts";
import type { Tensor } from "../core/tensor.ts";

/** Rows per workgroup tile of the distance kernel. */
const TR = 64;
/** Codes per workgroup tile of the distance kernel. */
const TK = 64;
/** Feature columns staged in workgroup memory per step. */
const TD = 16;
/** The distance kernel aims at about this many workgroups (splitting K when rows are few). */
const TARGET_WORKGROUPS = 1024;
/** Threads per workgroup of the element-wise kernels. */
const WG = 256;
/** Largest f32, the "no code yet" distance. */
const F32_MAX = "3.40282347e38";

const PARTIAL_WGSL = `
@group(0) @binding(0) var<storage, read> x: array<f32>;           // [R, Dc] rows (residuals)
@group(0) @binding(1) var<storage, read> cb: array<f32>;          // [.., K, Dc]; this book at p.cbOff
@group(0) @binding(2) var<storage, read_write> partD: array<f32>; // [S, R] best squared distance per chunk
@group(0) @binding(3) var<storage, read_write> partK: array<i32>; // [S, R] its code (-1: none)
struct P { R: u32, K: u32, Dc: u32, cbOff: u32, chunk: u32, rowOff: u32 }
@group(0) @binding(4) var<uniform> p: P;
const TR = ${TR}u;
const TK = ${TK}u;
const TD = ${TD}u;
var<workgroup> xs: array<f32, ${TD * TR}>; // [TD, TR]
var<workgroup> cs: array<f32, ${TD * TK}>; // [TD, TK]
var<workgroup> rd: array<f32, ${TR * 16}>; // [TR, 16] each thread column's best per row
var<workgroup> rk: array<i32, ${TR * 16}>;
@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u,
        @builtin(local_invocation_index) li: u32) {
  let row0 = p.rowOff + wid.x * TR;
  let k0 = wid.y * p.chunk;
  let k1 = min(p.K, k0 + p.chunk);
  let tx = lid.x; // codes tx + 16 j of a tile
  let ty = lid.y; // rows ty + 16 i of a tile
  var bd = array<f32, 4>(${F32_MAX}, ${F32_MAX}, ${F32_MAX}, ${F32_MAX});
  var bk = array<i32, 4>(-1, -1, -1, -1);
  for (var kt = k0; kt < k1; kt += TK) {
    var acc: array<f32, 16>; // [4 rows, 4 codes], zero
    for (var d0 = 0u; d0 < p.Dc; d0 += TD) {
      for (var l = 0u; l < ${(TD * TR) / 256}u; l++) {
        let el = li + l * 256u;
        let i = el / TD;
        let dd = el % TD;
        let col = d0 + dd;
        var xv = 0.0;
        if (row0 + i < p.R && col < p.Dc) { xv = x[(row0 + i) * p.Dc + col]; }
        xs[dd * TR + i] = xv;
        var cv = 0.0;
        if (kt + i < k1 && col < p.Dc) { cv = cb[p.cbOff + (kt + i) * p.Dc + col]; }
        cs[dd * TK + i] = cv;
      }
      workgroupBarrier();
      for (var dd = 0u; dd < TD; dd++) {
        var xr: array<f32, 4>;
        var cr: array<f32, 4>;
        for (var i = 0u; i < 4u; i++) { xr[i] = xs[dd * TR + ty + 16u * i]; }
        for (var j = 0u; j < 4u; j++) { cr[j] = cs[dd * TK + tx + 16u * j]; }
        for (var i = 0u; i < 4u; i++) {
          for (var j = 0u; j < 4u; j++) {
            let v = xr[i] - cr[j];
            acc[i * 4u + j] = fma(v, v, acc[i * 4u + j]);
          }
        }
      }
      workgroupBarrier();
    }
    // Codes are visited in ascending order and only a strictly smaller distance wins: ties keep the
    // lowest code.
    for (var j = 0u; j < 4u; j++) {
      let k = kt + tx + 16u * j;
      if (k < k1) {
        for (var i = 0u; i < 4u; i++) {
          if (acc[i * 4u + j] < bd[i]) {
            bd[i] = acc[i * 4u + j];
            bk[i] = i32(k);
          }
        }
      }
    }
  }
  for (var i = 0u; i < 4u; i++) {
    rd[(ty + 16u * i) * 16u + tx] = bd[i];
    rk[(ty + 16u * i) * 16u + tx] = bk[i];
  }
  workgroupBarrier();
  if (li < TR && row0 + li < p.R) {
    var d = ${F32_MAX};
    var k = -1;
    for (var t = 0u; t < 16u; t++) {
      let dt = rd[li * 16u + t];
      let kc = rk[li * 16u + t];
      if (kc >= 0 && (k < 0 || dt < d || (dt == d && kc < k))) {
        d = dt;
        k = kc;
      }
    }
    partD[wid.y * p.R + row0 + li] = d;
    partK[wid.y * p.R + row0 + li] = k;
  }
}`;

const PICK_WGSL = `
@group(0) @binding(0) var<storage, read> partD: array<f32>;        // [S, R]
@group(0) @binding(1) var<storage, read> partK: array<i32>;        // [S, R]
@group(0) @binding(2) var<storage, read_write> codes: array<i32>;  // [R, stride], column col
@group(0) @binding(3) var<storage, read_write> dist: array<f32>;   // [R]
struct P { R: u32, S: u32, stride: u32, col: u32 }
@group(0) @binding(4) var<uniform> p: P;
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let row = gid.x + gid.y * nwg.x * ${WG}u;
  if (row >= p.R) { return; }
  var d = ${F32_MAX};
  var k = -1;
  for (var s = 0u; s < p.S; s++) {
    let dt = partD[s * p.R + row];
    let kc = partK[s * p.R + row];
    if (kc >= 0 && (k < 0 || dt < d || (dt == d && kc < k))) {
      d = dt;
      k = kc;
    }
  }
  codes[row * p.stride + p.col] = k;
  dist[row] = d;
}`;

const ADD_CODES_WGSL = `
@group(0) @binding(0) var<storage, read_write> y: array<f32>;  // [R, Dc]
@group(0) @binding(1) var<storage, read> codes: array<i32>;    // [R, stride], column col
@group(0) @binding(2) var<storage, read> cb: array<f32>;       // [.., K, Dc]; this book at p.cbOff
struct P { n: u32, Dc: u32, K: u32, cbOff: u32, stride: u32, col: u32, sign: f32 }
@group(0) @binding(3) var<uniform> p: P;
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * ${WG}u;
  if (i >= p.n) { return; }
  let row = i / p.Dc;
  let k = codes[row * p.stride + p.col];
  if (k < 0 || u32(k) >= p.K) { return; }
  y[i] = y[i] + p.sign * cb[p.cbOff + u32(k) * p.Dc + i % p.Dc];
}`;

/** The sizes of a codebooks tensor: [K, Dc] (one book) or [books, K, Dc]. */
export interface CodebookShape {
  /** Stored codebooks: 1 (shared by every depth) or one per depth. */
  books: number;
  /** Codes K per codebook. */
  K: number;
  /** Width Dc of a code vector. */
  Dc: number;
}

/** The shape of a codebooks tensor, checked: f32, [K, Dc] or [books, K, Dc], K >= 1, Dc >= 1. */
export function codebookShape(codebooks: Tensor, op: string): CodebookShape {
  const s = codebooks.shape;
  if (codebooks.dtype !== "f32" || (s.length !== 2 && s.length !== 3)) {
    throw new Error(`${op}: codebooks must be f32 [D, K, Dc] (or [K, Dc] for one book), got ${codebooks}`);
  }
  const [books, K, Dc] = s.length === 3 ? s : [1, s[0], s[1]];
  if (books < 1 || K < 1 || Dc < 1) throw new Error(`${op}: empty codebooks ${codebooks}`);
  return { books, K, Dc };
}

/**
 * How book `book` of `codebooks` binds: the whole tensor with an element offset when it fits one
 * storage binding, else the book's own byte range (which must then start at an offset the adapter
 * accepts).
 */
function bookBinding(
  codebooks: Tensor,
  shape: CodebookShape,
  book: number,
  op: string,
): { binding: Tensor | GPUBufferBinding; off: number } {
  const e = codebooks.engine;
  const maxBinding = e.limit("maxStorageBufferBindingSize");
  const bookElems = shape.K * shape.Dc;
  if (codebooks.bindSize <= maxBinding) return { binding: codebooks, off: book * bookElems };
  const bytes = bookElems * 4, offset = book * bytes;
  const align = e.limit("minStorageBufferOffsetAlignment");
  if (bytes > maxBinding) {
    throw new Error(
      `${op}: one codebook [${shape.K}, ${shape.Dc}] is ${bytes} bytes, over this adapter's ` +
        `maxStorageBufferBindingSize (${maxBinding}); use fewer codes or a GPU with larger bindings`,
    );
  }
  if (offset % align !== 0) {
    throw new Error(
      `${op}: codebooks ${codebooks} exceed one storage binding (${maxBinding} bytes) and a book's ` +
        `${bytes} bytes are not a multiple of the adapter's offset alignment ${align}, so books cannot be ` +
        `bound one by one; make K * Dc a multiple of ${align / 4}`,
    );
  }
  return { binding: { buffer: codebooks.buffer, offset, size: bytes }, off: 0 };
}

/** The books depth d uses: 0 for a shared codebook, else d. */
function bookOf(d: number, books: number): number {
  return books === 1 ? 0 : d;
}

/** Rows R and width Dc of features [..., Dc] (f32 or f16). */
function rowsOfFeatures(x: Tensor, Dc: number, op: string): { R: number; lead: number[] } {
  if (x.shape.length < 1 || x.shape[x.shape.length - 1] !== Dc || (x.dtype !== "f32" && x.dtype !== "f16")) {
    throw new Error(
      `${op}: features must be f32 or f16 [..., Dc] with Dc = ${Dc} (the codebooks' width), got ${x}`,
    );
  }
  return { R: x.size / Dc, lead: x.shape.slice(0, -1) };
}

/** Options of {@linkcode nearestCodes} and {@linkcode rqEncode}. */
export interface NearestOptions {
  /**
   * Codes per workgroup along K (rounded up to a multiple of 64). Default: chosen so that about 1024
   * workgroups run. A tuning and testing knob; the result does not depend on it.
   */
  codesPerChunk?: number;
}

/** Scratch of the distance kernels: per-chunk bests [S, R]. */
interface Scratch {
  partD: Tensor;
  partK: Tensor;
  chunk: number;
  S: number;
}

function scratch(e: Engine, R: number, K: number, codesPerChunk?: number): Scratch {
  let chunk: number;
  if (codesPerChunk !== undefined) {
    if (!Number.isInteger(codesPerChunk) || codesPerChunk < 1) {
      throw new Error(`codesPerChunk must be a positive integer, got ${codesPerChunk}`);
    }
    chunk = Math.ceil(codesPerChunk / TK) * TK;
  } else {
    const tiles = Math.ceil(R / TR);
    const S = Math.min(Math.max(1, Math.ceil(TARGET_WORKGROUPS / tiles)), Math.ceil(K / TK));
    chunk = Math.ceil(Math.ceil(K / S) / TK) * TK;
  }
  const S = Math.ceil(K / chunk);
  if (S > e.limit("maxComputeWorkgroupsPerDimension")) {
    throw new Error(`nearest code: ${S} chunks of K = ${K} is over the grid limit; raise codesPerChunk`);
  }
  return { partD: e.empty([S, R]), partK: e.empty([S, R], "i32"), chunk, S };
}

/**
 * Records the nearest code of every row of x [R, Dc] in book `book`: writes it to column `col` of
 * codes [R, stride] and its squared distance to dist [R].
 */
function nearestInto(
  x: Tensor,
  R: number,
  codebooks: Tensor,
  shape: CodebookShape,
  book: number,
  out: { codes: Tensor; stride: number; col: number; dist: Tensor },
  sc: Scratch,
): void {
  const e = x.engine;
  const { binding, off } = bookBinding(codebooks, shape, book, "nearest code");
  const maxGroups = e.limit("maxComputeWorkgroupsPerDimension");
  const rowsPerDispatch = maxGroups * TR;
  for (let rowOff = 0; rowOff < R; rowOff += rowsPerDispatch) {
    const rows = Math.min(rowsPerDispatch, R - rowOff);
    e.run({
      label: "rq_nearest_partial",
      code: PARTIAL_WGSL,
      bindings: [x, binding, sc.partD, sc.partK],
      params: [R, shape.K, shape.Dc, off, sc.chunk, rowOff],
      workgroups: [Math.ceil(rows / TR), sc.S],
    });
  }
  e.run({
    label: "rq_nearest_pick",
    code: PICK_WGSL,
    bindings: [sc.partD, sc.partK, out.codes, out.dist],
    params: [R, sc.S, out.stride, out.col],
    workgroups: grid1d(R, WG),
  });
}

/** Records y[r] += sign * C_book[codes[r, col]] for y [R, Dc], codes [R, stride]. */
function addCodesInto(
  y: Tensor,
  codes: Tensor,
  stride: number,
  col: number,
  codebooks: Tensor,
  shape: CodebookShape,
  book: number,
  sign: 1 | -1,
): void {
  const { binding, off } = bookBinding(codebooks, shape, book, "codebook rows");
  y.engine.run({
    label: "rq_add_codes",
    code: ADD_CODES_WGSL,
    bindings: [y, codes, binding],
    params: [y.size, shape.Dc, shape.K, off, stride, col, f32Bits(sign)],
    workgroups: grid1d(y.size, WG),
  });
}

/** The nearest code of each row and its squared distance (see {@linkcode nearestCodes}). */
export interface Nearest {
  /** i32 [R]: argmin_k ||x_r - C[k]||^2, ties to the lowest k (-1 for a row whose distances are all non-finite). */
  codes: Tensor;
  /** f32 [R]: the squared distance to that code. */
  dist: Tensor;
}

/**
 * The nearest code of every row of x [..., Dc] in one codebook (book `book` of codebooks
 * [books, K, Dc], or codebooks [K, Dc]): the assignment step of k-means and of each RQ depth.
 * Returns codes i32 [R] and squared distances f32 [R], R = x.size / Dc. No autograd.
 */
export function nearestCodes(x: Tensor, codebooks: Tensor, book = 0, opts: NearestOptions = {}): Nearest {
  const e = x.engine;
  const shape = codebookShape(codebooks, "nearestCodes");
  if (!Number.isInteger(book) || book < 0 || book >= shape.books) {
    throw new Error(`nearestCodes: book ${book} out of range for ${shape.books} codebook(s)`);
  }
  const { R } = rowsOfFeatures(x, shape.Dc, "nearestCodes");
  return e.tidy(() => {
    const xf = x.dtype === "f32" ? x : e.noGrad(() => cast(x, "f32"));
    const codes = e.empty([R], "i32"), dist = e.empty([R]);
    if (R > 0) {
      nearestInto(
        xf,
        R,
        codebooks,
        shape,
        book,
        { codes, stride: 1, col: 0, dist },
        scratch(e, R, shape.K, opts.codesPerChunk),
      );
    }
    return { codes, dist };
  });
}

/** Options of {@linkcode rqEncode}. */
export interface RqEncodeOptions extends NearestOptions {
  /**
   * Depths D to quantize. Default: the number of stored codebooks. With one shared codebook [1, K, Dc]
   * any number of depths may be asked; otherwise at most the number stored.
   */
  depths?: number;
}

/** The depths D to use with `books` stored codebooks. */
function depthsOf(books: number, depths: number | undefined, op: string): number {
  const D = depths ?? books;
  if (!Number.isInteger(D) || D < 1) throw new Error(`${op}: depths must be an integer >= 1, got ${depths}`);
  if (books !== 1 && D > books) {
    throw new Error(
      `${op}: depths = ${D} but only ${books} codebooks are stored; use depths <= ${books} (or one shared codebook)`,
    );
  }
  return D;
}

/**
 * Residual quantization of features x [..., Dc] (f32, or f16 read as f32) with codebooks
 * f32 [D, K, Dc] (one per depth) or [1, K, Dc] (shared): the codes i32 [..., D]. No autograd (the
 * codes are targets). The features are not modified.
 */
export function rqEncode(x: Tensor, codebooks: Tensor, opts: RqEncodeOptions = {}): Tensor {
  const e = x.engine;
  const shape = codebookShape(codebooks, "rqEncode");
  const D = depthsOf(shape.books, opts.depths, "rqEncode");
  const { R, lead } = rowsOfFeatures(x, shape.Dc, "rqEncode");
  return e.tidy(() => {
    const codes = e.empty([...lead, D], "i32");
    if (R === 0) return codes;
    const res = e.empty([R, shape.Dc]); // r_d [R, Dc]
    if (x.dtype === "f32") e.copy(x, res);
    else e.copy(e.noGrad(() => cast(x, "f32")), res);
    const dist = e.empty([R]);
    const sc = scratch(e, R, shape.K, opts.codesPerChunk);
    for (let d = 0; d < D; d++) {
      const book = bookOf(d, shape.books);
      nearestInto(res, R, codebooks, shape, book, { codes, stride: D, col: d, dist }, sc);
      if (d < D - 1) addCodesInto(res, codes, D, d, codebooks, shape, book, -1);
    }
    return codes;
  });
}

/**
 * The RQ reconstruction sum_{d < depths} C_d[k_d]: codes i32 [..., D] and codebooks f32 [D, K, Dc]
 * or [1, K, Dc] give f32 [..., Dc] (the "discrete input" ablation feeds this to the projector).
 * `depths` defaults to D (a prefix gives the coarser reconstructions); codes outside [0, K) add
 * nothing. No autograd.
 */
export function rqDecode(codes: Tensor, codebooks: Tensor, depths?: number): Tensor {
  const e = codes.engine;
  const shape = codebookShape(codebooks, "rqDecode");
  if (codes.dtype !== "i32" || codes.shape.length < 1) {
    throw new Error(`rqDecode: codes must be i32 [..., D], got ${codes}`);
  }
  const D = codes.shape[codes.shape.length - 1];
  const use = depths ?? D;
  if (!Number.isInteger(use) || use < 0 || use > D) {
    throw new Error(`rqDecode: depths must be an integer in [0, ${D}] (the codes' last dim), got ${depths}`);
  }
  depthsOf(shape.books, D, "rqDecode");
  const lead = codes.shape.slice(0, -1);
  const out = e.zeros([...lead, shape.Dc]);
  if (out.size === 0) return out;
  for (let d = 0; d < use; d++) addCodesInto(out, codes, D, d, codebooks, shape, bookOf(d, shape.books), 1);
  return out;
}

/**
 * In place: residual [R, Dc] -= C_book[codes[r]] for codes i32 [R] (the residual update of RQ and of
 * residual k-means between depths). Codes outside [0, K) leave their row unchanged.
 */
export function subtractCodes(residual: Tensor, codes: Tensor, codebooks: Tensor, book = 0): void {
  const shape = codebookShape(codebooks, "subtractCodes");
  const { R } = rowsOfFeatures(residual, shape.Dc, "subtractCodes");
  if (residual.dtype !== "f32" || codes.dtype !== "i32" || codes.size !== R) {
    throw new Error(
      `subtractCodes: needs residual f32 [R, ${shape.Dc}] and codes i32 [R], got ${residual}, ${codes}`,
    );
  }
  if (R > 0) addCodesInto(residual, codes, 1, 0, codebooks, shape, book, -1);
}
