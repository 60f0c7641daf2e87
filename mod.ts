/**
 * asvr: train vision-language models with Autoregressive Semantic Visual Reconstruction on your own GPU,
 * through Deno's WebGPU. This entry re-exports the public API; the engine lives in `./core`.
 * @module
 */

export * from "./core/mod.ts";
