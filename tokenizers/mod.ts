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
