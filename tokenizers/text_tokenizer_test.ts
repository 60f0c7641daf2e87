import assert from "node:assert/strict";
import llamaReference from "llama-tokenizer-js";
import mistralReference from "mistral-tokenizer-js";
import { rng } from "../core/random.ts";
import { llama2TokenizerDir, mistralTokenizerDir } from "../tests/fixtures/tokenizers/fixture_dirs.ts";
import { buildLlama2Tokenizer } from "../tests/make_llama2_tokenizer.ts";
import { parseTokenizerConfig, TextTokenizer } from "./text_tokenizer.ts";

/** A reference encoder: BOS and the leading `▁` added, as the real tokenizers do. */
interface Reference {
  encode(text: string): number[];
  decode(ids: number[]): string;
}
const references: Record<"llama2" | "mistral", Reference> = {
  llama2: {
    encode: (s) => llamaReference.encode(s, true, true),
    decode: (ids) => llamaReference.decode(ids, true, true),
  },
  mistral: {
    encode: (s) => mistralReference.encode(s, true, true),
    decode: (ids) => mistralReference.decode(ids, true, true),
  },
};

let llama2: Promise<TextTokenizer> | null = null;
let mistral: Promise<TextTokenizer> | null = null;
const loadLlama2 = () => llama2 ??= llama2TokenizerDir().then(TextTokenizer.load);
const loadMistral = () => mistral ??= mistralTokenizerDir().then(TextTokenizer.load);
const loaders = { llama2: loadLlama2, mistral: loadMistral };

// Known ids: "Hello world" (DESIGN.md section 5) and the reference packages' own test cases.
const KNOWN: Record<"llama2" | "mistral", [string, number[]][]> = {
  llama2: [
    ["Hello world", [1, 15043, 3186]],
    ["Hello world!", [1, 15043, 3186, 29991]],
    ["grabbed", [1, 2646, 1327, 287]],
    [" grabbed", [1, 29871, 2646, 1327, 287]],
    ["           grabbed", [1, 9651, 2646, 1327, 287]],
    ["\n", [1, 29871, 13]],
    [" \n", [1, 259, 13]],
    ["\ttabs\t\t\t\tout here", [1, 29871, 12, 21175, 12, 12, 12, 12, 449, 1244]],
    ["ax\n####\nboo", [1, 4853, 13, 4136, 13, 833, 29877]],
    ["镇", [1, 29871, 30411]],
    ["🦙", [1, 29871, 243, 162, 169, 156]],
    ["🦙Ꙋ", [1, 29871, 243, 162, 169, 156, 237, 156, 141]],
  ],
  mistral: [
    ["Hello world", [1, 22557, 1526]],
    ["Hello world!", [1, 22557, 1526, 28808]],
    ["grabbed", [1, 13300]],
    [" grabbed", [1, 28705, 13300]],
    ["           grabbed", [1, 17422, 13300]],
    ["\n", [1, 28705, 13]],
    [" \n", [1, 259, 13]],
    ["\ttabs\t\t\t\tout here", [1, 28705, 12, 24856, 12, 12, 12, 12, 406, 1236]],
    ["ax\n####\nboo", [1, 6056, 13, 2000, 13, 1798, 28709]],
    ["镇", [1, 28705, 29780]],
    ["🦙Ꙋ", [1, 28705, 243, 162, 169, 156, 237, 156, 141]],
    ["Ꙋ🦙", [1, 28705, 237, 156, 141, 243, 162, 169, 156]],
  ],
};

