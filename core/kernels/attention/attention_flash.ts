/**
 * Attention in the FlashAttention-2 shape: a workgroup owns a block of BR rows of one head (query
 * rows in the forward and dq kernels, key rows in the dk/dv kernel), keeps them in workgroup memory,
 * and loops over tiles of BC rows of the other side, loaded into workgroup memory in turn. Score
 * blocks never leave the workgroup: no T x T buffer, no float atomics.
 *
 * Threads: BR / 4 row groups of TX lanes (TX = 4, or 8 above HS 64 to halve the accumulators per
 * thread and double the threads; thread t: row group ty = t / TX, lane tx = t % TX). Row group ty owns
 * the 4 rows 4ty..4ty+3 of the block. Of a score block S [BR, BC] a thread computes the 4 x BC/TX scores
 * of its 4 rows with the tile rows tx, tx+TX, ... (a vec4 per tile row, over the 4 own rows: the
 * register block); of the output block [BR, HS] it accumulates, in registers, the vec4 chunks tx,
 * tx+TX, ... (elements 4c..4c+3) of its 4 rows. Between the two products the probabilities (or their
 * gradients) go through workgroup memory as P^T [BC, BR/4] vec4, so each thread reads the 4 values of
 * its rows for a tile row in one load. Tiles are f32 rows of HV = ceil(HS / 4) vec4 (zero past HS)
 * at an odd stride HP, so that the lanes reading different rows hit different banks.
 *
 * Forward: S = scale Q K^T, online softmax with a running max m and sum l per row, O = O a + P V.
 * The TX lanes of a row group share its row max: reduced each tile by subgroup shuffles (lanes
 * t ^ 1, t ^ 2, and t ^ 4 for 8 lanes, which the forward takes only where the adapter's smallest
 * subgroup holds 8) when the engine uses subgroups, else through workgroup memory. Each lane sums
 * exp(s - m) over its own scores; the TX partial sums are added once, after the last tile. Saves
 * lse = m + log l per row for backward.
 *
 * Backward (FlashAttention-2, recomputing P = exp(S - lse)): with D = rowsum(dout * out) (computed by
 * attention.ts), dS = P (dP - D) with dP = dout V^T. The dq kernel owns query rows and loops over key
 * tiles (dq = scale dS K); the dk/dv kernel owns key rows and loops over the query tiles of every
 * query head of its kv group (dv = P^T dout, dk = scale dS^T Q). Neither needs a row reduction.
 *
 * Tiles: BR in 64, 32, 16, 8, 4 and BC in 16, 8, 4, the largest whose workgroup memory fits
 * `maxComputeWorkgroupStorageSize` (16 KiB at least), and no larger than T needs (see
 * {@linkcode flashTiles}).
 * Only tiles holding keys some row of the block attends to are visited (causal and sliding-window
 * masks skip the others); inside a tile the mask is applied per score. Pipelines are specialized on
 * dtype, HS, BR, BC, TX (and subgroups in the forward); sizes and masking are uniform parameters. WGSL
 * loops are left to the driver to unroll (compiles stay short on CPU adapters).
 * @module
 */

import type { DType } from "../../dtype.ts";
import type { Engine } from "../../engine.ts";
import type { Tensor } from "../../tensor.ts";
import type { AttentionOptions } from "./attention.ts";
import type { AttentionDims } from "./attention_cpu.ts";
import type { AttentionGrads } from "./attention_matmul.ts";
import {
  BLOCK_PARAMS_WGSL,
  blockGrid,
  DKDV_BINDINGS_WGSL,
  DQ_BINDINGS_WGSL,
  FORWARD_BINDINGS_WGSL,
  rowIoWgsl,
} from "./attention_blocks.ts";

/** The three kernels: forward, dq, and dk with dv. */
export type FlashKernel = "fwd" | "dq" | "dkdv";

/** Tile sizes of a flash kernel. */
export interface FlashTiles {
  /** Own rows per workgroup (BR): queries (fwd, dq) or keys (dkdv); threads: BR / 4 * lanes. */
  own: number;
  /** Rows of the other side per tile (BC). */
  other: number;
  /** Threads per 4 own rows (TX): 4, or 8 above HS 64 (fewer registers per thread, more threads). */
  lanes: number;
}

/** Candidate tiles [BR, BC], best first. */
const TILES: [number, number][] = [[64, 16], [32, 16], [16, 16], [16, 8], [8, 8], [8, 4], [4, 4]];

