import assert from "node:assert/strict";
import { llama2TokenizerDir } from "../tests/fixtures/tokenizers/fixture_dirs.ts";
import { buildLlama2Tokenizer } from "../tests/make_llama2_tokenizer.ts";
import { TextTokenizer } from "../tokenizers/text_tokenizer.ts";
import { DataRowError, type LlavaRow, parseLlavaRow } from "./llava_json.ts";
import {
  applyTemplate,
  IMAGE_TOKEN_ID,
  isLegacyTokenizer,
  templatePrompt,
  tokenizeWithImage,
  VICUNA_V1_SYSTEM,
} from "./templates.ts";

/** Llama-2 / Vicuna v1.5 with the HF `tokenizer.json` layout: a `Prepend("▁")` normalizer ("legacy"). */
const legacy = await TextTokenizer.load(await llama2TokenizerDir());

/**
 * The same vocabulary as the slow tokenizer Vicuna v1.5 gets under recent `transformers`
 * (`legacy: false`): no normalizer, a `Metaspace` pre-tokenizer that puts `▁` before the first piece
 * of the text only, so text right after a special token gets none.
 */
const nonLegacy = (() => {
  const { tokenizerJson, tokenizerConfig } = buildLlama2Tokenizer();
  return TextTokenizer.fromJson({
    ...tokenizerJson,
    normalizer: null,
    pre_tokenizer: { type: "Metaspace", replacement: "▁", prepend_scheme: "first", split: false },
  }, tokenizerConfig);
})();

const X = -100;
const IMG = IMAGE_TOKEN_ID;

/** The ids of vocabulary tokens written as token strings (the hand-worked segmentation). */
function tk(tok: TextTokenizer, ...tokens: string[]): number[] {
  return tokens.map((t) => {
    const id = tok.tokenToId(t);
    assert.ok(id !== undefined, `token ${JSON.stringify(t)} is not in the vocabulary`);
    return id;
  });
}

/** A checked row (the marker placed as reading places it). */
const row = (conversations: [string, string][], image?: string, id = "r1"): LlavaRow =>
  parseLlavaRow(
    {
      id,
      ...(image ? { image } : {}),
      conversations: conversations.map(([from, value]) => ({ from, value })),
    },
    "data/x.json",
    5,
  );

const twoTurns = row([["human", "What is this?\n<image>"], ["gpt", "A cat."], ["human", "And?"], [
  "gpt",
  "Nothing.",
]], "a.jpg");

Deno.test("tokenizer pieces the hand-worked sequences rest on", () => {
  const t = legacy;
  assert.deepEqual(t.encode("Hello world"), [1, 15043, 3186]);
  assert.deepEqual(tk(t, "<unk>", "<s>", "</s>", "▁US", "ER", "USER", "▁"), [
    0,
    1,
    2,
    3148,
    1001,
    11889,
    29871,
  ]);
  // "USER" starting a text is "▁USER", which the vocabulary splits into "▁US" + "ER".
  assert.deepEqual(t.encode("USER:", { addBos: false }), tk(t, "▁US", "ER", ":"));
  // "ASSISTANT" has no single token: "▁A" "SS" "IST" "ANT".
  assert.deepEqual(t.encode("ASSISTANT:", { addBos: false }), tk(t, "▁A", "SS", "IST", "ANT", ":"));
  // A trailing space becomes a lone "▁" (29871); in the full text it joins the next word instead.
  assert.deepEqual(t.encode("A: ", { addBos: false }), tk(t, "▁A", ":", "▁"));
  // A piece that starts with "\n" gets the leading "▁" on its own: "▁", "<0x0A>".
  assert.deepEqual(t.encode("\nWhat", { addBos: false }), tk(t, "▁", "<0x0A>", "What"));
  // Legacy: text after "</s>" is encoded as a fresh text ("▁US" "ER"); non-legacy: as a continuation ("USER").
  assert.deepEqual(t.encode("</s>USER", { addBos: false }), tk(t, "</s>", "▁US", "ER"));
  assert.deepEqual(nonLegacy.encode("</s>USER", { addBos: false }), tk(t, "</s>", "USER"));
  assert.deepEqual(nonLegacy.encode("USER", { addBos: false }), tk(t, "▁US", "ER"));
  assert.equal(isLegacyTokenizer(legacy), true);
  assert.equal(isLegacyTokenizer(nonLegacy), false);
});

