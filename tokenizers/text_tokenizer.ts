/**
 * The text tokenizer: loads a Hugging Face `tokenizer.json` (and, when present beside it,
 * `tokenizer_config.json`) from a model folder, and encodes text to token ids and back.
 *
 * The tokenization itself is done by the npm package `@huggingface/tokenizers` (Tokenizers.js): pure
 * JavaScript with no dependencies, so it runs under Deno as is, and it reads `tokenizer.json`
 * directly with the pieces the framework's LLMs need (byte-fallback BPE with `▁` normalizers for
 * Llama-2 / Vicuna / Mistral, Metaspace, byte-level BPE for Qwen2 / Llama-3, added special tokens).
 * The tests check it id for id against the reference encoders `llama-tokenizer-js` and
 * `mistral-tokenizer-js` on real vocabularies. This module adds what the framework needs on top:
 * loading from a folder with clear errors, the special-token ids from `tokenizer_config.json`, and
 * explicit control over `<s>` / `</s>`.
 *
 * ```ts ignore
 * import { TextTokenizer } from "@asvr/asvr/tokenizers";
 * const tok = await TextTokenizer.load("models/vicuna-7b-v1.5");
 * tok.encode("Hello world"); // [1, 15043, 3186]
 * tok.decode([1, 15043, 3186], { skipSpecial: true }); // "Hello world"
 * ```
 * @module
 */

import { dirname, join } from "node:path";
import { Tokenizer } from "@huggingface/tokenizers";

/** Options of {@linkcode TextTokenizer.encode}. */
export interface EncodeOptions {
  /**
   * Put the BOS token (`<s>`) first. Default: the tokenizer's own behaviour, i.e. `add_bos_token` of
   * `tokenizer_config.json` when it is set, else whether `tokenizer.json`'s post-processor adds BOS.
   */
  addBos?: boolean;
  /** Put the EOS token (`</s>`) last. Default: like `addBos`, from `add_eos_token` or the post-processor. */
  addEos?: boolean;
}

/** Options of {@linkcode TextTokenizer.decode}. */
export interface DecodeOptions {
  /** Leave out special tokens (`<s>`, `</s>`, `<unk>`, ...). Default false. */
  skipSpecial?: boolean;
}

/**
 * The fields of a model folder's `tokenizer_config.json` that the text tokenizer uses. A token field
 * is `undefined` when the file does not name it (then a default applies) and `null` when the file
 * sets it to `null` (no such token).
 */
export interface TextTokenizerConfig {
  /** `bos_token`: the beginning-of-sequence token. Default `<s>` if the vocabulary has it. */
  bosToken?: string | null;
  /** `eos_token`: the end-of-sequence token. Default `</s>` if the vocabulary has it. */
  eosToken?: string | null;
  /** `unk_token`: the unknown token. Default `tokenizer.json`'s `model.unk_token`, else `<unk>`. */
  unkToken?: string | null;
  /** `pad_token`: the padding token. Default none (then {@linkcode TextTokenizer.padId} is the unk id). */
  padToken?: string | null;
  /** `add_bos_token`: whether encoding puts BOS first by default. */
  addBosToken?: boolean;
  /** `add_eos_token`: whether encoding puts EOS last by default. */
  addEosToken?: boolean;
  /** `clean_up_tokenization_spaces`: remove spaces before punctuation when decoding. Default false. */
  cleanUpTokenizationSpaces?: boolean;
  /** `additional_special_tokens`: more tokens that `skipSpecial` leaves out. */
  additionalSpecialTokens: string[];
}

/** A special-token role that `tokenizer_config.json` can name. */
type SpecialRole = "bos" | "eos" | "unk" | "pad";

/** The `tokenizer_config.json` field of each role. */
const ROLE_FIELD: Record<SpecialRole, string> = {
  bos: "bos_token",
  eos: "eos_token",
  unk: "unk_token",
  pad: "pad_token",
};

/** What this module expects a missing or broken file to be. */
const EXPECTED = "tokenizer.json from the model's Hugging Face folder";