/** Bytes of workgroup memory a kernel declares (see the `var<workgroup>` of its WGSL). */
function tileBytes(kind: FlashKernel, HS: number, own: number, other: number, lanes: number): number {
  const row = 16 * (Math.ceil(HS / 4) | 1); // one row of vec4f, stride HP
  switch (kind) {
    case "fwd": // qs [BR], ks, vs [BC], ps [BC, BR/4] vec4, red [NT = BR/4 * lanes] vec4
      return row * (own + 2 * other) + 4 * own * other + 4 * own * lanes;
    case "dq": // qs, gs [BR], ks, vs [BC], dss [BC, BR/4] vec4
      return row * (2 * own + 2 * other) + 4 * own * other;
    case "dkdv": // ks, vs [BR], qs, gs [BC], ps, dss [BC, BR/4] vec4, lt, dt [BC]
      return row * (2 * own + 2 * other) + 8 * own * other + 8 * other;
  }
}

/**
 * The tiles of kernel `kind` for a call: the first [BR, BC] of [64, 16], [32, 16], [16, 16], [16, 8],
 * [8, 8], [8, 4], [4, 4] whose workgroup memory fits the device and whose sides are no larger than T
 * rounded up to a power of two (at least 4); 8 lanes per row group above HS 64 where BC >= 8, else 4.
 * The forward reduces its row maxima over the lanes with subgroup shuffles where the engine uses
 * subgroups, so it takes 8 lanes only where every subgroup holds at least 8 invocations.
 */
export function flashTiles(e: Engine, kind: FlashKernel, d: AttentionDims): FlashTiles {
  const limit = e.limit("maxComputeWorkgroupStorageSize");
  const cap = Math.max(4, 2 ** Math.ceil(Math.log2(Math.max(1, d.T))));
  const shuffles8 = kind !== "fwd" || !e.hasSubgroups || e.info.subgroupMinSize >= 8;
  const wide = d.HS > 64 && shuffles8 ? 8 : 4;
  const fit = TILES.find(([own, other]) =>
    own <= cap && other <= cap && tileBytes(kind, d.HS, own, other, wide) <= limit
  );
  if (!fit) {
    throw new Error(`flash attention: HS ${d.HS} tiles do not fit ${limit} bytes of workgroup memory`);
  }
  return { own: fit[0], other: fit[1], lanes: fit[1] >= 8 ? wide : 4 };
}

/** WGSL shared by the kernels: sizes, the parameter block, the masking rule, row loads and stores. */
function header(dtype: string, HS: number, t: FlashTiles, load: string[], store: string[]): string {
  return `${dtype === "f16" ? "enable f16;" : ""}
alias E = ${dtype};   // storage type; math is f32
const HS = ${HS}u;    // head size
const HV = ${Math.ceil(HS / 4)}u;     // vec4 chunks per row (zero-padded past HS)
const HP = ${Math.ceil(HS / 4) | 1}u;     // row stride of the tiles in vec4 (odd: rows start in other banks)
const BR = ${t.own}u;    // own rows per workgroup
const BC = ${t.other}u;  // rows of the other side per tile
const TX = ${t.lanes}u;   // lanes per row group
const RG = BR / 4u;   // row groups, of 4 own rows each
const NT = RG * TX;   // threads
const KN = BC / TX;   // tile rows per lane: tx, tx + TX, ...
const NV = ${Math.ceil(HS / 4 / t.lanes)}u;    // output chunks per lane: tx, tx + TX, ... (clamped to HV - 1)
${BLOCK_PARAMS_WGSL}
// Whether query i attends to key j (rows past T: never).
fn att(i: u32, j: u32) -> bool { return i < p.T && j < p.T && j >= jlo(i) && j <= jhi(i); }
${rowIoWgsl(HS, load, store)}
`;
}

/** The entry point's start: w, the workgroup's index, and its thread's row group ty and lane tx. */
const MAIN = `@compute @workgroup_size(NT)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) t: u32) {
  let w = wid.x + wid.y * nwg.x;
  if (w >= p.ngroups) { return; }
  let ty = t / TX;
  let tx = t % TX;`;

/**
 * WGSL: for each pair [out, own, other], out[n] (vec4 over the own rows 4ty..4ty+3) = the dot products
 * of those rows of the [BR, HP] tile `own` with row tx + TX n of the [BC, HP] tile `other`.
 */
