import assert from "node:assert/strict";
import { IGNORE_INDEX } from "../core/labels.ts";
import { rng } from "../core/random.ts";
import { parseLlavaRow } from "../data/llava_json.ts";
import { applyTemplate } from "../data/templates.ts";
import { TextTokenizer } from "./text_tokenizer.ts";
import { trainBpeTokenizer, writeBpeTokenizer } from "./train_bpe.ts";

const COLORS = ["red", "green", "blue", "yellow", "purple", "orange", "black", "white"];
const SHAPES = ["circle", "square", "triangle", "star", "hexagon", "diamond"];
const WHERE = ["above", "below", "left of", "right of", "next to"];
const SIZES = ["small", "large", "tiny", "big"];

/** `n` lines of captions and short questions and answers about shape scenes, from `seed`. */
function shapeCorpus(n: number, seed: number): string[] {
  const r = rng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)];
  const lines: string[] = [];
  for (let i = 0; i < n; i++) {
    const [c1, s1, c2, s2] = [pick(COLORS), pick(SHAPES), pick(COLORS), pick(SHAPES)];
    switch (i % 4) {
      case 0:
        lines.push(`A ${pick(SIZES)} ${c1} ${s1} ${pick(WHERE)} a ${c2} ${s2}.`);
        break;
      case 1:
        lines.push(`What color is the ${s1}?`, `The ${s1} is ${c1}.`);
        break;
      case 2:
        lines.push(`How many shapes are there?`, `There are ${1 + Math.floor(r() * 9)} shapes.`);
        break;
      default:
        lines.push(`Is there a ${c1} ${s1}?`, r() < 0.5 ? "Yes." : `No, there is a ${c2} ${s2}.`);
    }
  }
  return lines;
}

const corpus = shapeCorpus(2860, 7); // 5k lines
const dir = await Deno.makeTempDir({ prefix: "asvr_train_bpe_test_" });
globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));
// The default vocabSize (512) is more than this corpus fills: training stops when no pair occurs twice.
await writeBpeTokenizer(dir, corpus);
const tok = await TextTokenizer.load(dir);

/** The ids of vocabulary tokens written as token strings. */
function ids(...tokens: string[]): number[] {
  return tokens.map((t) => {
    const id = tok.tokenToId(t);
    assert.ok(id !== undefined, `token ${JSON.stringify(t)} is not in the vocabulary`);
    return id;
  });
}

Deno.test("the written folder loads with the Llama-2 special and byte tokens", async () => {
  assert.deepEqual((await Array.fromAsync(Deno.readDir(dir))).map((e) => e.name).sort(), [
    "tokenizer.json",
    "tokenizer_config.json",
  ]);
  assert.ok(tok.vocabSize > 300 && tok.vocabSize < 512, `vocabSize ${tok.vocabSize}`);
  assert.deepEqual([tok.unkId, tok.bosId, tok.eosId, tok.padId], [0, 1, 2, 0]);
  assert.deepEqual(ids("<unk>", "<s>", "</s>", "<0x00>", "<0x0A>", "<0xFF>"), [0, 1, 2, 3, 13, 258]);
  assert.equal(tok.defaultAddBos, true);
  assert.equal(tok.defaultAddEos, false);
  const cfg = JSON.parse(await Deno.readTextFile(`${dir}/tokenizer_config.json`));
  assert.equal(cfg.add_bos_token, true);
  assert.equal(cfg.pad_token, null);
  assert.equal(cfg.legacy, true);
  assert.equal(cfg.model_max_length, 2048);
  assert.equal(cfg.eos_token.content, "</s>");
});

Deno.test("every corpus line round-trips, with <s> first and no <unk>", () => {
  for (const line of [...corpus, " two  spaces ", "\ttab and\nnewline", ""]) {
    const got = tok.encode(line);
    assert.equal(got[0], 1, JSON.stringify(line));
    assert.ok(!got.includes(0), `${JSON.stringify(line)} encodes to <unk>`);
    assert.equal(tok.decode(got, { skipSpecial: true }), line);
  }
});

Deno.test("frequent words are single tokens; every corpus character is in the vocabulary", () => {
  // Training ran until no pair occurred twice, so every word seen twice is one token.
  const seen = new Map<string, number>();
  for (const w of corpus.join(" ").split(" ")) seen.set(w, (seen.get(w) ?? 0) + 1);
  for (const [w, n] of seen) {
    if (n >= 2) assert.deepEqual(tok.encode(w, { addBos: false }), ids(`▁${w}`), w);
  }
  for (const w of [...COLORS, ...SHAPES]) assert.ok(seen.get(w)! >= 2, w);
  assert.deepEqual(tok.encode("The red circle", { addBos: false }), ids("▁The", "▁red", "▁circle"));
  for (const c of new Set(corpus.join("").replaceAll(" ", "▁") + "▁")) {
    assert.ok(tok.tokenToId(c) !== undefined, `character ${JSON.stringify(c)} is not a token`);
  }
  // Byte tokens only for characters outside the vocabulary.
  for (const id of tok.encode(corpus.slice(0, 200).join(" "))) assert.ok(id < 3 || id > 258, `id ${id}`);
});

