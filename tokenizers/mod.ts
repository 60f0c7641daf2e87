/**
 * Tokenizers: the text tokenizer that turns prompts and captions into the LLM's token ids (a
 * Hugging Face `tokenizer.json` adapter, and a BPE trainer for small studies), and the visual tokenizers
 * that turn an image's encoder features into discrete codes: residual quantization on the GPU, codebook
 * fitting by residual k-means, the on-disk target cache, and ONNX tokenizers.
 *
 * ```ts ignore
 * import { TextTokenizer } from "@asvr/asvr/tokenizers";
 * const tok = await TextTokenizer.load("models/vicuna-7b-v1.5");
 * const ids = tok.encode("A photo of a cat."); // [1, ...]
 * ```
 * @module
 */

// text
export {
  type DecodeOptions,
  type EncodeOptions,
  TextTokenizer,
  type TextTokenizerConfig,
} from "./text_tokenizer.ts";
export {
  type BpeTokenizerFiles,
  type BpeTrainOptions,
  trainBpeTokenizer,
  writeBpeTokenizer,
} from "./train_bpe.ts";
export type { TokenizerFolderFiles } from "./llama_layout.ts";

// visual
export {
  parseVisualTokenizerConfig,
  type RqTokenizerConfig,
  VISUAL_TOKENIZER_KINDS,
  type VisualTokenizerConfig,
  type VisualTokenizerKind,
} from "./visual_config.ts";
export {
  type Nearest,
  nearestCodes,
  type NearestOptions,
  rqDecode,
  rqEncode,
  type RqEncodeOptions,
} from "./rq.ts";
export { Codebooks, type CodebooksInfo } from "./codebooks.ts";
export { type FitOptions, type FitProgress, fitResidualKMeans } from "./fit_codebooks.ts";
export { imageHash, TargetCache, type TargetCacheOptions } from "./target_cache.ts";
export {
  type OnnxTokenizerConfig,
  OnnxVisualTokenizer,
  parseOnnxTokenizerConfig,
  type VisualCodes,
} from "./onnx_tokenizer.ts";
