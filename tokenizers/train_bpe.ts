/**
 * Trains a small byte-fallback BPE text tokenizer on a corpus of lines and writes it as a Hugging Face
 * model folder (`tokenizer.json` + `tokenizer_config.json`) that `TextTokenizer.load` reads
 * like any Llama-2 / Vicuna folder.
 *
 * The layout is Llama-2's (`tokenizer.json` of `meta-llama/Llama-2-7b-hf`): added tokens `<unk>` = 0,
 * `<s>` = 1, `</s>` = 2, the 256 byte tokens `<0x00>`..`<0xFF>` = 3..258 (so any text encodes: a
 * character outside the vocabulary becomes its UTF-8 bytes), a normalizer that prepends `▁` and turns
 * every `" "` into `▁` (the "legacy" layout: text right after a special token gets its own `▁`), no
 * pre-tokenizer, a BPE model, a `TemplateProcessing` post-processor that puts `<s>` first, and the
 * matching decoder (`▁` -> `" "`, byte fallback, fuse, strip one leading space). The
 * `tokenizer_config.json` is shaped like Vicuna v1.5's (`add_bos_token: true`, `pad_token: null`, so
 * batches pad with `<unk>`).
 *
 * The trainer is plain BPE. Each line is split at the special tokens' texts (as encoding splits it),
 * each piece is normalized as above and cut into words before every `▁`; the words are counted. The
 * vocabulary starts with the special and byte tokens and every character of the normalized corpus
 * (sorted by code point), then the most frequent adjacent pair of tokens (counted over words, weighted
 * by word frequency) is merged, again and again, until the vocabulary has `vocabSize` tokens or no pair
 * occurs twice. Ties go to the pair whose left token, then right token, sorts first (by UTF-16 code
 * units), so the result depends on the corpus only, not on the order of its lines. A merge whose
 * result would spell a special or byte token is never made. Merges never cross a `▁`, so encoding the
 * whole normalized text (the model has no pre-tokenizer) splits words exactly as training did.
 *
 * ```ts ignore
 * import { TextTokenizer, writeBpeTokenizer } from "@asvr/asvr/tokenizers";
 * const lines = ["a red circle above a blue square", "USER: What is red? ASSISTANT: The circle."];
 * await writeBpeTokenizer("runs/tiny/tokenizer", lines, { vocabSize: 512 });
 * const tok = await TextTokenizer.load("runs/tiny/tokenizer");
 * tok.encode("a red circle"); // [1, ...]
 * ```
 * @module
 */

import { join } from "node:path";
import { z } from "zod";
import { writeTextAtomic } from "../io/safetensors.ts";
import { parseSchema } from "../schema/parse.ts";
import { LLAMA_SPECIALS, llamaTokenizerFiles, type TokenizerFolderFiles } from "./llama_layout.ts";

/** Options of {@linkcode trainBpeTokenizer} and {@linkcode writeBpeTokenizer}. */
export interface BpeTrainOptions {
  /**
   * The number of tokens in the vocabulary, special (3) and byte (256) tokens included; training stops
   * earlier when no pair of tokens occurs twice. It must hold at least those 259 tokens plus one per
   * distinct character of the corpus. Default 512.
   */
  vocabSize?: number;
  /** `model_max_length` of `tokenizer_config.json`: the longest sequence the model takes. Default 2048. */
  modelMaxLength?: number;
}

/** A trained tokenizer as the parsed JSON of its two files (give `tokenizerJson` to `TextTokenizer.fromJson`). */
export type BpeTokenizerFiles = TokenizerFolderFiles;

/** The special tokens, in id order: `<unk>` = 0, `<s>` = 1, `</s>` = 2. */
const SPECIALS = LLAMA_SPECIALS;

/** The byte-fallback token of byte `b`: `<0x0A>` for 10. */
function byteToken(b: number): string {
  return `<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`;
}

/** The word-start marker that stands for a space. */
const SPACE = "▁";

/** Pair keys are `left * KEY_BASE + right`, so token ids stay below it. */
const KEY_BASE = 2 ** 21;

