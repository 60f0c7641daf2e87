/**
 * Builds the Llama-2 / Vicuna v1.5 text tokenizer as a Hugging Face model folder (`tokenizer.json` +
 * `tokenizer_config.json`) from the vocabulary and merges that the npm package `llama-tokenizer-js`
 * ships base64-encoded in its source (exported from the same `tokenizer.json` by its
 * `data-conversion.py`: vocabulary row = token id, merges in priority order).
 *
 * The output follows the layout of `meta-llama/Llama-2-7b-hf`'s `tokenizer.json`: a BPE model with
 * `byte_fallback`, the `▁` conventions done by a normalizer (prepend `▁`, replace `" "` with `▁`) and
 * no pre-tokenizer, added tokens `<unk>`=0, `<s>`=1, `</s>`=2, a `TemplateProcessing` post-processor
 * that adds `<s>`, and the matching decoder (`▁` -> `" "`, byte fallback, fuse, strip one leading
 * space). The `tokenizer_config.json` is Vicuna v1.5's: special tokens written as `AddedToken`
 * objects, `add_bos_token: true`, `pad_token: null`, `model_max_length: 4096`.
 *
 * Tests call {@linkcode writeLlama2Tokenizer} into a temporary folder (the output is ~1.8 MB, so it
 * is not committed). Run directly to write a folder:
 *
 * ```sh
 * deno run -A tests/make_llama2_tokenizer.ts /tmp/llama2_tokenizer
 * ```
 * @module
 */

import llamaTokenizer from "llama-tokenizer-js";
import {
  LLAMA_SPECIALS,
  llamaTokenizerFiles,
  type TokenizerFolderFiles,
} from "../tokenizers/llama_layout.ts";

export type { TokenizerFolderFiles };

/** The number of tokens in the Llama-2 vocabulary. */
const LLAMA2_VOCAB_SIZE = 32000;

/**
 * Builds the Llama-2 `tokenizer.json` and Vicuna v1.5 `tokenizer_config.json` objects from
 * `llama-tokenizer-js`'s data. Throws if that data does not look like the Llama-2 vocabulary.
 */
export function buildLlama2Tokenizer(): TokenizerFolderFiles {
  const tokens: string[] = llamaTokenizer.vocabById;
  if (tokens.length !== LLAMA2_VOCAB_SIZE) {
    throw new Error(
      `make_llama2_tokenizer: llama-tokenizer-js has ${tokens.length} tokens, expected ${LLAMA2_VOCAB_SIZE}; ` +
        `pin llama-tokenizer-js to 1.2.2 in deno.json`,
    );
  }
  LLAMA_SPECIALS.forEach((s, id) => {
    if (tokens[id] !== s) {
      throw new Error(`make_llama2_tokenizer: token ${id} is ${JSON.stringify(tokens[id])}, expected ${s}`);
    }
  });
  // No prototype, so tokens such as "toString" or "__proto__" are plain keys.
  const vocab: Record<string, number> = Object.create(null);
  tokens.forEach((t, id) => {
    if (Object.hasOwn(vocab, t)) {
      throw new Error(`make_llama2_tokenizer: token ${JSON.stringify(t)} appears twice`);
    }
    vocab[t] = id;
  });
  // The Map's insertion order is the merge priority order (its values increase with it).
  const merges = [...llamaTokenizer.merges.keys()];

  return llamaTokenizerFiles(vocab, merges, {
    legacy: false,
    modelMaxLength: 4096,
    extra: { sp_model_kwargs: {} },
  });
}

/**
 * Writes the Llama-2 / Vicuna v1.5 tokenizer folder (`tokenizer.json`, `tokenizer_config.json`) into
 * `dir` (created if missing) and returns `dir`.
 */
export async function writeLlama2Tokenizer(dir: string): Promise<string> {
  const { tokenizerJson, tokenizerConfig } = buildLlama2Tokenizer();
  await Deno.mkdir(dir, { recursive: true });
  await Deno.writeTextFile(`${dir}/tokenizer.json`, JSON.stringify(tokenizerJson));
  await Deno.writeTextFile(`${dir}/tokenizer_config.json`, JSON.stringify(tokenizerConfig, null, 2) + "\n");
  return dir;
}

if (import.meta.main) {
  const dir = Deno.args[0];
  if (!dir) {
    console.error("usage: deno run -A tests/make_llama2_tokenizer.ts <output folder>");
    Deno.exit(2);
  }
  await writeLlama2Tokenizer(dir);
  console.log(`wrote ${dir}/tokenizer.json and ${dir}/tokenizer_config.json`);
}
