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

export * from "./llava_json.ts";
export * from "./templates.ts";
export * from "./tokenize.ts";
export * from "./batch.ts";
export * from "./collate.ts";
export * from "./length_groups.ts";
export * from "./image.ts";
export * from "./preprocess.ts";
export * from "./prefetch.ts";
export * from "./image_features.ts";