// `BpeTrainOptions` is written out because a published type must be (JSR's no-slow-types: not inferred from a
// schema); the schema is typed by it, so the compiler holds the two together. The rules and defaults live
// here.
const optionsSchema: z.ZodType<Required<BpeTrainOptions>, BpeTrainOptions> = z.strictObject({
  vocabSize: z.number().int().min(SPECIALS.length + 256 + 1).max(KEY_BASE).default(512),
  modelMaxLength: z.number().int().positive().default(2048),
});

/** The corpus lines, checked: an array of well-formed strings. */
function parseLines(lines: unknown): string[] {
  const checked = parseSchema(z.array(z.string()), lines, "trainBpeTokenizer: lines");
  checked.forEach((line, i) => {
    if (!line.isWellFormed()) {
      throw new Error(
        `trainBpeTokenizer: lines[${i}] holds a lone UTF-16 surrogate; fix the text (e.g. line.toWellFormed())`,
      );
    }
  });
  return checked;
}

/** Word counts of the corpus: each line split at special tokens, normalized, cut before every `▁`. */
function countWords(lines: readonly string[]): Map<string, number> {
  const counts = new Map<string, number>();
  const specials = new RegExp(SPECIALS.map((s) => s.replace(/[<>/]/g, "\\$&")).join("|"));
  for (const line of lines) {
    for (const piece of line.split(specials)) {
      if (piece === "") continue;
      const normalized = SPACE + piece.replaceAll(" ", SPACE);
      let start = 0;
      for (let i = 1; i <= normalized.length; i++) {
        if (i === normalized.length || normalized[i] === SPACE) {
          const word = normalized.slice(start, i);
          counts.set(word, (counts.get(word) ?? 0) + 1);
          start = i;
        }
      }
    }
  }
  return counts;
}

/** The vocabulary (token strings by id) and merges ("left right", in priority order) of a corpus. */
function trainMerges(
  wordCounts: Map<string, number>,
  vocabSize: number,
): { tokens: string[]; merges: string[] } {
  const tokens: string[] = [...SPECIALS];
  for (let b = 0; b < 256; b++) tokens.push(byteToken(b));
  const reserved = new Set(tokens);

  const chars = new Set<string>();
  for (const word of wordCounts.keys()) for (const c of word) chars.add(c);
  const sortedChars = [...chars].sort((a, b) => a.codePointAt(0)! - b.codePointAt(0)!);
  const needed = tokens.length + sortedChars.length;
  if (needed > vocabSize) {
    throw new Error(
      `trainBpeTokenizer: options.vocabSize: ${vocabSize} is below the ${needed} tokens the corpus needs ` +
        `(${SPECIALS.length} special + 256 byte + ${sortedChars.length} character tokens); raise vocabSize`,
    );
  }
  const idOf = new Map<string, number>();
  tokens.forEach((t, id) => idOf.set(t, id));
  for (const c of sortedChars) {
    idOf.set(c, tokens.length);
    tokens.push(c);
  }

  // Words as token-id arrays, with their counts; the pair counts and which words hold each pair.
  const words: number[][] = [];
  const freq: number[] = [];
  for (const [word, n] of wordCounts) {
    words.push(Array.from(word, (c) => idOf.get(c)!));
    freq.push(n);
  }
  const pairCount = new Map<number, number>();
  const pairWords = new Map<number, Set<number>>();
  const addPairs = (w: number, sign: 1 | -1): void => {
    const ids = words[w];
    for (let i = 0; i + 1 < ids.length; i++) {
      const key = ids[i] * KEY_BASE + ids[i + 1];
      const n = (pairCount.get(key) ?? 0) + sign * freq[w];
      if (n === 0) pairCount.delete(key);
      else pairCount.set(key, n);
      if (sign === 1) {
        let set = pairWords.get(key);
        if (!set) pairWords.set(key, set = new Set());
        set.add(w);
      }
    }
  };
  for (let w = 0; w < words.length; w++) addPairs(w, 1);

  /** Whether pair `x` wins a tie against pair `y`: its left token, then right token, sorts first. */
  const sortsBefore = (x: number, y: number): boolean => {
    const xl = tokens[Math.floor(x / KEY_BASE)], yl = tokens[Math.floor(y / KEY_BASE)];
    return xl < yl || (xl === yl && tokens[x % KEY_BASE] < tokens[y % KEY_BASE]);
  };
  const merges: string[] = [];
  const forbidden = new Set<number>(); // pairs that would spell a special or byte token
  while (tokens.length < vocabSize) {
    let best = -1;
    let bestCount = 0;
    for (const [key, n] of pairCount) {
      if (n < 2 || forbidden.has(key)) continue;
      if (best >= 0 && (n < bestCount || (n === bestCount && !sortsBefore(key, best)))) continue;
      best = key;
      bestCount = n;
    }
    if (best < 0) break;
    const a = Math.floor(best / KEY_BASE), b = best % KEY_BASE;
    const merged = tokens[a] + tokens[b];
    if (reserved.has(merged)) {
      forbidden.add(best);
      continue;
    }
    let id = idOf.get(merged);
    if (id === undefined) {
      id = tokens.length;
      idOf.set(merged, id);
      tokens.push(merged);
    }
    merges.push(`${tokens[a]} ${tokens[b]}`);
    for (const w of pairWords.get(best)!) {
      addPairs(w, -1);
      const ids = words[w], out: number[] = [];
      for (let i = 0; i < ids.length; i++) {
        if (i + 1 < ids.length && ids[i] === a && ids[i + 1] === b) {
          out.push(id);
          i++;
        } else {
          out.push(ids[i]);
        }
      }
      words[w] = out;
      addPairs(w, 1);
    }
    pairWords.delete(best);
  }
  return { tokens, merges };
}