function products(pairs: [string, string, string][]): string {
  const rows = (own: string, x: string) =>
    [0, 1, 2, 3].map((r) => `let ${x}${r} = ${own}[(4u * ty + ${r}u) * HP + c];`).join(" ");
  return `for (var n = 0u; n < KN; n++) { ${pairs.map(([out]) => `${out}[n] = vec4f(0.0);`).join(" ")} }
    for (var c = 0u; c < HV; c++) {
      ${pairs.map(([, own], k) => rows(own, `a${k}_`)).join("\n      ")}
      for (var n = 0u; n < KN; n++) {
        ${
    pairs.map(([out, , other], k) =>
      `let b${k} = ${other}[(tx + TX * n) * HP + c];
        ${out}[n] += vec4f(dot(a${k}_0, b${k}), dot(a${k}_1, b${k}), dot(a${k}_2, b${k}), dot(a${k}_3, b${k}));`
    ).join("\n        ")
  }
      }
    }`;
}

/**
 * WGSL: for each tile row u, for each pair [acc, weights, tile], acc[r * NV + n] += (weights row u,
 * element r) * (chunk tx + TX n of row u of the [BC, HP] tile): the thread's share of weights^T tile.
 */
function accumulate(pairs: [string, string, string][]): string {
  return `for (var u = 0u; u < BC; u++) {
      ${pairs.map(([, wts], k) => `let w${k} = ${wts}[u * RG + ty];`).join(" ")}
      for (var n = 0u; n < NV; n++) {
        let c = min(tx + TX * n, HV - 1u);
        ${
    pairs.map(([acc, , tile], k) =>
      `let x${k} = ${tile}[u * HP + c];
        ${acc}[n] += w${k}.x * x${k}; ${acc}[NV + n] += w${k}.y * x${k}; ` +
      `${acc}[2u * NV + n] += w${k}.z * x${k}; ${acc}[3u * NV + n] += w${k}.w * x${k};`
    ).join("\n        ")
  }
      }
    }`;
}

/** WGSL: stores acc[r * NV + n] * `factor` as chunk tx + TX n of row `base + r` of `buf`, rows below T. */
function storeRows(
  buf: string,
  acc: string,
  base: string,
  row0: string,
  factor: (r: string) => string,
): string {
  return `for (var r = 0u; r < 4u; r++) {
    if (${row0} + r < p.T) {
      for (var n = 0u; n < NV; n++) {
        if (tx + TX * n < HV) { st_${buf}(${base} + ${row0} + r, tx + TX * n, ${acc}[r * NV + n] * ${
    factor("r")
  }); }
      }
    }
  }`;
}

/**
 * Row max and sum over the `lanes` (4 or 8: the forward's TX) lanes of a row group, by subgroup shuffles
 * (lanes t ^ 1, t ^ 2, t ^ 4; {@linkcode flashTiles} takes 8 lanes only where subgroups hold 8) or
 * through workgroup memory. Called from uniform control flow.
 */
function laneReduceWgsl(subgroups: boolean, lanes: number): string {
  const masks = lanes === 8 ? [1, 2, 4] : [1, 2];
  const others = [...Array(lanes).keys()].slice(1);
  if (subgroups) {
    const steps = (op: (a: string, b: string) => string) =>
      masks.map((m) => `y = ${op("y", `subgroupShuffleXor(y, ${m}u)`)};`).join(" ");
    return `fn laneMax(t: u32, x: vec4f) -> vec4f { var y = x; ${
      steps((a, b) => `max(${a}, ${b})`)
    } return y; }
fn laneSum(t: u32, x: vec4f) -> vec4f { var y = x; ${steps((a, b) => `${a} + ${b}`)} return y; }`;
  }
  // Every call writes red after a barrier that follows the previous call's reads (the caller's).
  const over = (op: (a: string, b: string) => string) =>
    others.reduce((acc, i) => op(acc, `red[g + ${i}u]`), "red[g]");
  return `var<workgroup> red: array<vec4f, NT>;  // [RG, TX] one vec4 per lane
fn laneMax(t: u32, x: vec4f) -> vec4f {
  red[t] = x;
  workgroupBarrier();
  let g = t & ~(TX - 1u);
  return ${over((a, b) => `max(${a}, ${b})`)};
}
fn laneSum(t: u32, x: vec4f) -> vec4f {
  red[t] = x;
  workgroupBarrier();
  let g = t & ~(TX - 1u);
  return ${over((a, b) => `${a} + ${b}`)};
}`;
}

