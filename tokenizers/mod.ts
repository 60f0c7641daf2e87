/**
 * Tokenizers: the text tokenizer that turns prompts and captions into the LLM's token ids (a
 * Hugging Face `tokenizer.json` adapter). The visual tokenizers will join it here.
 *
 * ```ts ignore
 * import { TextTokenizer } from "@asvr/asvr/tokenizers";
 * const tok = await TextTokenizer.load("models/vicuna-7b-v1.5");
 * const ids = tok.encode("A photo of a cat."); // [1, ...]
 * ```
 * @module
 */

export {
  type DecodeOptions,
  type EncodeOptions,
  parseTokenizerConfig,
  TextTokenizer,
  type TextTokenizerConfig,
} from "./text_tokenizer.ts";
export {
  codesToInt32,
  type OnnxTokenizerConfig,
  OnnxVisualTokenizer,
  parseOnnxTokenizerConfig,
  type VisualCodes,
} from "./onnx_tokenizer.ts";
export {
  type CodebookShape,
  codebookShape,
  type Nearest,
  nearestCodes,
  type NearestOptions,
  rqDecode,
  rqEncode,
  type RqEncodeOptions,
  subtractCodes,
} from "./rq.ts";
export { type RqCpuResult, rqDecodeCpu, rqEncodeCpu, type RqShape } from "./rq_cpu.ts";
export { Codebooks, CODEBOOKS_FORMAT, CODEBOOKS_TENSOR, type CodebooksInfo } from "./codebooks.ts";
export { defaultSampleLimit, type FitOptions, type FitProgress, fitResidualKMeans } from "./fit_codebooks.ts";
export {
  imageHash,
  MAX_U16_CODES,
  TARGET_CACHE_FORMAT,
  TargetCache,
  type TargetCacheOptions,
} from "./target_cache.ts";
export {
  parseVisualTokenizerConfig,
  type RqTokenizerConfig,
  VISUAL_TOKENIZER_KINDS,
  type VisualTokenizerConfig,
  type VisualTokenizerKind,
} from "./visual_config.ts";
export {
  type BpeTokenizerFiles,
  type BpeTrainOptions,
  trainBpeTokenizer,
  writeBpeTokenizer,
} from "./train_bpe.ts";
export {
  LLAMA_SPECIALS,
  type LlamaConfigOptions,
  llamaTokenizerFiles,
  type TokenizerFolderFiles,
} from "./llama_layout.ts";