/**
 * Trains a byte-fallback BPE tokenizer (Llama-2 layout) on `lines` and returns its `tokenizer.json`
 * and `tokenizer_config.json` objects. Deterministic: the same lines, in any order, give the same
 * files. Throws, naming the option or line, on a bad option, a line that is not a string, a corpus
 * with no text, or a `vocabSize` below what the corpus's characters need.
 */
export function trainBpeTokenizer(lines: readonly string[], opts: BpeTrainOptions = {}): BpeTokenizerFiles {
  const { vocabSize, modelMaxLength } = parseSchema(optionsSchema, opts, "trainBpeTokenizer: options");
  const wordCounts = countWords(parseLines(lines));
  if (wordCounts.size === 0) {
    throw new Error(
      `trainBpeTokenizer: the corpus has no text (${lines.length} lines, all empty or special tokens); ` +
        `pass the lines to train on`,
    );
  }
  const { tokens, merges } = trainMerges(wordCounts, vocabSize);
  // No prototype, so tokens such as "__proto__" are plain keys.
  const vocab: Record<string, number> = Object.create(null);
  tokens.forEach((t, id) => vocab[t] = id);

  // The Prepend("▁") normalizer gives text after a special token its own "▁": legacy behaviour.
  return llamaTokenizerFiles(vocab, merges, { legacy: true, modelMaxLength });
}

/**
 * Trains a tokenizer on `lines` (see {@linkcode trainBpeTokenizer}) and writes it into `dir` (created
 * if missing) as `tokenizer.json` and `tokenizer_config.json`, each written atomically; returns `dir`.
 */
export async function writeBpeTokenizer(
  dir: string,
  lines: readonly string[],
  opts: BpeTrainOptions = {},
): Promise<string> {
  const { tokenizerJson, tokenizerConfig } = trainBpeTokenizer(lines, opts);
  try {
    await Deno.mkdir(dir, { recursive: true });
  } catch (e) {
    throw new Error(`writeBpeTokenizer: cannot create the folder ${dir}: ${(e as Error).message}`);
  }
  await writeTextAtomic(join(dir, "tokenizer.json"), JSON.stringify(tokenizerJson, null, 2) + "\n");
  await writeTextAtomic(join(dir, "tokenizer_config.json"), JSON.stringify(tokenizerConfig, null, 2) + "\n");
  return dir;
}