/**
 * The start of the forward and dq kernels: the workgroup owns query rows i0..i0+BR-1 of head bh
 * (rows q0 + i of q), this thread rows i..i+3; they need keys wlo..whi of the kv head (rows kv0 + j).
 */
const QUERY_BLOCK = `${MAIN}
  let i0 = (w % p.nb) * BR;
  let bh = w / p.nb;                                  // b * NH + h
  let nkv = p.NH / p.G;
  let q0 = bh * p.T;
  let kv0 = ((bh / p.NH) * nkv + (bh % p.NH) / p.G) * p.T;
  let wlo = jlo(i0);
  let whi = jhi(min(i0 + BR, p.T) - 1u);
  let i = i0 + 4u * ty;`;

/** Loads the own [BR, HP] tile `dst` from rows i0.. of head row `base` of `src` (rows past T: row T-1). */
function loadOwn(dst: string, src: string, base: string, first: string, factor = ""): string {
  return `for (var x = t; x < BR * HV; x += NT) {
    ${dst}[x / HV * HP + x % HV] = ld_${src}(${base} + min(${first} + x / HV, p.T - 1u), x % HV)${factor};
  }`;
}

/** Loads the [BC, HP] tiles of `pairs` [dst, src] from rows t0.. of head row `base` (rows past T: T-1). */
function loadTile(pairs: [string, string][], base: string): string {
  return `workgroupBarrier();
    for (var x = t; x < BC * HV; x += NT) {
      let row = ${base} + min(t0 + x / HV, p.T - 1u);
      ${pairs.map(([dst, src]) => `${dst}[x / HV * HP + x % HV] = ld_${src}(row, x % HV);`).join(" ")}
    }`;
}

/** WGSL of the forward: one workgroup per block of BR query rows of a head. */
function forwardCode(dtype: string, HS: number, t: FlashTiles, subgroups: boolean): string {
  return `${header(dtype, HS, t, ["q", "k", "v"], ["o"])}
${FORWARD_BINDINGS_WGSL}
var<workgroup> qs: array<vec4f, BR * HP>;  // [BR, HP] own queries, times scale
var<workgroup> ks: array<vec4f, BC * HP>;  // [BC, HP] the tile's keys
var<workgroup> vs: array<vec4f, BC * HP>;  // [BC, HP] and values
var<workgroup> ps: array<vec4f, BC * RG>;  // [BC, RG] P^T: exp(s - m) of rows 4g..4g+3 per vec4
${laneReduceWgsl(subgroups, t.lanes)}

${QUERY_BLOCK}
  var s: array<vec4f, KN>;          // scores of rows i..i+3 with tile rows tx + TX n
  var acc: array<vec4f, 4u * NV>;   // [4, NV] sum exp(s - m) v, rows i + r, chunks tx + TX n
  ${loadOwn("qs", "q", "q0", "i0", " * p.scale")}
  var m = vec4f(-3.0e38);  // running max of rows i..i+3
  var l = vec4f(0.0);      // this lane's share of the running sums of exp(s - m)
  for (var t0 = wlo / BC * BC; t0 <= whi; t0 += BC) {
    ${loadTile([["ks", "k"], ["vs", "v"]], "kv0")}
    workgroupBarrier();
    ${products([["s", "qs", "ks"]])}
    var mx = vec4f(-3.0e38);
    for (var n = 0u; n < KN; n++) {
      let j = t0 + tx + TX * n;
      s[n] = select(vec4f(-3.0e38), s[n], vec4<bool>(att(i, j), att(i + 1u, j), att(i + 2u, j), att(i + 3u, j)));
      mx = max(mx, s[n]);
    }
    let mNew = max(m, laneMax(t, mx));
    let a = exp(m - mNew);
    l *= a;
    for (var n = 0u; n < KN; n++) {
      let pr = select(vec4f(0.0), exp(s[n] - mNew), s[n] > vec4f(-1.0e38));
      l += pr;
      ps[(tx + TX * n) * RG + ty] = pr;
    }
    m = mNew;
    for (var n = 0u; n < 4u * NV; n++) { acc[n] *= a[n / NV]; }
    workgroupBarrier();
    ${accumulate([["acc", "ps", "vs"]])}
  }
  l = laneSum(t, l);
  ${storeRows("o", "acc", "q0", "i", (r) => `(1.0 / l[${r}])`)}
  if (tx == 0u) {
    for (var r = 0u; r < 4u; r++) {
      if (i + r < p.T) { lse[q0 + i + r] = m[r] + log(l[r]); }
    }
  }
}`;
}