Deno.test("tokenizeWithImage: one <s>, the pieces without theirs, one placeholder per marker", () => {
  const t = legacy;
  assert.deepEqual(tokenizeWithImage("<image>", t), [1, IMG]);
  assert.deepEqual(tokenizeWithImage("", t), [1]);
  // "a <image>\nb": "a " -> <s> ▁a ▁ ; "\nb" -> <s> ▁ <0x0A> b.
  assert.deepEqual(tokenizeWithImage("a <image>\nb", t), [
    1,
    ...tk(t, "▁a", "▁"),
    IMG,
    ...tk(t, "▁", "<0x0A>", "b"),
  ]);
});

Deno.test("plain: <s>, image, caption, newline; only the caption and the newline supervised", () => {
  const t = legacy;
  const r = row([["human", "Give a short caption.\n<image>"], ["gpt", "A cat on a mat."]], "c.jpg");
  assert.equal(templatePrompt(r, "plain"), "<image>A cat on a mat.\n"); // the question is dropped
  const { ids, labels } = applyTemplate(r, "plain", t);
  // The caption piece "A cat on a mat.\n" is encoded on its own: <s> ▁A ▁cat ▁on ▁a ▁mat . <0x0A>, its <s> dropped.
  const caption = tk(t, "▁A", "▁cat", "▁on", "▁a", "▁mat", ".", "<0x0A>");
  assert.deepEqual(caption, [319, 6635, 373, 263, 1775, 29889, 13]);
  assert.deepEqual(ids, [1, IMG, ...caption]);
  assert.deepEqual(labels, [X, X, 319, 6635, 373, 263, 1775, 29889, 13]);
  // The same under a non-legacy tokenizer: nothing follows a special token.
  assert.deepEqual(applyTemplate(r, "plain", nonLegacy), { ids, labels });
});

Deno.test("plain: rows without an image or with more than one caption are refused", () => {
  const text = row([["human", "Hi"], ["gpt", "Hello."]]);
  assert.throws(
    () => applyTemplate(text, "plain", legacy),
    (e: unknown) =>
      e instanceof DataRowError &&
      e.message === 'data/x.json row 5 (id "r1"): the plain template needs an image in every row; ' +
          'fix the row or set data.onError: "skip"',
  );
  assert.throws(
    () => applyTemplate(twoTurns, "plain", legacy),
    /^DataRowError: data\/x\.json row 5 \(id "r1"\): the plain template takes one caption \(2 turns\), got 4 turns/,
  );
});

