/**
 * Training data: LLaVA dataset files (rows checked, bad ones named or skipped), the `plain` and
 * `vicuna_v1` conversation templates with the recipe's label masking, tokenization with image spans,
 * right-padded batches (optionally of rows of similar length), and images (JPEG, PNG, WebP) decoded and
 * preprocessed for an encoder, or streamed through a frozen encoder as feature rows for fitting RQ
 * codebooks.
 *
 * ```ts ignore
 * import { collate, readLlavaRows, tokenizeRow } from "./mod.ts";
 * const { rows } = await readLlavaRows("data/llava_v1_5_mix665k.json", { onError: "skip" });
 * const row = tokenizeRow(rows[0], { template: "vicuna_v1", tokenizer, imageTokens: 729, maxLength: 2048 });
 * ```
 * @module
 */

// dataset files
export {
  DataRowError,
  IMAGE_MARKER,
  type LlavaRow,
  type LlavaRows,
  type LlavaTurn,
  ON_ROW_ERRORS,
  type OnRowError,
  parseLlavaRow,
  parseLlavaRows,
  type ReadLlavaOptions,
  readLlavaRows,
  type SkippedRow,
} from "./llava_json.ts";
export { JsonArraySplitter, JsonLinesSplitter, type RawRow, type RowSplitter } from "./json_rows.ts";
export { RowLedger, SKIP_KINDS, type SkipKind } from "./row_ledger.ts";

// conversation templates, tokenization and batches
export {
  applyTemplate,
  generationPrompt,
  IMAGE_TOKEN_ID,
  TEMPLATE_NAMES,
  type TemplateName,
  templatePrompt,
  type TemplateTokenizer,
  type TemplateTokens,
  tokenizeWithImage,
  VICUNA_V1_SYSTEM,
} from "./templates.ts";
export { type TokenizedRow, type TokenizeOptions, tokenizeRow } from "./tokenize.ts";
export type { AsvrBatch } from "./batch.ts";
export { collate, type CollateOptions } from "./collate.ts";
export { groupByLength, rowLengthEstimate } from "./length_groups.ts";

// images
export {
  decodeImage,
  DEFAULT_MAX_IMAGE_BYTES,
  type ImageFormat,
  readImage,
  type ReadImageOptions,
  type RgbImage,
} from "./image.ts";
export { ImagePathError, type ImagePathOptions, ImageRoot, resolveImagePath } from "./image_path.ts";
export {
  CLIP_NORM,
  type ImageNorm,
  type ImagePreprocessConfig,
  normalizeImage,
  parseImagePreprocessConfig,
  preprocess,
  PREPROCESS_MODES,
  type PreprocessMode,
  type Resample,
  SIGLIP_NORM,
  squareImage,
} from "./preprocess.ts";
export {
  type ImageFailed,
  type ImageJob,
  type ImageLoaded,
  ImagePrefetcher,
  type ImagePrefetcherOptions,
  type ImageResult,
} from "./prefetch.ts";
export {
  type ImageFeatureOptions,
  type ImageFeatureProgress,
  imageFeatures,
  imageFeatureWidth,
  preprocessedImages,
  type PreprocessedImagesOptions,
} from "./image_features.ts";
