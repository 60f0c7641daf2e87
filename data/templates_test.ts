import assert from "node:assert/strict";
import { llama2TokenizerDir } from "../tests/fixtures/tokenizers/fixture_dirs.ts";
import { buildLlama2Tokenizer } from "../tests/make_llama2_tokenizer.ts";
import { TextTokenizer } from "../tokenizers/text_tokenizer.ts";
import { DataRowError, type LlavaRow, parseLlavaRow } from "./llava_json.ts";
import {
  applyTemplate,
  IMAGE_TOKEN_ID,
  templatePrompt,
  tokenizeWithImage,
  VICUNA_V1_SYSTEM,
} from "./templates.ts";

/**
 * Llama-2 / Vicuna v1.5 with the `tokenizer.json` layout of `meta-llama/Llama-2-7b-hf`: a `Prepend("▁")`
 * normalizer, which encodes text after a special token as a fresh text ("legacy").
 */
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
});

Deno.test("tokenizeWithImage: text after a special token gets no ▁ of its own, with either tokenizer.json layout", () => {
  // The slow tokenizer with legacy: false (the reference's) encodes "</s>USER" as 2, 11889.
  for (const t of [legacy, nonLegacy]) {
    assert.deepEqual(tokenizeWithImage("</s>USER", t), [1, 2, 11889]);
    assert.deepEqual(tokenizeWithImage("Hi.</s>USER: And?", t), [
      1,
      ...tk(t, "▁Hi", "."),
      2,
      ...tk(t, "USER", ":", "▁And", "?"),
    ]);
    // A space after the special token stays a "▁" of the next word; "<s>" and "<unk>" split the same way.
    assert.deepEqual(tokenizeWithImage("</s> USER", t), [1, 2, ...tk(t, "▁US", "ER")]);
    assert.deepEqual(tokenizeWithImage("a<unk>b<s>c", t), [
      1,
      ...tk(t, "▁a"),
      0,
      ...tk(t, "b"),
      1,
      ...tk(t, "c"),
    ]);
  }
  // The non-legacy tokenizer.json agrees with the slow tokenizer on whole texts, special tokens inside.
  const texts = [
    `${VICUNA_V1_SYSTEM} USER: What is this? ASSISTANT: A cat.</s>USER: And? ASSISTANT: Nothing.</s>`,
    "\nWhat is it?</s>USER: 12 + 3 = ? ASSISTANT: 15</s>USER:  two  spaces\n\nand lines ASSISTANT: ok</s>",
    "</s>leading special, then </s>, <s>,<unk> inside",
  ];
  for (const text of texts) {
    assert.deepEqual(
      tokenizeWithImage(text, legacy),
      [1, ...nonLegacy.encode(text, { addBos: false })],
      text,
    );
  }
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

Deno.test("vicuna_v1: two rounds, the reference's ids at the separator and its labels, with either tokenizer.json layout", () => {
  assert.equal(
    templatePrompt(twoTurns, "vicuna_v1"),
    `${VICUNA_V1_SYSTEM} USER: <image>\nWhat is this? ASSISTANT: A cat.</s>USER: And? ASSISTANT: Nothing.</s>`,
  );
  for (const t of [legacy, nonLegacy]) {
    const r = applyTemplate(twoTurns, "vicuna_v1", t);
    const { ids, labels } = r;
    assert.equal(r.roundMismatch, undefined);
    // Piece 1, "{system} USER: ": the system prompt ends with "." so its tokens do not merge with " USER";
    // the trailing space is a lone "▁".
    const sys = t.encode(VICUNA_V1_SYSTEM, { addBos: false });
    assert.equal(sys.length, 30);
    const head = [1, ...sys, ...tk(t, "▁US", "ER", ":", "▁")];
    // Piece 2, "\nWhat is this? ASSISTANT: A cat.</s>USER: And? ASSISTANT: Nothing.</s>": "▁" "<0x0A>"
    // first; ": A" is ":" "▁A" (the space joins the answer); after "</s>" the reference's slow tokenizer
    // (legacy: false) adds no "▁", so the separator "</s>USER" is 2, 11889 (not 2, "▁US" 3148, "ER" 1001).
    const q1 = tk(t, "▁", "<0x0A>", "What", "▁is", "▁this", "?", "▁A", "SS", "IST", "ANT", ":");
    const a1 = tk(t, "▁A", "▁cat", ".", "</s>");
    const q2 = tk(t, "USER", ":", "▁And", "?", "▁A", "SS", "IST", "ANT", ":");
    const a2 = tk(t, "▁Nothing", ".", "</s>");
    assert.deepEqual(ids, [...head, IMG, ...q1, ...a1, ...q2, ...a2]);
    assert.equal(ids.length, 35 + 1 + 11 + 4 + 9 + 3);
    assert.deepEqual(ids.slice(50, 52), [2, 11889]);
    // The reference's masks: round 1 = "{system} USER: <image>\nWhat is this? ASSISTANT: A cat." on its own
    // is <s> + 34 + image + 11 + 3 = 50 = the 49 tokens up to "." plus "</s>"; its instruction "...
    // ASSISTANT: " on its own is <s> + 34 + image + 11 + lone "▁" = 48, less 2 = 46 masked after <s>.
    // Round 2 = "USER: And? ASSISTANT: Nothing." on its own is <s> + "▁US" "ER" + 8 + 2 = 13, one more than
    // its 11 tokens plus "</s>" in the full text, so the reference takes 1 off: 12; its instruction: <s> +
    // 10 + "▁" - 2 - 1 = 9. The answers and their "</s>" are supervised, nothing else.
    const want = [
      ...head.map(() => X),
      X,
      ...q1.map(() => X),
      ...a1, // "▁A" "▁cat" "." "</s>"
      ...q2.map(() => X),
      ...a2, // "▁Nothing" "." "</s>"
    ];
    assert.equal(labels.length, ids.length);
    for (let i = 0; i < ids.length; i++) assert.equal(labels[i], want[i], `label ${i} (id ${ids[i]})`);
    assert.deepEqual(labels.flatMap((l, i) => (l === X ? [] : [i])), [47, 48, 49, 50, 60, 61, 62]);
  }
});

Deno.test("vicuna_v1: three rounds of a text-only row line up the same way", () => {
  const r = row([["human", "Hi"], ["gpt", "Hello."], ["human", "Who?"], ["gpt", "Me."], ["human", "Ok"], [
    "gpt",
    "Bye.",
  ]]);
  for (const t of [legacy, nonLegacy]) {
    const { ids, labels, roundMismatch } = applyTemplate(r, "vicuna_v1", t);
    assert.equal(roundMismatch, undefined);
    assert.deepEqual(ids, [1, ...nonLegacy.encode(templatePrompt(r, "vicuna_v1"), { addBos: false })]);
    assert.equal(ids.filter((id) => id === 11889).length, 2); // "USER" after each "</s>"
    const answers = ["Hello.", "Me.", "Bye."].flatMap((a) => [...t.encode(a, { addBos: false }), 2]);
    assert.deepEqual(labels.filter((l) => l !== X), answers);
  }
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

Deno.test("vicuna_v1: rounds that do not add up mask the row's text and say so, as the reference", () => {
  // A value holding " ASSISTANT: " splits its round in three: the reference stops its round arithmetic
  // there (1 token counted against the whole sequence), masks every label and trains on the row anyway.
  const odd = row([["human", "<image>\nSay it"], ["gpt", "I am the ASSISTANT: hi"]], "a.jpg", "odd");
  // A value holding "</s>" ends its round early: the rest is counted as a round of its own.
  const eos = row(
    [["human", "<image>\nEnd it"], ["gpt", "Done.</s>"], ["human", "And?"], ["gpt", "Yes."]],
    "a.jpg",
  );
  for (const t of [legacy, nonLegacy]) {
    const r = applyTemplate(odd, "vicuna_v1", t);
    assert.deepEqual(r.roundMismatch, { rounds: 1, tokens: r.ids.length });
    assert.equal(r.ids.length, tokenizeWithImage(templatePrompt(odd, "vicuna_v1"), t).length);
    assert.ok(r.labels.every((l) => l === X));
    const e = applyTemplate(eos, "vicuna_v1", t);
    assert.ok(e.roundMismatch !== undefined && e.roundMismatch.rounds !== e.roundMismatch.tokens);
    assert.ok(e.labels.every((l) => l === X));
  }
});