Deno.test("vicuna_v1: a 2-turn image conversation, ids and labels position by position (legacy tokenizer)", () => {
  const t = legacy;
  assert.equal(
    templatePrompt(twoTurns, "vicuna_v1"),
    `${VICUNA_V1_SYSTEM} USER: <image>\nWhat is this? ASSISTANT: A cat.</s>USER: And? ASSISTANT: Nothing.</s>`,
  );
  const { ids, labels } = applyTemplate(twoTurns, "vicuna_v1", t);
  // Piece 1, "{system} USER: ": the system prompt ends with "." so its tokens do not merge with " USER";
  // the trailing space is a lone "▁".
  const sys = t.encode(VICUNA_V1_SYSTEM, { addBos: false });
  assert.equal(sys.length, 30);
  const head = [1, ...sys, ...tk(t, "▁US", "ER", ":", "▁")];
  // Piece 2, "\nWhat is this? ASSISTANT: A cat.</s>USER: And? ASSISTANT: Nothing.</s>", on its own:
  // "▁" "<0x0A>" first; ": A" is ":" "▁A" (the space joins the answer); after "</s>" a legacy tokenizer
  // starts afresh, so "USER" is "▁US" "ER" again.
  const q1 = tk(t, "▁", "<0x0A>", "What", "▁is", "▁this", "?", "▁A", "SS", "IST", "ANT", ":");
  const a1 = tk(t, "▁A", "▁cat", ".", "</s>");
  const q2 = tk(t, "▁US", "ER", ":", "▁And", "?", "▁A", "SS", "IST", "ANT", ":");
  const a2 = tk(t, "▁Nothing", ".", "</s>");
  assert.deepEqual(ids, [...head, IMG, ...q1, ...a1, ...q2, ...a2]);
  assert.equal(ids.length, 35 + 1 + 11 + 4 + 10 + 3);
  // Round 1 = "{system} USER: <image>\nWhat is this? ASSISTANT: A cat" on its own: <s> + 34 + image + 11 + 3
  // = 50 = the 49 tokens up to "." plus "</s>"; its instruction "... ASSISTANT: " on its own is <s> + 34 +
  // image + 11 + lone "▁" = 48, less 2 = 46 masked after <s>. Round 2 = "USER: And? ASSISTANT: Nothing." on
  // its own: <s> + 10 + 2 = 13 = the round's 12 tokens plus "</s>"; its instruction: <s> + 10 + "▁" - 2 = 10.
  const want = [
    ...head.map(() => X),
    X,
    ...q1.map(() => X),
    ...a1, // "▁A" "▁cat" "." "</s>" supervised
    ...q2.map(() => X),
    ...a2, // "▁Nothing" "." "</s>" supervised
  ];
  assert.equal(labels.length, ids.length);
  for (let i = 0; i < ids.length; i++) assert.equal(labels[i], want[i], `label ${i} (id ${ids[i]})`);
  assert.deepEqual(labels.flatMap((l, i) => (l === X ? [] : [i])), [47, 48, 49, 50, 61, 62, 63]);
});

Deno.test("vicuna_v1: a non-legacy tokenizer ('</s>USER' -> USER) gets the reference's one-token correction", () => {
  const t = nonLegacy;
  const { ids, labels } = applyTemplate(twoTurns, "vicuna_v1", t);
  const legacyIds = applyTemplate(twoTurns, "vicuna_v1", legacy).ids;
  // The same as the legacy sequence except "▁US" "ER" after the first "</s>", which is "USER" here.
  const at = legacyIds.indexOf(2) + 1;
  assert.deepEqual(ids, [...legacyIds.slice(0, at), ...tk(t, "USER"), ...legacyIds.slice(at + 2)]);
  // Round 2 on its own still starts "▁US" "ER" (one token more than in the full text): the reference takes
  // one off its length and its instruction's, and the answers stay exactly supervised.
  assert.deepEqual(labels.flatMap((l, i) => (l === X ? [] : [i])), [47, 48, 49, 50, 60, 61, 62]);
  assert.deepEqual(labels.filter((l) => l !== X), tk(t, "▁A", "▁cat", ".", "</s>", "▁Nothing", ".", "</s>"));
});

Deno.test("vicuna_v1: a text-only row: no placeholder, <s> and the question unsupervised", () => {
  const t = legacy;
  const r = row([["human", "Hello"], ["gpt", "Hello world!"]]);
  const { ids, labels } = applyTemplate(r, "vicuna_v1", t);
  const sys = t.encode(VICUNA_V1_SYSTEM, { addBos: false });
  const q = tk(t, "▁US", "ER", ":", "▁Hello", "▁A", "SS", "IST", "ANT", ":");
  const a = tk(t, "▁Hello", "▁world", "!", "</s>");
  assert.deepEqual(ids, [1, ...sys, ...q, ...a]);
  assert.deepEqual(labels, [X, ...sys.map(() => X), ...q.map(() => X), ...a]);
});

Deno.test("vicuna_v1: rounds that do not add up (a value holding ' ASSISTANT: ') refuse the row", () => {
  const r = row([["human", "<image>\nSay it"], ["gpt", "I am the ASSISTANT: hi"]], "a.jpg", "odd");
  assert.throws(
    () => applyTemplate(r, "vicuna_v1", legacy),
    (e: unknown) =>
      e instanceof DataRowError && e.index === 5 && e.id === "odd" &&
      /^data\/x\.json row 5 \(id "odd"\): the vicuna_v1 rounds add up to 1 tokens but the conversation has \d+/
        .test(
          e.message,
        ),
  );
});