Deno.test("unseen text encodes through byte fallback and decodes back", () => {
  const text = "Zebra ünïcödé 日本 🦙 Q#@!";
  const got = tok.encode(text, { addBos: false });
  assert.ok(!got.includes(0));
  // "é" (U+00E9) is not in the corpus: its UTF-8 bytes C3 A9.
  const e = ids("<0xC3>", "<0xA9>");
  assert.ok(got.some((id, i) => id === e[0] && got[i + 1] === e[1]));
  // "🦙" is four bytes, F0 9F A6 99.
  const llama = ids("<0xF0>", "<0x9F>", "<0xA6>", "<0x99>");
  assert.ok(got.some((_, i) => llama.every((id, j) => got[i + j] === id)));
  assert.equal(tok.decode(got), text);
});

Deno.test("BPE merges by hand: the most frequent pair, ties by token order, stop below two", () => {
  // Words: "▁ab" x3, "▁abc" x1. Pairs: (▁,a) 4, (a,b) 4, (b,c) 1: the tie goes to (a,b) since
  // "a" < "▁". Then (▁,ab) 4; then (▁ab,c) occurs once, so training stops.
  const { tokenizerJson } = trainBpeTokenizer(["ab ab", "ab abc"], { vocabSize: 1000 });
  const model = tokenizerJson.model as { vocab: Record<string, number>; merges: string[] };
  assert.deepEqual(model.merges, ["a b", "▁ ab"]);
  const vocab = Object.entries(model.vocab).sort((x, y) => x[1] - y[1]).map(([t]) => t);
  assert.deepEqual(vocab.slice(0, 4), ["<unk>", "<s>", "</s>", "<0x00>"]);
  assert.deepEqual(vocab.slice(259), ["a", "b", "c", "▁", "ab", "▁ab"]);
  // vocabSize caps the merges: one token above the 263 base tokens.
  const capped = trainBpeTokenizer(["ab ab", "ab abc"], { vocabSize: 264 }).tokenizerJson.model as {
    merges: string[];
  };
  assert.deepEqual(capped.merges, ["a b"]);
  // Special tokens in a line are split out as encoding does: "x</s>x" is two words "▁x".
  const split = trainBpeTokenizer(["x</s>x"], { vocabSize: 300 }).tokenizerJson.model as {
    vocab: Record<string, number>;
    merges: string[];
  };
  assert.deepEqual(split.merges, ["▁ x"]);
  assert.equal(split.vocab["/"], undefined);
});

Deno.test("no merge spells a byte token, so text that looks like one round-trips", () => {
  const line = "a<0x41> b<0x41> c<0x41> d<0x41>";
  const files = trainBpeTokenizer([line, line], { vocabSize: 1000 });
  const model = files.tokenizerJson.model as { merges: string[] };
  assert.ok(model.merges.length > 10);
  assert.ok(!model.merges.includes("<0x4 1>") && !model.merges.some((m) => m.replace(" ", "") === "<0x41>"));
  const t = TextTokenizer.fromJson(files.tokenizerJson, files.tokenizerConfig);
  assert.equal(t.decode(t.encode(line), { skipSpecial: true }), line);
});

Deno.test("vocabSize caps the vocabulary; modelMaxLength sets model_max_length", () => {
  const { tokenizerJson, tokenizerConfig } = trainBpeTokenizer(corpus, {
    vocabSize: 400,
    modelMaxLength: 256,
  });
  const model = tokenizerJson.model as { vocab: Record<string, number>; merges: string[] };
  const vocab = Object.values(model.vocab).sort((a, b) => a - b);
  assert.deepEqual(vocab, [...Array(400).keys()]);
  assert.equal(tokenizerConfig.model_max_length, 256);
  // Every merge's result is a token (and its parts are too).
  for (const m of model.merges) {
    const [l, r] = m.split(" ");
    for (const t of [l, r, l + r]) assert.ok(model.vocab[t] !== undefined, `${m}: ${t}`);
  }
  const small = TextTokenizer.fromJson(tokenizerJson, tokenizerConfig);
  assert.equal(small.vocabSize, 400);
  for (const line of corpus.slice(0, 300)) {
    assert.equal(small.decode(small.encode(line), { skipSpecial: true }), line);
  }
});