const PIECES = [
  // English, contractions, names
  "the",
  "quick brown fox",
  "Hello",
  "world",
  "grabbed",
  "don't",
  "it's",
  "e.g.",
  "LLaVA-1.5",
  "Vicuna",
  "A photo of a cat sitting on a mat.",
  "What is shown in the image?",
  "USER:",
  "ASSISTANT:",
  // digits
  "0",
  "42",
  "3.14159",
  "1,000,000",
  "2024-01-31",
  "v1.5",
  "x86_64",
  // punctuation
  ".",
  ",",
  "!?",
  "...",
  "(a)",
  "[b]",
  "{c}",
  '"q"',
  "'s",
  "--",
  "@#$%^&*",
  "~`|\\",
  // accented Latin, Greek, Cyrillic, RTL, Indic, Thai
  "café",
  "naïve",
  "Ångström",
  "straße",
  "Zürich",
  "e\u0301",
  "αβγ",
  "Ελληνικά",
  "Привет мир",
  "مرحبا",
  "שלום",
  "नमस्ते",
  "สวัสดี",
  // CJK
  "日本語",
  "中文分词",
  "한국어",
  "こんにちは世界",
  "漢字",
  "镇",
  // emoji and symbols
  "😀",
  "🦙",
  "👍🏽",
  "👨‍👩‍👧",
  "🇫🇷",
  "❤️",
  "✨",
  "∑∫√∞≈",
  "Ꙋ",
  "𝔘𝔫𝔦",
  "\u00a0",
  "\ufffd",
  // code
  "function f(x) { return x * 2; }",
  "def main():\n    print('hi')",
  '<div class="a">',
  "a[i] += b[j];",
  "#include <stdio.h>",
  "SELECT * FROM t;",
  "if (a && b || !c) {}",
  "\tindent",
];
const SEPARATORS = ["", " ", " ", " ", "  ", "\n", "\n\n", "\t", "\r\n", " \n ", "   "];

/** Deterministic varied strings (never empty, never containing special-token text). */
function variedStrings(n: number, seed: number): string[] {
  const r = rng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)];
  const out: string[] = [];
  while (out.length < n) {
    let s = "";
    const k = 1 + Math.floor(r() * 8);
    for (let i = 0; i < k; i++) s += (i > 0 ? pick(SEPARATORS) : "") + pick(PIECES);
    if (r() < 0.2) s = " ".repeat(1 + Math.floor(r() * 3)) + s;
    if (r() < 0.2) s += pick([" ", "  ", "\n", " \n"]);
    if (r() < 0.1) s += String(Math.floor(r() * 1e9));
    if (/<s>|<\/s>|<unk>/.test(s)) continue;
    out.push(s);
  }
  return out;
}
const STRINGS = variedStrings(300, 1234);

