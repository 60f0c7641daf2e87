/**
 * What the kernels that own blocks of rows share (the fused kernels of attention.ts and the flash
 * kernels of attention_flash.ts): their uniform block `struct P` and its values, the masking rule from
 * both sides, their bindings, and the WGSL that loads and stores a row of a [rows, HS] buffer 4
 * elements at a time.
 * @module
 */

import { grid1d } from "../../engine.ts";
import type { AttentionOptions } from "./attention.ts";
import type { AttentionDims } from "./attention_cpu.ts";
import { maskParams, maskWgsl } from "./attention_mask.ts";

/**
 * The uniform values ({@linkcode BLOCK_PARAMS_WGSL}'s `struct P`) and the grid of a kernel whose
 * workgroups each own a block of `rows` rows along T of one of `nheads` heads per batch element.
 */
export function blockGrid(
  d: AttentionDims,
  rows: number,
  nheads: number,
  opts: AttentionOptions,
): { params: number[]; workgroups: [number, number] } {
  const nb = Math.ceil(d.T / rows), ngroups = nb * d.B * nheads;
  return {
    params: [d.T, d.NH, d.NH / d.NKV, nb, ngroups, ...maskParams(d, opts)],
    workgroups: grid1d(ngroups, 1),
  };
}

/**
 * WGSL: `struct P` (see {@linkcode blockGrid}) and the masking rule, as the keys a query attends to
 * (jlo, jhi) and as the queries that attend to a key (ilo, ihi). Declare `p` (a `var<uniform>` of
 * type P) after it.
 */
export const BLOCK_PARAMS_WGSL = `struct P {
  T: u32,
  NH: u32,
  G: u32,        // query heads per kv head (NH / NKV)
  nb: u32,       // blocks of rows along T
  ngroups: u32,  // workgroups in all
  causal: u32,
  window: u32,   // 0: none
  scale: f32,
}
// Query i attends to key j iff jlo(i) <= j <= jhi(i), or equivalently ilo(j) <= i <= ihi(j).
${maskWgsl("p.T")}
fn ilo(j: u32) -> u32 { if (p.causal != 0u) { return j; } return 0u; }
fn ihi(j: u32) -> u32 { if (p.window > 0u) { return min(p.T - 1u, j + p.window - 1u); } return p.T - 1u; }`;

/**
 * WGSL: `ld_<buf>(row, c)`, chunk c of row `row` (elements 4c..4c+3 as f32, zero past HS) of each
 * buffer in `load`, and `st_<buf>(row, c, x)` for each buffer in `store` (elements past HS are not
 * written); and `R`, the element type the kernel declares those [rows, HS] buffers with
 * (`array<R>`): `vec4<E>` when HS is a multiple of 4 (one load or store per chunk), else `E`. The kernel
 * declares `E` (the storage type), `HS` and `HV` (chunks per row).
 */
export function rowIoWgsl(HS: number, load: string[], store: string[]): string {
  if (HS % 4 === 0) {
    return [
      "alias R = vec4<E>;",
      ...load.map((buf) => `fn ld_${buf}(row: u32, c: u32) -> vec4f { return vec4f(${buf}[row * HV + c]); }`),
      ...store.map((buf) => `fn st_${buf}(row: u32, c: u32, x: vec4f) { ${buf}[row * HV + c] = R(x); }`),
    ].join("\n");
  }
  const ld = (buf: string) =>
    `fn ld_${buf}(row: u32, c: u32) -> vec4f {
  var x = vec4f(0.0);
  for (var e = 0u; e < 4u && 4u * c + e < HS; e++) { x[e] = f32(${buf}[row * HS + 4u * c + e]); }
  return x;
}`;
  const st = (buf: string) =>
    `fn st_${buf}(row: u32, c: u32, x: vec4f) {
  for (var e = 0u; e < 4u && 4u * c + e < HS; e++) { ${buf}[row * HS + 4u * c + e] = E(x[e]); }
}`;
  return ["alias R = E;", ...load.map(ld), ...store.map(st)].join("\n");
}

/** WGSL: bindings 0-2, the inputs every kernel reads (element type `R` of {@linkcode rowIoWgsl}). */
const QKV_BINDINGS = `@group(0) @binding(0) var<storage, read> q: array<R>;           // [B, NH, T, HS]
@group(0) @binding(1) var<storage, read> k: array<R>;           // [B, NKV, T, HS]
@group(0) @binding(2) var<storage, read> v: array<R>;           // [B, NKV, T, HS]`;

/** WGSL: the forward kernels' bindings (q, k, v, o, lse, then `p`), as their calls bind them. */
export const FORWARD_BINDINGS_WGSL = `${QKV_BINDINGS}
@group(0) @binding(3) var<storage, read_write> o: array<R>;     // [B, NH, T, HS]
@group(0) @binding(4) var<storage, read_write> lse: array<f32>; // [B, NH, T]
@group(0) @binding(5) var<uniform> p: P;`;

/** WGSL: bindings 0-5, what both backward kernels read. */
const BACKWARD_INPUTS = `${QKV_BINDINGS}
@group(0) @binding(3) var<storage, read> g: array<R>;           // [B, NH, T, HS] d out
@group(0) @binding(4) var<storage, read> lse: array<f32>;       // [B, NH, T]
@group(0) @binding(5) var<storage, read> D: array<f32>;         // [B, NH, T] rowsum(g * out)`;

/** WGSL: the dq kernels' bindings (q, k, v, g, lse, D, dq, then `p`). */
export const DQ_BINDINGS_WGSL = `${BACKWARD_INPUTS}
@group(0) @binding(6) var<storage, read_write> dq: array<R>;    // [B, NH, T, HS]
@group(0) @binding(7) var<uniform> p: P;`;

/** WGSL: the dk/dv kernels' bindings (q, k, v, g, lse, D, dk, dv, then `p`). */
export const DKDV_BINDINGS_WGSL = `${BACKWARD_INPUTS}
@group(0) @binding(6) var<storage, read_write> dk: array<R>;    // [B, NKV, T, HS]
@group(0) @binding(7) var<storage, read_write> dv: array<R>;    // [B, NKV, T, HS]
@group(0) @binding(8) var<uniform> p: P;`;