/** A JSON type name for error messages. */
function jsonType(v: unknown): string {
  return v === null ? "null" : Array.isArray(v) ? "an array" : typeof v;
}

/** `v` as a plain object, or undefined. */
function asObject(v: unknown): Record<string, unknown> | undefined {
  return v !== null && typeof v === "object" && !Array.isArray(v) ? v as Record<string, unknown> : undefined;
}

/** A token field: a string, null, or an `AddedToken` object `{ "content": string, ... }`. */
function parseTokenField(v: unknown, field: string, file: string): string | null | undefined {
  if (v === undefined || v === null || typeof v === "string") return v;
  const content = asObject(v)?.content;
  if (typeof content === "string") return content;
  throw new Error(
    `${file}: field "${field}" must be a token string, null or {"content": string}, got ${jsonType(v)}; ` +
      `fix the field, or delete it to use the default`,
  );
}

/** A boolean field that may be absent. */
function parseBoolField(v: unknown, field: string, file: string): boolean | undefined {
  if (v === undefined || v === null || typeof v === "boolean") return v ?? undefined;
  throw new Error(`${file}: field "${field}" must be true or false, got ${jsonType(v)}; fix or delete it`);
}

/**
 * Reads the fields the text tokenizer uses from a parsed `tokenizer_config.json`; other fields are
 * ignored. Errors name `file`, the field and the fix.
 */
export function parseTokenizerConfig(json: unknown, file = "tokenizer_config.json"): TextTokenizerConfig {
  const o = asObject(json);
  if (!o) {
    throw new Error(`${file}: must be a JSON object, got ${jsonType(json)}; expected tokenizer_config.json`);
  }
  const extra = o.additional_special_tokens ?? [];
  if (!Array.isArray(extra)) {
    throw new Error(
      `${file}: field "additional_special_tokens" must be an array, got ${jsonType(extra)}; fix or delete it`,
    );
  }
  const additionalSpecialTokens = extra.map((t, i) => {
    const s = parseTokenField(t, `additional_special_tokens[${i}]`, file);
    if (typeof s !== "string") {
      throw new Error(
        `${file}: field "additional_special_tokens[${i}]" must be a token, got null; remove it`,
      );
    }
    return s;
  });
  return {
    bosToken: parseTokenField(o.bos_token, "bos_token", file),
    eosToken: parseTokenField(o.eos_token, "eos_token", file),
    unkToken: parseTokenField(o.unk_token, "unk_token", file),
    padToken: parseTokenField(o.pad_token, "pad_token", file),
    addBosToken: parseBoolField(o.add_bos_token, "add_bos_token", file),
    addEosToken: parseBoolField(o.add_eos_token, "add_eos_token", file),
    cleanUpTokenizationSpaces: parseBoolField(
      o.clean_up_tokenization_spaces,
      "clean_up_tokenization_spaces",
      file,
    ),
    additionalSpecialTokens,
  };
}

/** Reads and parses a JSON file; `undefined` when it does not exist and `optional` is set. */
async function readJson(file: string, optional: boolean): Promise<unknown> {
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound && optional) return undefined;
    if (e instanceof Deno.errors.NotFound) {
      throw new Error(
        `TextTokenizer.load: ${file} not found; expected ${EXPECTED} (pass the folder or the file)`,
      );
    }
    throw new Error(`TextTokenizer.load: cannot read ${file}: ${(e as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(
      `TextTokenizer.load: ${file} is not valid JSON (${(e as Error).message}); ` +
        `re-download it from the model's Hugging Face folder`,
    );
  }
}

/** True when `path` is a directory; an error naming the path when it does not exist. */
async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isDirectory;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new Error(
        `TextTokenizer.load: ${path} does not exist; expected ${EXPECTED}, or the folder that holds it`,
      );
    }
    throw e;
  }
}

/**
 * A text tokenizer loaded from a Hugging Face `tokenizer.json`: encode text to token ids and decode
 * ids to text, with the special-token ids the LLM and the data pipeline need.
 */