for (const name of ["llama2", "mistral"] as const) {
  Deno.test(`text tokenizer ${name}: known ids and their decoding`, async () => {
    const tok = await loaders[name]();
    for (const [text, ids] of KNOWN[name]) {
      assert.deepEqual(tok.encode(text), ids, `encode(${JSON.stringify(text)})`);
      assert.equal(tok.decode(ids, { skipSpecial: true }), text, `decode of ${JSON.stringify(text)}`);
    }
  });

  Deno.test(`text tokenizer ${name}: special tokens <s> </s> <unk> and the pad id`, async () => {
    const tok = await loaders[name]();
    assert.equal(tok.vocabSize, 32000);
    assert.deepEqual([tok.unkId, tok.bosId, tok.eosId, tok.padId], [0, 1, 2, 0]);
    assert.deepEqual(["<unk>", "<s>", "</s>"].map((t) => tok.tokenToId(t)), [0, 1, 2]);
    assert.deepEqual([0, 1, 2].map((id) => tok.idToToken(id)), ["<unk>", "<s>", "</s>"]);
    assert.equal(tok.tokenToId("no such token"), undefined);
    assert.equal(tok.idToToken(32000), undefined);
    assert.equal(tok.idToToken(-1), undefined);
    assert.equal(tok.idToToken(1.5), undefined);
    assert.equal(tok.defaultAddBos, true);
    assert.equal(tok.defaultAddEos, false);

    const hello = references[name].encode("Hello world").slice(1); // without <s>
    assert.deepEqual(tok.encode("Hello world", { addBos: false }), hello);
    assert.deepEqual(tok.encode("Hello world", { addEos: true }), [1, ...hello, 2]);
    assert.deepEqual(tok.encode("Hello world", { addBos: false, addEos: true }), [...hello, 2]);
    assert.deepEqual(tok.encode(""), [1]);
    assert.equal(tok.decode([]), "");
    assert.equal(tok.decode([1, ...hello, 2]), "<s> Hello world</s>");
    assert.equal(tok.decode([1, ...hello, 2], { skipSpecial: true }), "Hello world");
    assert.equal(tok.decode([1, 2, 0], { skipSpecial: true }), "");

    // Special-token text in the input becomes the special ids, as in Hugging Face's tokenizers.
    const hi = references[name].encode("hi").slice(1);
    assert.deepEqual(tok.encode("<s>hi</s>"), [1, 1, ...hi, 2]);
    assert.deepEqual(tok.encode("<unk>", { addBos: false }), [0]);
    assert.equal(tok.decode([0]), "<unk>");

    assert.throws(() => tok.decode([5, 32000]), /ids\[1\] = 32000 is not a token id \(integers 0\.\.31999\)/);
    assert.throws(() => tok.decode([-1]), /ids\[0\] = -1/);
  });

  Deno.test(`text tokenizer ${name}: agrees with the reference encoder on ${STRINGS.length} strings`, async () => {
    const tok = await loaders[name]();
    const ref = references[name];
    let mismatches = 0;
    const firstBad: string[] = [];
    for (const s of STRINGS) {
      const ids = tok.encode(s);
      const want = ref.encode(s);
      if (JSON.stringify(ids) !== JSON.stringify(want)) {
        mismatches++;
        if (firstBad.length < 3) firstBad.push(`${JSON.stringify(s)}: got ${ids} want ${want}`);
      }
      assert.ok(!ids.slice(1).includes(0), `byte fallback leaves no <unk> in ${JSON.stringify(s)}`);
      assert.equal(
        tok.decode(want, { skipSpecial: true }),
        ref.decode(want),
        `decode of ${JSON.stringify(s)}`,
      );
    }
    assert.equal(mismatches, 0, firstBad.join("\n"));
  });

  Deno.test(`text tokenizer ${name}: encode/decode round trips`, async () => {
    const tok = await loaders[name]();
    for (const s of [...STRINGS, " ", "  leading", "trailing  ", "\n\nx\n", "a . b , c ' d"]) {
      assert.equal(tok.decode(tok.encode(s), { skipSpecial: true }), s);
      assert.equal(tok.decode(tok.encode(s, { addBos: false })), s);
    }
  });
}

Deno.test("text tokenizer: the Llama-2 fixture has Llama-2's vocabulary and merges", () => {
  const { tokenizerJson } = buildLlama2Tokenizer();
  const model = tokenizerJson.model as {
    vocab: Record<string, number>;
    merges: string[];
    byte_fallback: boolean;
  };
  assert.equal(Object.keys(model.vocab).length, 32000);
  assert.equal(model.merges.length, 61249);
  assert.equal(model.byte_fallback, true);
  assert.equal(model.vocab["▁Hello"], 15043);
  assert.equal(model.vocab["<0x0A>"], 13);
  assert.equal(model.merges[0], "▁ t");
});

/** The Llama-2 tokenizer.json and Vicuna tokenizer_config.json, as parsed JSON, for config variants. */
const llama2Json = async () =>
  JSON.parse(await Deno.readTextFile(`${await llama2TokenizerDir()}/tokenizer.json`));