Deno.test("training is deterministic and independent of line order", () => {
  const lines = corpus.slice(0, 1000);
  const a = JSON.stringify(trainBpeTokenizer(lines, { vocabSize: 350 }));
  const r = rng(3);
  const shuffled = lines.map((l) => [r(), l] as const).sort((x, y) => x[0] - y[0]).map(([, l]) => l);
  assert.notDeepEqual(shuffled, lines);
  assert.equal(JSON.stringify(trainBpeTokenizer(lines, { vocabSize: 350 })), a);
  assert.equal(JSON.stringify(trainBpeTokenizer(shuffled, { vocabSize: 350 })), a);
});

Deno.test("trains on ~5k lines in well under a few seconds", () => {
  const lines = shapeCorpus(2860, 11);
  const t0 = performance.now();
  trainBpeTokenizer(lines, { vocabSize: 512 });
  const ms = performance.now() - t0;
  assert.ok(ms < 2000, `training took ${ms.toFixed(0)} ms`);
});

/** A checked LLaVA row with an image. */
const row = (conversations: [string, string][]) =>
  parseLlavaRow(
    { id: "r1", image: "a.png", conversations: conversations.map(([from, value]) => ({ from, value })) },
    "data/x.json",
    0,
  );

/** The supervised ids of a template's labels, checked equal to the ids they label. */
function supervised(t: { ids: number[]; labels: number[] }): number[] {
  return t.ids.filter((id, i) => {
    if (t.labels[i] === IGNORE_INDEX) return false;
    assert.equal(t.labels[i], id);
    return true;
  });
}

Deno.test("vicuna_v1 labels supervise exactly the answers and their </s>", () => {
  const t = applyTemplate(
    row([
      ["human", "<image>\nWhat color is the circle?"],
      ["gpt", "The circle is red."],
      ["human", "How many shapes are there?"],
      ["gpt", "There are 3 shapes."],
    ]),
    "vicuna_v1",
    tok,
  );
  const sup = supervised(t);
  const cut = sup.indexOf(2);
  assert.ok(cut > 0);
  assert.equal(tok.decode(sup.slice(0, cut + 1)), "The circle is red.</s>");
  assert.equal(tok.decode(sup.slice(cut + 1)), "There are 3 shapes.</s>");
  assert.equal(sup.at(-1), 2);
  assert.equal(sup.filter((id) => id === 2).length, 2);
});

Deno.test("plain labels supervise exactly the caption and its newline", () => {
  const caption = "A small red circle above a blue square.";
  const t = applyTemplate(row([["human", "<image>"], ["gpt", caption]]), "plain", tok);
  assert.equal(t.ids[0], 1);
  assert.equal(tok.decode(supervised(t)), caption + "\n");
});

Deno.test("options and lines are validated, errors naming them", async () => {
  const lines = ["a b c"];
  const bad: [unknown, unknown, RegExp][] = [
    [
      lines,
      { vocabSize: 100 },
      /trainBpeTokenizer: options\.vocabSize: Too small: expected number to be >=260 \(got 100\)/,
    ],
    [lines, { vocabSize: 300.5 }, /options\.vocabSize: .*expected int.*\(got 300\.5\)/],
    [lines, { modelMaxLength: 0 }, /options\.modelMaxLength: Too small: expected number to be >0 \(got 0\)/],
    [
      lines,
      { vocab_size: 300 },
      /options\.vocab_size: unknown field; allowed fields: vocabSize, modelMaxLength/,
    ],
    ["a b c", {}, /trainBpeTokenizer: lines: .*expected array, received string \(got "a b c"\)/],
    [["a", "b", 3], {}, /trainBpeTokenizer: lines\[2\]: .*expected string, received number \(got 3\)/],
    [["a", "\ud800"], {}, /lines\[1\] holds a lone UTF-16 surrogate/],
    [["", "<s>"], {}, /the corpus has no text/],
    [
      [...corpus.slice(0, 10), "日本語のテキスト"],
      { vocabSize: 270 },
      /options\.vocabSize: 270 is below the \d+ tokens the corpus needs/,
    ],
  ];
  for (const [l, o, re] of bad) {
    assert.throws(() => trainBpeTokenizer(l as string[], o as { vocabSize?: number }), re);
  }
  await assert.rejects(
    writeBpeTokenizer(`${dir}/never`, lines, { vocabSize: 1 }),
    /options\.vocabSize: .*\(got 1\)/,
  );
  await assert.rejects(Deno.stat(`${dir}/never`), Deno.errors.NotFound);
});
