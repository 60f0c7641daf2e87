/**
 * The Llama-2 layout of a Hugging Face tokenizer folder: a byte-fallback BPE `tokenizer.json` whose
 * normalizer turns spaces into `▁` (prepending one), whose post-processor adds `<s>`, with the matching
 * decoder; and a Vicuna-style `tokenizer_config.json`. Used by the BPE trainer and by the test fixture that
 * rebuilds Llama-2's own tokenizer from its vocabulary and merges.
 * @module
 */

/** The special tokens, in id order: `<unk>` = 0, `<s>` = 1, `</s>` = 2. */
export const LLAMA_SPECIALS = ["<unk>", "<s>", "</s>"] as const;

/** A tokenizer folder's two files, as parsed JSON. */
export interface TokenizerFolderFiles {
  /** The `tokenizer.json` object. */
  tokenizerJson: Record<string, unknown>;
  /** The `tokenizer_config.json` object. */
  tokenizerConfig: Record<string, unknown>;
}

/** The `tokenizer_config.json` fields that differ between uses. */
export interface LlamaConfigOptions {
  /** The `legacy` flag (how text right after a special token is encoded). */
  legacy: boolean;
  /** `model_max_length`. */
  modelMaxLength: number;
  /** More fields (e.g. Vicuna's `sp_model_kwargs`). */
  extra?: Record<string, unknown>;
}

/** A `tokenizer_config.json` special-token entry in the `AddedToken` form Vicuna v1.5 uses. */
function addedTokenConfig(content: string): Record<string, unknown> {
  return {
    __type: "AddedToken",
    content,
    lstrip: false,
    normalized: false,
    rstrip: false,
    single_word: false,
  };
}

/**
 * The two files for a vocabulary (token -> id, with {@linkcode LLAMA_SPECIALS} at ids 0-2) and BPE merges
 * ("left right", in priority order).
 */
export function llamaTokenizerFiles(
  vocab: Record<string, number>,
  merges: string[],
  opts: LlamaConfigOptions,
): TokenizerFolderFiles {
  const tokenizerJson: Record<string, unknown> = {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: LLAMA_SPECIALS.map((content, id) => ({
      id,
      content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    })),
    normalizer: {
      type: "Sequence",
      normalizers: [
        { type: "Prepend", prepend: "▁" },
        { type: "Replace", pattern: { String: " " }, content: "▁" },
      ],
    },
    pre_tokenizer: null,
    post_processor: {
      type: "TemplateProcessing",
      single: [{ SpecialToken: { id: "<s>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
      pair: [
        { SpecialToken: { id: "<s>", type_id: 0 } },
        { Sequence: { id: "A", type_id: 0 } },
        { SpecialToken: { id: "<s>", type_id: 1 } },
        { Sequence: { id: "B", type_id: 1 } },
      ],
      special_tokens: { "<s>": { id: "<s>", ids: [1], tokens: ["<s>"] } },
    },
    decoder: {
      type: "Sequence",
      decoders: [
        { type: "Replace", pattern: { String: "▁" }, content: " " },
        { type: "ByteFallback" },
        { type: "Fuse" },
        { type: "Strip", content: " ", start: 1, stop: 0 },
      ],
    },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: "<unk>",
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: true,
      byte_fallback: true,
      vocab,
      merges,
    },
  };
  const tokenizerConfig: Record<string, unknown> = {
    add_bos_token: true,
    add_eos_token: false,
    bos_token: addedTokenConfig("<s>"),
    clean_up_tokenization_spaces: false,
    eos_token: addedTokenConfig("</s>"),
    legacy: opts.legacy,
    model_max_length: opts.modelMaxLength,
    pad_token: null,
    padding_side: "right",
    tokenizer_class: "LlamaTokenizer",
    unk_token: addedTokenConfig("<unk>"),
    ...opts.extra,
  };
  return { tokenizerJson, tokenizerConfig };
}