/** WGSL of dq: one workgroup per block of BR query rows of a head. */
function dqCode(dtype: string, HS: number, t: FlashTiles): string {
  return `${header(dtype, HS, t, ["q", "k", "v", "g"], ["dq"])}
${DQ_BINDINGS_WGSL}
var<workgroup> qs: array<vec4f, BR * HP>;   // [BR, HP] own queries, times scale
var<workgroup> gs: array<vec4f, BR * HP>;   // [BR, HP] their d out
var<workgroup> ks: array<vec4f, BC * HP>;   // [BC, HP] the tile's keys
var<workgroup> vs: array<vec4f, BC * HP>;   // [BC, HP] and values
var<workgroup> dss: array<vec4f, BC * RG>;  // [BC, RG] dS^T

${QUERY_BLOCK}
  var s: array<vec4f, KN>;           // scores of rows i..i+3 with tile rows tx + TX n
  var dp: array<vec4f, KN>;          // d out of those rows . the tile rows' values
  var acc: array<vec4f, 4u * NV>;    // [4, NV] sum_j ds_j k_j, rows i + r, chunks tx + TX n
  ${loadOwn("qs", "q", "q0", "i0", " * p.scale")}
  ${loadOwn("gs", "g", "q0", "i0")}
  let last = p.T - 1u;
  let L = vec4f(lse[q0 + min(i, last)], lse[q0 + min(i + 1u, last)], lse[q0 + min(i + 2u, last)], lse[q0 + min(i + 3u, last)]);
  let Di = vec4f(D[q0 + min(i, last)], D[q0 + min(i + 1u, last)], D[q0 + min(i + 2u, last)], D[q0 + min(i + 3u, last)]);
  for (var t0 = wlo / BC * BC; t0 <= whi; t0 += BC) {
    ${loadTile([["ks", "k"], ["vs", "v"]], "kv0")}
    workgroupBarrier();
    ${products([["s", "qs", "ks"], ["dp", "gs", "vs"]])}
    for (var n = 0u; n < KN; n++) {
      let j = t0 + tx + TX * n;
      let ok = vec4<bool>(att(i, j), att(i + 1u, j), att(i + 2u, j), att(i + 3u, j));
      dss[(tx + TX * n) * RG + ty] = select(vec4f(0.0), exp(s[n] - L), ok) * (dp[n] - Di);
    }
    workgroupBarrier();
    ${accumulate([["acc", "dss", "ks"]])}
  }
  ${storeRows("dq", "acc", "q0", "i", () => "p.scale")}
}`;
}