Deno.test("text tokenizer: tokenizer_config.json names the special tokens and BOS/EOS defaults", async () => {
  const json = await llama2Json();
  const padded = TextTokenizer.fromJson(json, {
    pad_token: "</s>",
    bos_token: { __type: "AddedToken", content: "<s>" },
    add_bos_token: false,
    add_eos_token: true,
  });
  assert.equal(padded.padId, 2);
  assert.equal(padded.bosId, 1);
  assert.deepEqual(padded.encode("Hello world"), [15043, 3186, 2]);
  assert.deepEqual(padded.encode("Hello world", { addBos: true, addEos: false }), [1, 15043, 3186]);

  const noBos = TextTokenizer.fromJson(json, { bos_token: null, unk_token: null });
  assert.equal(noBos.bosId, undefined);
  assert.equal(noBos.unkId, undefined);
  assert.equal(noBos.padId, undefined);
  assert.equal(noBos.defaultAddBos, false);
  assert.deepEqual(noBos.encode("Hello world"), [15043, 3186]);
  assert.throws(
    () => noBos.encode("x", { addBos: true }),
    /addBos is set but this tokenizer has no bos_token/,
  );

  // Without tokenizer_config.json: <s> </s> <unk> by name, BOS from the post-processor.
  const bare = TextTokenizer.fromJson(json);
  assert.deepEqual([bare.unkId, bare.bosId, bare.eosId, bare.padId], [0, 1, 2, 0]);
  assert.deepEqual(bare.encode("Hello world"), [1, 15043, 3186]);

  // A post-processor without BOS and no config: no BOS by default.
  const plain = TextTokenizer.fromJson({ ...json, post_processor: null });
  assert.equal(plain.defaultAddBos, false);
  assert.deepEqual(plain.encode("Hello world"), [15043, 3186]);

  assert.throws(
    () => TextTokenizer.fromJson(json, { eos_token: "<|im_end|>" }),
    /tokenizer_config\.json: field "eos_token" is "<\|im_end\|>", which is not in the tokenizer\.json vocabulary/,
  );
  assert.throws(() => parseTokenizerConfig({ bos_token: 1 }), /field "bos_token" must be a token string/);
  assert.throws(
    () => parseTokenizerConfig({ add_bos_token: "yes" }),
    /field "add_bos_token" must be true or false/,
  );
  assert.throws(() => parseTokenizerConfig([]), /must be a JSON object/);
  assert.deepEqual(parseTokenizerConfig({ additional_special_tokens: ["<image>", { content: "<x>" }] }), {
    bosToken: undefined,
    eosToken: undefined,
    unkToken: undefined,
    padToken: undefined,
    addBosToken: undefined,
    addEosToken: undefined,
    cleanUpTokenizationSpaces: undefined,
    additionalSpecialTokens: ["<image>", "<x>"],
  });
});

Deno.test("text tokenizer: load from a file path, missing files and malformed JSON", async () => {
  const dir = await Deno.makeTempDir({ prefix: "asvr_text_tokenizer_test_" });
  try {
    // The tokenizer.json path itself; no tokenizer_config.json beside it.
    await Deno.copyFile(`${await llama2TokenizerDir()}/tokenizer.json`, `${dir}/tokenizer.json`);
    const tok = await TextTokenizer.load(`${dir}/tokenizer.json`);
    assert.deepEqual(tok.encode("Hello world"), [1, 15043, 3186]);

    await assert.rejects(
      TextTokenizer.load(`${dir}/nope`),
      (e: Error) =>
        e.message.includes(`${dir}/nope does not exist`) &&
        e.message.includes("tokenizer.json from the model's Hugging Face folder"),
    );
    await Deno.mkdir(`${dir}/empty`);
    await assert.rejects(
      TextTokenizer.load(`${dir}/empty`),
      (e: Error) =>
        e.message.includes(`${dir}/empty/tokenizer.json not found`) &&
        e.message.includes("tokenizer.json from the model's Hugging Face folder"),
    );

    await Deno.mkdir(`${dir}/bad`);
    await Deno.writeTextFile(`${dir}/bad/tokenizer.json`, '{"model": {"type": "BPE",');
    await assert.rejects(
      TextTokenizer.load(`${dir}/bad`),
      (e: Error) => e.message.includes(`${dir}/bad/tokenizer.json is not valid JSON`),
    );
    await Deno.writeTextFile(`${dir}/bad/tokenizer.json`, '{"version": "1.0"}');
    await assert.rejects(
      TextTokenizer.load(`${dir}/bad`),
      (e: Error) => e.message.includes(`${dir}/bad/tokenizer.json: field "model" is missing`),
    );

    await Deno.writeTextFile(`${dir}/tokenizer_config.json`, "{ bos_token: '<s>' }");
    await assert.rejects(
      TextTokenizer.load(dir),
      (e: Error) => e.message.includes(`${dir}/tokenizer_config.json is not valid JSON`),
    );
    await Deno.writeTextFile(`${dir}/tokenizer_config.json`, '{"pad_token": ["<pad>"]}');
    await assert.rejects(
      TextTokenizer.load(dir),
      (e: Error) =>
        e.message.includes(`${dir}/tokenizer_config.json: field "pad_token" must be a token string`),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