export class TextTokenizer {
  /** The number of token ids (largest id + 1); the model's embedding may have more rows. */
  readonly vocabSize: number;
  /** The beginning-of-sequence token id (`<s>`), if the tokenizer has one. */
  readonly bosId: number | undefined;
  /** The end-of-sequence token id (`</s>`), if the tokenizer has one. */
  readonly eosId: number | undefined;
  /** The unknown token id (`<unk>`), if the tokenizer has one. */
  readonly unkId: number | undefined;
  /**
   * The padding token id: `pad_token` of `tokenizer_config.json`, else the unk id (LLaVA pads Vicuna
   * and Llama-2 batches with `<unk>`).
   */
  readonly padId: number | undefined;
  /** Whether {@linkcode TextTokenizer.encode} puts BOS first when `addBos` is not given. */
  readonly defaultAddBos: boolean;
  /** Whether {@linkcode TextTokenizer.encode} puts EOS last when `addEos` is not given. */
  readonly defaultAddEos: boolean;

  readonly #hf: Tokenizer;
  readonly #cleanUpSpaces: boolean;

  private constructor(
    hf: Tokenizer,
    json: Record<string, unknown>,
    cfg: TextTokenizerConfig,
    cfgFile: string,
  ) {
    this.#hf = hf;
    this.#cleanUpSpaces = cfg.cleanUpTokenizationSpaces ?? false;
    let maxId = -1;
    for (const id of hf.get_vocab(true).values()) maxId = Math.max(maxId, id);
    this.vocabSize = maxId + 1;

    const modelUnk = asObject(json.model)?.unk_token;
    const idOf = (role: SpecialRole): number | undefined => {
      const named = { bos: cfg.bosToken, eos: cfg.eosToken, unk: cfg.unkToken, pad: cfg.padToken }[role];
      if (named === null) return undefined;
      if (named !== undefined) {
        const id = hf.token_to_id(named);
        if (id === undefined) {
          throw new Error(
            `${cfgFile}: field "${ROLE_FIELD[role]}" is ${JSON.stringify(named)}, which is not in the ` +
              `tokenizer.json vocabulary; set it to a token of that vocabulary, or null`,
          );
        }
        return id;
      }
      switch (role) {
        case "bos":
          return hf.token_to_id("<s>");
        case "eos":
          return hf.token_to_id("</s>");
        case "unk":
          return hf.token_to_id(typeof modelUnk === "string" ? modelUnk : "<unk>");
        case "pad":
          return undefined;
        default: {
          const never: never = role;
          throw new Error(`unknown special-token role ${never}`);
        }
      }
    };
    this.bosId = idOf("bos");
    this.eosId = idOf("eos");
    this.unkId = idOf("unk");
    this.padId = idOf("pad") ?? this.unkId;

    // What tokenizer.json's post-processor adds around a probe text, for the defaults.
    const bare = hf.encode("a", { add_special_tokens: false }).ids;
    const full = hf.encode("a").ids;
    const postBos = this.bosId !== undefined && full[0] === this.bosId && bare[0] !== this.bosId;
    const postEos = this.eosId !== undefined && full.at(-1) === this.eosId && bare.at(-1) !== this.eosId;
    this.defaultAddBos = cfg.addBosToken ?? postBos;
    this.defaultAddEos = cfg.addEosToken ?? postEos;
  }

  /**
   * Loads the tokenizer of a Hugging Face model folder: `pathOrDir` is the folder (which holds
   * `tokenizer.json`) or the `tokenizer.json` file itself. A `tokenizer_config.json` beside it, when
   * present, names the bos/eos/unk/pad tokens and sets `add_bos_token` / `add_eos_token`.
   */
  static async load(pathOrDir: string): Promise<TextTokenizer> {
    const dir = await isDirectory(pathOrDir) ? pathOrDir : dirname(pathOrDir);
    const file = dir === pathOrDir ? join(dir, "tokenizer.json") : pathOrDir;
    const cfgFile = join(dir, "tokenizer_config.json");
    const json = await readJson(file, false);
    const cfg = await readJson(cfgFile, true);
    return TextTokenizer.#build(json, cfg, file, cfgFile);
  }