/** WGSL of dk and dv: one workgroup per block of BR key rows of a kv head. */
function dkdvCode(dtype: string, HS: number, t: FlashTiles): string {
  return `${header(dtype, HS, t, ["q", "k", "v", "g"], ["dk", "dv"])}
${DKDV_BINDINGS_WGSL}
var<workgroup> ks: array<vec4f, BR * HP>;   // [BR, HP] own keys, times scale
var<workgroup> vs: array<vec4f, BR * HP>;   // [BR, HP] their values
var<workgroup> qs: array<vec4f, BC * HP>;   // [BC, HP] the tile's queries
var<workgroup> gs: array<vec4f, BC * HP>;   // [BC, HP] their d out
var<workgroup> lt: array<f32, BC>;          // their lse
var<workgroup> dt: array<f32, BC>;          // their D
var<workgroup> ps: array<vec4f, BC * RG>;   // [BC, RG] P^T (tile rows by own rows)
var<workgroup> dss: array<vec4f, BC * RG>;  // [BC, RG] dS^T

${MAIN}
  var s: array<vec4f, KN>;           // scores of tile queries tx + TX n with own keys j..j+3
  var dp: array<vec4f, KN>;          // their d out . the own values
  var dka: array<vec4f, 4u * NV>;    // [4, NV] sum_i ds_i q_i, rows j + r, chunks tx + TX n
  var dva: array<vec4f, 4u * NV>;    // [4, NV] sum_i p_i g_i
  let j0 = (w % p.nb) * BR;   // the workgroup owns key rows j0..j0+BR-1 of kv head bkv
  let bkv = w / p.nb;         // b * NKV + kv head
  let nkv = p.NH / p.G;
  let k0 = bkv * p.T;
  let wlo = ilo(j0);          // and needs queries wlo..whi of each query head of the group
  let whi = ihi(min(j0 + BR, p.T) - 1u);
  let j = j0 + 4u * ty;       // this thread's keys j..j+3
  ${loadOwn("ks", "k", "k0", "j0", " * p.scale")}
  ${loadOwn("vs", "v", "k0", "j0")}
  for (var h = 0u; h < p.G; h++) {
    let q0 = ((bkv / nkv) * p.NH + (bkv % nkv) * p.G + h) * p.T;  // the query head's row 0
    for (var t0 = wlo / BC * BC; t0 <= whi; t0 += BC) {
      ${loadTile([["qs", "q"], ["gs", "g"]], "q0")}
      for (var x = t; x < BC; x += NT) {
        lt[x] = lse[q0 + min(t0 + x, p.T - 1u)];
        dt[x] = D[q0 + min(t0 + x, p.T - 1u)];
      }
      workgroupBarrier();
      ${products([["s", "ks", "qs"], ["dp", "vs", "gs"]])}
      for (var n = 0u; n < KN; n++) {
        let x = tx + TX * n;
        let i = t0 + x;
        let ok = vec4<bool>(att(i, j), att(i, j + 1u), att(i, j + 2u), att(i, j + 3u));
        let pr = select(vec4f(0.0), exp(s[n] - lt[x]), ok);
        ps[x * RG + ty] = pr;
        dss[x * RG + ty] = pr * (dp[n] - dt[x]);
      }
      workgroupBarrier();
      ${accumulate([["dva", "ps", "gs"], ["dka", "dss", "qs"]])}
    }
  }
  ${storeRows("dk", "dka", "k0", "j", () => "p.scale")}
  ${storeRows("dv", "dva", "k0", "j", () => "1.0")}
}`;
}

/**
 * Forward into `out` [B, NH, T, HS] and `lse` [B, NH, T] (f32, the logsumexp of each row's scaled
 * scores) from q [B, NH, T, HS], k and v [B, NKV, T, HS] (sizes checked by the caller).
 */
export function flashAttentionForward(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  d: AttentionDims,
  opts: AttentionOptions,
  out: Tensor,
  lse: Tensor,
): void {
  const e = q.engine, dtype: DType = q.dtype, sg = e.hasSubgroups;
  const t = flashTiles(e, "fwd", d);
  e.run({
    label: "attention_flash_fwd",
    key: `attention_flash_fwd ${dtype} ${d.HS} ${t.own}x${t.other}x${t.lanes}${sg ? " sg" : ""}`,
    code: () => forwardCode(dtype, d.HS, t, sg),
    bindings: [q, k, v, out, lse],
    ...blockGrid(d, t.own, d.NH, opts),
  });
}

/**
 * Backward into dq [B, NH, T, HS] and dk, dv [B, NKV, T, HS] (each optional; dk and dv are computed
 * together, when either is given) from the forward's inputs, its lse, D = rowsum(dout * out)
 * [B, NH, T] (f32) and dout [B, NH, T, HS].
 */
export function flashAttentionBackward(
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
  const e = q.engine, dtype: DType = q.dtype;
  if (dq) {
    const t = flashTiles(e, "dq", d);
    e.run({
      label: "attention_flash_dq",
      key: `attention_flash_dq ${dtype} ${d.HS} ${t.own}x${t.other}x${t.lanes}`,
      code: () => dqCode(dtype, d.HS, t),
      bindings: [q, k, v, dout, lse, D, dq],
      ...blockGrid(d, t.own, d.NH, opts),
    });
  }
  if (dk && dv) {
    const t = flashTiles(e, "dkdv", d);
    e.run({
      label: "attention_flash_dkdv",
      key: `attention_flash_dkdv ${dtype} ${d.HS} ${t.own}x${t.other}x${t.lanes}`,
      code: () => dkdvCode(dtype, d.HS, t),
      bindings: [q, k, v, dout, lse, D, dk, dv],
      ...blockGrid(d, t.own, d.NKV, opts),
    });
  }
}
