/**
 * The masking rule on the GPU, shared by both attention implementations (the CPU's is `attends` in
 * attention_cpu.ts): query i attends to key j iff jlo(i) <= j <= jhi(i).
 * @module
 */

import { f32Bits } from "../../dtype.ts";
import type { AttentionOptions } from "./attention.ts";
import type { AttentionDims } from "./attention_cpu.ts";

/**
 * The masking entries of a kernel's parameter block, in this order: `causal` (1 or 0), `window` (0: no
 * window, also for a window of T or more, which masks nothing), `scale` (f32 bits; default 1 / sqrt(HS)).
 */
export function maskParams(d: AttentionDims, opts: AttentionOptions): number[] {
  const window = opts.window ?? 0;
  return [
    (opts.causal ?? true) ? 1 : 0,
    window >= d.T ? 0 : window,
    f32Bits(opts.scale ?? 1 / Math.sqrt(d.HS)),
  ];
}

/**
 * WGSL of jlo(i) and jhi(i), the first and last key query i attends to; reads `p.causal`, `p.window`
 * (see {@linkcode maskParams}) and the sequence length from the WGSL expression `T`.
 */
export function maskWgsl(T: string): string {
  return `fn jlo(i: u32) -> u32 { if (p.window > 0u && i >= p.window) { return i + 1u - p.window; } return 0u; }
fn jhi(i: u32) -> u32 { if (p.causal != 0u) { return i; } return ${T} - 1u; }`;
}