  /**
   * Builds a tokenizer from already parsed `tokenizer.json` and (optional) `tokenizer_config.json`
   * objects, e.g. ones a test writes in memory.
   */
  static fromJson(tokenizerJson: unknown, tokenizerConfig?: unknown): TextTokenizer {
    return TextTokenizer.#build(tokenizerJson, tokenizerConfig, "tokenizer.json", "tokenizer_config.json");
  }

  static #build(json: unknown, cfgJson: unknown, file: string, cfgFile: string): TextTokenizer {
    const o = asObject(json);
    if (!o) throw new Error(`${file}: must be a JSON object, got ${jsonType(json)}; expected ${EXPECTED}`);
    if (!asObject(o.model)) {
      throw new Error(`${file}: field "model" is missing or not an object; expected ${EXPECTED}`);
    }
    const cfg = cfgJson === undefined
      ? { additionalSpecialTokens: [] }
      : parseTokenizerConfig(cfgJson, cfgFile);
    let hf: Tokenizer;
    try {
      hf = new Tokenizer(
        { added_tokens: [], ...o },
        {
          clean_up_tokenization_spaces: cfg.cleanUpTokenizationSpaces ?? false,
          additional_special_tokens: cfg.additionalSpecialTokens,
        },
      );
    } catch (e) {
      throw new Error(
        `${file}: @huggingface/tokenizers cannot build a tokenizer from it (${(e as Error).message}); ` +
          `expected ${EXPECTED}`,
      );
    }
    return new TextTokenizer(hf, o, cfg, cfgFile);
  }

  /**
   * Token ids of `text`. Special tokens written in the text (`<s>`, `</s>`) become their ids, as in
   * Hugging Face's tokenizers; BOS/EOS are added per `opts` (defaults: {@linkcode TextTokenizer.defaultAddBos},
   * {@linkcode TextTokenizer.defaultAddEos}). Other pieces of a post-processor template (pairs, CLS/SEP) are not
   * applied.
   */
  encode(text: string, opts: EncodeOptions = {}): number[] {
    const ids = this.#hf.encode(text, { add_special_tokens: false }).ids;
    if (opts.addBos ?? this.defaultAddBos) ids.unshift(this.#special(this.bosId, "addBos", "bos_token"));
    if (opts.addEos ?? this.defaultAddEos) ids.push(this.#special(this.eosId, "addEos", "eos_token"));
    return ids;
  }

  #special(id: number | undefined, opt: string, field: string): number {
    if (id === undefined) {
      throw new Error(
        `TextTokenizer.encode: ${opt} is set but this tokenizer has no ${field}; ` +
          `name it in tokenizer_config.json or pass ${opt}: false`,
      );
    }
    return id;
  }

  /** The text of token ids; throws on an id outside the vocabulary. */
  decode(ids: number[], opts: DecodeOptions = {}): string {
    ids.forEach((id, i) => {
      if (this.idToToken(id) === undefined) {
        throw new Error(
          `TextTokenizer.decode: ids[${i}] = ${id} is not a token id (integers 0..${this.vocabSize - 1})`,
        );
      }
    });
    if (ids.length === 0) return "";
    return this.#hf.decode(ids, {
      skip_special_tokens: opts.skipSpecial ?? false,
      clean_up_tokenization_spaces: this.#cleanUpSpaces,
    });
  }

  /** The id of a token string (e.g. `"▁Hello"`, `"<s>"`), or undefined if it is not in the vocabulary. */
  tokenToId(token: string): number | undefined {
    return this.#hf.token_to_id(token);
  }

  /** The token string of an id, or undefined if no token has that id. */
  idToToken(id: number): string | undefined {
    return Number.isInteger(id) && id >= 0 ? this.#hf.id_to_token(id) : undefined;
  }
}
