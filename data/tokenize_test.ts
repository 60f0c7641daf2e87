import assert from "node:assert/strict";
import { llama2TokenizerDir } from "../tests/fixtures/tokenizers/fixture_dirs.ts";
import { TextTokenizer } from "../tokenizers/text_tokenizer.ts";
import { DataRowError, type LlavaRow, parseLlavaRow } from "./llava_json.ts";
import { IMAGE_TOKEN_ID, VICUNA_V1_SYSTEM } from "./templates.ts";
import { tokenizeRow } from "./tokenize.ts";

const tok = await TextTokenizer.load(await llama2TokenizerDir());
const X = -100;
const I = IMAGE_TOKEN_ID;

const row = (conversations: [string, string][], image?: string): LlavaRow =>
  parseLlavaRow(
    {
      id: "cap1",
      ...(image ? { image } : {}),
      conversations: conversations.map(([from, value]) => ({ from, value })),
    },
    "data/x.json",
    9,
  );

// "A cat on a mat.\n" -> ▁A ▁cat ▁on ▁a ▁mat . <0x0A> (see templates_test.ts).
const CAPTION = [319, 6635, 373, 263, 1775, 29889, 13];
const caption = row([["human", "<image>\nDescribe."], ["gpt", "A cat on a mat."]], "c.jpg");

Deno.test("tokenizeRow: plain, the image widened to N placeholder positions", () => {
  const t = tokenizeRow(caption, { template: "plain", tokenizer: tok, imageTokens: 3, maxLength: 100 });
  assert.deepEqual(t, {
    inputIds: [1, I, I, I, ...CAPTION],
    labels: [X, X, X, X, ...CAPTION],
    imageStart: 1,
    imageTokens: 3,
  });
});

Deno.test("tokenizeRow: vicuna_v1 image row starts its image after '{system} USER: '; text-only rows have none", () => {
  const r = row([["human", "<image>\nWhat is this?"], ["gpt", "A cat."]], "a.jpg");
  const t = tokenizeRow(r, { template: "vicuna_v1", tokenizer: tok, imageTokens: 4, maxLength: 2048 });
  const head = tok.encode(`${VICUNA_V1_SYSTEM} USER: `); // <s>, 30 system tokens, ▁US ER : ▁
  assert.equal(head.length, 35);
  assert.equal(t.imageStart, 35);
  assert.equal(t.imageTokens, 4);
  assert.deepEqual(t.inputIds.slice(0, 39), [...head, I, I, I, I]);
  assert.deepEqual(t.labels.slice(0, 39), new Array(39).fill(X));
  // Supervised: "▁A" "▁cat" "." "</s>" at the end.
  assert.deepEqual(t.labels.slice(-4), [319, 6635, 29889, 2]);
  assert.equal(t.labels.filter((l) => l !== X).length, 4);

  const text = tokenizeRow(row([["human", "Hello"], ["gpt", "Hello world!"]]), {
    template: "vicuna_v1",
    tokenizer: tok,
    imageTokens: 4,
    maxLength: 2048,
  });
  assert.equal(text.imageStart, -1);
  assert.equal(text.imageTokens, 0);
  assert.equal(text.inputIds.includes(I), false);
});

Deno.test("tokenizeRow: truncation cuts text after the image, never the image span", () => {
  const opts = { template: "plain" as const, tokenizer: tok, imageTokens: 3 };
  // 11 tokens in all; at 6 the caption keeps "▁A" "▁cat".
  assert.deepEqual(tokenizeRow(caption, { ...opts, maxLength: 6 }), {
    inputIds: [1, I, I, I, 319, 6635],
    labels: [X, X, X, X, 319, 6635],
    imageStart: 1,
    imageTokens: 3,
    cutFrom: 11,
  });
  // Exactly the span's end: the span is whole but nothing supervised is left, so the row is refused.
  assert.throws(
    () => tokenizeRow(caption, { ...opts, maxLength: 4 }),
    (e: unknown) =>
      e instanceof DataRowError &&
      e.message ===
        `data/x.json row 9 (id "cap1"): every supervised token lies past maxLength 4 (the row has 11 tokens), ` +
          `so it would train nothing; set data.maxLength to at least 5, or data.onError: "skip"`,
  );
  assert.deepEqual(tokenizeRow(caption, { ...opts, maxLength: 5 }).labels, [X, X, X, X, 319]);
  // Not shortened when it fits.
  const whole11 = tokenizeRow(caption, { ...opts, maxLength: 11 });
  assert.equal(whole11.inputIds.length, 11);
  assert.equal(whole11.cutFrom, undefined);
  // The span (positions 1..3) cannot fit in 3.
  assert.throws(
    () => tokenizeRow(caption, { ...opts, maxLength: 3 }),
    (e: unknown) =>
      e instanceof DataRowError && e.index === 9 && e.id === "cap1" &&
      e.message ===
        `data/x.json row 9 (id "cap1"): the image's 3 positions (1..3) do not fit in maxLength 3; ` +
          "set data.maxLength to at least 4, or shorten the text before the image",
  );
  // A text-only row is simply cut; cut before its answer, it is refused.
  const chat = row([["human", "Hello"], ["gpt", "Hello world!"]]);
  const vicuna = { template: "vicuna_v1" as const, tokenizer: tok, imageTokens: 3 };
  const whole = tokenizeRow(chat, { ...vicuna, maxLength: 2048 });
  const first = whole.labels.findIndex((l) => l !== X);
  const cut = tokenizeRow(chat, { ...vicuna, maxLength: first + 2 });
  assert.deepEqual(cut.inputIds, whole.inputIds.slice(0, first + 2));
  assert.deepEqual(cut.labels, whole.labels.slice(0, first + 2));
  assert.throws(
    () => tokenizeRow(chat, { ...vicuna, maxLength: 5 }),
    /every supervised token lies past maxLength 5/,
  );
});

Deno.test("tokenizeRow: options are checked", () => {
  const opts = { template: "plain" as const, tokenizer: tok, imageTokens: 3, maxLength: 10 };
  assert.throws(
    () => tokenizeRow(caption, { ...opts, imageTokens: 0 }),
    /imageTokens must be a positive integer, got 0/,
  );
  assert.throws(
    () => tokenizeRow(caption, { ...opts, maxLength: 2.5 }),
    /maxLength must be a positive integer, got 2.5/,
  );
});

Deno.test("tokenizeRow: a row whose rounds do not add up is kept with its text masked, and says so", () => {
  const vicuna = { template: "vicuna_v1" as const, tokenizer: tok, imageTokens: 3, maxLength: 2048 };
  const odd = tokenizeRow(row([["human", "Say it"], ["gpt", "I am the ASSISTANT: hi"]]), vicuna);
  assert.equal(odd.textMasked, true);
  assert.ok(odd.labels.every((l) => l === X));
  assert.equal(tokenizeRow(row([["human", "Hello"], ["gpt", "Hi."]]), vicuna).textMasked, undefined);
});
