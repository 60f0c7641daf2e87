/**
 * asvr: train vision-language models with Autoregressive Semantic Visual Reconstruction on your own GPU,
 * through Deno's WebGPU. This entry re-exports the public API of every part:
 *
 * - `./core`: the engine (device, tensors, autograd) and its differentiable WGSL ops;
 * - `./io`: safetensors reading and atomic writing, parameter loading, Hugging Face folders;
 * - `./backbones`: LLM decoders (LLaMA/Vicuna, Mistral, Qwen2) loading HF checkpoints;
 * - `./encoders`: vision encoders (SigLIP, CLIP ViT) loading HF checkpoints;
 * - `./projectors`: the vision-to-LLM projectors (linear, mlp2x_gelu, identity);
 * - `./tokenizers`: the text tokenizer (a model folder's tokenizer.json) and the visual tokenizers
 *   (residual quantization on the GPU, codebook fitting, target cache, ONNX tokenizers);
 * - `./heads`: visual heads (none, linear, the ASVR depth transformer, dual) and the custom-head registry;
 * - `./losses`: text and chunked visual cross-entropy, target alignment and masks, loss composition;
 * - `./models`: the ASVR config (`defineConfig`, one `kind` union per slot) and the model composing the slots;
 * - `./data`: LLaVA datasets, conversation templates, tokenization, batches, image decoding and preprocessing,
 *   image feature streams for codebook fitting;
 * - `./trainers`: run configs (`defineRun`), the two-stage trainer, checkpoints, metrics, plans, evaluation;
 * - `./eval`: question files, answer scoring (exact match, multiple choice, POPE) and reports.
 *
 * ```ts ignore
 * import { Decoder, Engine, TextTokenizer } from "@asvr/asvr";
 * const e = await Engine.create();
 * const llm = await Decoder.load(e, "/models/vicuna-7b-v1.5", { dtype: "f16" });
 * const tok = await TextTokenizer.load("/models/vicuna-7b-v1.5");
 * const ids = tok.encode("Hello world"); // [1, 15043, 3186]
 * ```
 * @module
 */

export * from "./core/mod.ts";
export * from "./io/mod.ts";
export * from "./backbones/mod.ts";
export * from "./encoders/mod.ts";
export * from "./projectors/mod.ts";
export * from "./tokenizers/mod.ts";
export * from "./losses/mod.ts";
export * from "./heads/mod.ts";
export * from "./models/mod.ts";
export * from "./data/mod.ts";
export * from "./trainers/mod.ts";
export * from "./eval/mod.ts";
