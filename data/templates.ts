/**
 * Conversation templates: how a LLaVA row becomes one token sequence with its labels, as the
 * reference training code builds them (ASVR_SPEC.md section 5).
 *
 * - `plain` (stage 1, captions): `<s>` + image + caption + `\n`; the human turn's text is dropped and
 *   only the caption and the newline are supervised.
 * - `vicuna_v1` (stage 2, instructions): the system prompt, a space, then per turn
 *   `USER: {q} ASSISTANT: {a}</s>` (the first question starts with `<image>\n` in an image row); only
 *   the answers and their `</s>` are supervised.
 *
 * Token ids are those of the reference's tokenizer: Vicuna v1.5's slow SentencePiece tokenizer with
 * `legacy: false` (its `tokenizer_config.json`), whatever the layout of the `tokenizer.json` at hand.
 * That tokenizer puts a `▁` before the start of a text but none before the text right after a special
 * token, so the round separator `</s>USER` is `</s>`, `USER` (2, 11889). A `tokenizer.json` with
 * Llama-2's `Prepend("▁")` normalizer (the layout of `meta-llama/Llama-2-7b-hf`'s file) gives every
 * piece after a special token its own `▁` (`</s>`, `▁US`, `ER`: 2, 3148, 1001); one converted with
 * `legacy: false` (a `Metaspace` pre-tokenizer that prepends only to the first piece) agrees with the
 * slow one. Here the text after a special token is encoded behind an anchor that no merge crosses
 * (`\n`, a byte token in Llama's vocabulary) and the anchor's tokens are dropped, which gives the slow
 * tokenizer's ids with either layout.
 *
 * The whole prompt text is split at the `<image>` marker, each piece is encoded on its own with `<s>`
 * first, and the pieces are joined with one image placeholder ({@linkcode IMAGE_TOKEN_ID}) and without
 * their own `<s>`s (the reference's `tokenizer_image_token`). The `vicuna_v1` labels are masked by the
 * reference's round arithmetic: the prompt is split into rounds at `</s>`, each round into instruction
 * and answer at ` ASSISTANT: `; a round advances by the length of the round encoded on its own (its
 * `<s>` standing in for its `</s>`), and its instruction's mask is that of the instruction encoded on
 * its own, less 2 (its `<s>` and the lone `▁` that ` ASSISTANT: `'s trailing space becomes on its own,
 * and that joins the answer's first word in the full text). Every round after the first is one token
 * shorter in the full text than on its own (`USER` against `▁US`, `ER`), and the reference takes that
 * token off its length and its instruction's; here the correction is measured once per tokenizer on the
 * role name, which gives the reference's 1 for Vicuna's vocabulary.
 *
 * When the rounds still do not add up to the sequence's length (a value holding `</s>` or
 * ` ASSISTANT: ` as text, or text whose tokens merge across the joins), the reference masks every text
 * label of the row, prints a warning and trains on it anyway (its visual loss still counts); so does
 * this module, and it says so in {@linkcode TemplateTokens.roundMismatch} for the caller to count and
 * report. (The reference skips that check when the rounds reach `model_max_length`; here a row that long
 * is masked as well.)
 * @module
 */

import { IGNORE_INDEX } from "../core/labels.ts";
import type { TextTokenizer } from "../tokenizers/text_tokenizer.ts";
import { DataRowError, IMAGE_MARKER, type LlavaRow } from "./llava_json.ts";

/** The conversation templates: `plain` (stage 1 captions) and `vicuna_v1` (stage 2 instructions). */
export type TemplateName = "plain" | "vicuna_v1";

/** Every {@linkcode TemplateName}. */
export const TEMPLATE_NAMES: readonly TemplateName[] = ["plain", "vicuna_v1"];

/** The token id that stands for the image in a sequence before it is widened to its N positions. */
export const IMAGE_TOKEN_ID: number = -200;

/** The system prompt of `vicuna_v1`. */
export const VICUNA_V1_SYSTEM: string =
  "A chat between a curious user and an artificial intelligence assistant. " +
  "The assistant gives helpful, detailed, and polite answers to the user's questions.";

/** The role names of `vicuna_v1`'s turns. */
const VICUNA_ROLES = { human: "USER", gpt: "ASSISTANT" } as const;
/** What ends a user turn in `vicuna_v1`. */
const VICUNA_SEP = " ";
/** What ends an assistant turn in `vicuna_v1`. */
const VICUNA_SEP2 = "</s>";
/** What ends a caption in `plain`. */
const PLAIN_SEP = "\n";

/** The tokenizer methods and ids the templates use. */
export type TemplateTokenizer = Pick<TextTokenizer, "encode" | "bosId" | "eosId" | "unkId" | "idToToken">;

/** A row as one token sequence, the image still one placeholder. */
export interface TemplateTokens {
  /** Token ids, with {@linkcode IMAGE_TOKEN_ID} where the image goes (at most once). */
  ids: number[];
  /** Labels in HF convention (-100 = not supervised; the loss shifts them), one per id. */
  labels: number[];
  /**
   * Set when the `vicuna_v1` rounds did not add up to the sequence: `rounds` is where the round
   * arithmetic ended, `tokens` the sequence's length (the reference's warning "tokenization mismatch:
   * rounds vs. tokens"). Every label is then -100, as the reference masks such a row; the row still
   * trains the visual loss. Absent otherwise.
   */
  roundMismatch?: { rounds: number; tokens: number };
}

/**
 * The prompt text a template makes of a row (the reference's `get_prompt`), with the `<image>` marker
 * still in it. `plain`: `<image>` + caption + `\n`; `vicuna_v1`: system, then
 * `USER: {q} ASSISTANT: {a}</s>` per round.
 */
export function templatePrompt(row: LlavaRow, template: TemplateName): string {
  switch (template) {
    case "plain":
      plainCheck(row);
      return IMAGE_MARKER + row.conversations[1].value + PLAIN_SEP;
    case "vicuna_v1":
      return VICUNA_V1_SYSTEM + VICUNA_SEP + row.conversations
        .map((t, j) => `${VICUNA_ROLES[t.from]}: ${t.value}${j % 2 === 0 ? VICUNA_SEP : VICUNA_SEP2}`)
        .join("");
    default: {
      const never: never = template;
      throw new Error(`unknown template ${JSON.stringify(never)}; use one of ${TEMPLATE_NAMES.join(", ")}`);
    }
  }
}

/**
 * The prompt that asks a trained model for an answer, ending where the template's answer begins:
 * `vicuna_v1`: system, ` USER: <image>\n{text} ASSISTANT:`; `plain`: `<image>{text}`. The `<image>`
 * marker is left out for a question without an image.
 */
export function generationPrompt(text: string, hasImage: boolean, template: TemplateName): string {
  const image = hasImage ? IMAGE_MARKER : "";
  switch (template) {
    case "plain":
      return image + text;
    case "vicuna_v1":
      return `${VICUNA_V1_SYSTEM}${VICUNA_SEP}${VICUNA_ROLES.human}: ${hasImage ? image + "\n" : ""}${text}` +
        `${VICUNA_SEP}${VICUNA_ROLES.gpt}:`;
    default: {
      const never: never = template;
      throw new Error(`unknown template ${JSON.stringify(never)}; use one of ${TEMPLATE_NAMES.join(", ")}`);
    }
  }
}

/** The bos id, or an error saying the templates need one. */
function bosOf(tok: TemplateTokenizer): number {
  if (tok.bosId === undefined) {
    throw new Error(
      "the plain and vicuna_v1 templates need a tokenizer with a BOS token (<s>); name bos_token in tokenizer_config.json",
    );
  }
  return tok.bosId;
}

/** Encoding options for a piece of text: no `<s>`, no `</s>`. */
const BARE = { addBos: false, addEos: false } as const;

/**
 * What no merge crosses: a newline, which Llama's vocabularies hold only as the byte token `<0x0A>`.
 * Text encoded right behind it is encoded as it is right after a special token by the slow tokenizer.
 */
const ANCHOR = "\n";

/** What {@linkcode encodeText} needs of a tokenizer, worked out once per tokenizer. */
interface SlowLayout {
  /** The special tokens' texts (`<s>`, `</s>`, `<unk>`) and their ids. */
  specials: Map<string, number>;
  /** Splits a text at the special tokens, keeping them (null: the tokenizer has none). */
  split: RegExp | null;
  /** The ids of {@linkcode ANCHOR} at a text's start. */
  anchor: number[];
}

const layouts = new WeakMap<TemplateTokenizer, SlowLayout>();

/** The {@linkcode SlowLayout} of a tokenizer. */
function slowLayout(tokenizer: TemplateTokenizer): SlowLayout {
  let layout = layouts.get(tokenizer);
  if (!layout) {
    const specials = new Map<string, number>();
    for (const id of [tokenizer.bosId, tokenizer.eosId, tokenizer.unkId]) {
      const text = id === undefined ? undefined : tokenizer.idToToken(id);
      if (text) specials.set(text, id!);
    }
    // Longest first, so that no special token's text is cut by a shorter one.
    const alternatives = [...specials.keys()].sort((a, b) => b.length - a.length)
      .map((t) => t.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
    layout = {
      specials,
      split: alternatives.length ? new RegExp(`(${alternatives.join("|")})`) : null,
      anchor: tokenizer.encode(ANCHOR, BARE),
    };
    layouts.set(tokenizer, layout);
  }
  return layout;
}

/**
 * The ids of text that follows a special token, as the slow tokenizer with `legacy: false` encodes it:
 * without a `▁` of its own. It is encoded behind {@linkcode ANCHOR}, whose tokens are then dropped; a
 * tokenizer whose tokens do merge across the anchor encodes the text as it would at a text's start.
 */
function encodeContinuation(text: string, tokenizer: TemplateTokenizer, anchor: number[]): number[] {
  const ids = tokenizer.encode(ANCHOR + text, BARE);
  const clean = anchor.length > 0 && ids.length >= anchor.length && anchor.every((id, i) => ids[i] === id);
  return clean ? ids.slice(anchor.length) : tokenizer.encode(text, BARE);
}

/**
 * Token ids of a text (no `<s>`) as Vicuna v1.5's slow tokenizer with `legacy: false` makes them:
 * special tokens written in the text (`<s>`, `</s>`, `<unk>`) become their ids, the text before the
 * first one is encoded as a text's start (with a leading `▁`), and the text after each one as a
 * continuation, without a `▁` of its own (`</s>USER` -> 2, 11889).
 */
function encodeText(text: string, tokenizer: TemplateTokenizer): number[] {
  const { specials, split, anchor } = slowLayout(tokenizer);
  const out: number[] = [];
  // Text and special tokens alternate: text, special, text, ..., text.
  (split ? text.split(split) : [text]).forEach((part, i) => {
    if (i % 2 === 1) out.push(specials.get(part)!);
    else if (part !== "") {
      out.push(...(i === 0 ? tokenizer.encode(part, BARE) : encodeContinuation(part, tokenizer, anchor)));
    }
  });
  return out;
}

/**
 * Token ids of a prompt with the `<image>` marker (the reference's `tokenizer_image_token`): each
 * piece between markers is encoded with `<s>` first; the result is one `<s>`, then the pieces without
 * their `<s>`, joined by {@linkcode IMAGE_TOKEN_ID}. Each piece is encoded as the reference's tokenizer
 * does (see the module's documentation): `"</s>USER"` gives `[1, 2, 11889]` with Vicuna's vocabulary.
 */
export function tokenizeWithImage(prompt: string, tokenizer: TemplateTokenizer): number[] {
  const out = [bosOf(tokenizer)];
  prompt.split(IMAGE_MARKER).forEach((piece, i) => {
    if (i > 0) out.push(IMAGE_TOKEN_ID);
    out.push(...encodeText(piece, tokenizer));
  });
  return out;
}

const shifts = new WeakMap<TemplateTokenizer, number>();

/**
 * How many tokens longer a `vicuna_v1` round after the first is on its own than in the full text: its
 * role name `USER` at a text's start against right after `</s>` (1 for Vicuna's vocabulary: `▁US`,
 * `ER` against `USER`, the reference's correction). Measured once per tokenizer.
 */
function roundShift(tokenizer: TemplateTokenizer): number {
  let shift = shifts.get(tokenizer);
  if (shift === undefined) {
    const eos = tokenizer.eosId === undefined ? undefined : tokenizer.idToToken(tokenizer.eosId);
    if (eos === undefined) {
      throw new Error(
        "the vicuna_v1 template needs a tokenizer with an EOS token (</s>); name eos_token in tokenizer_config.json",
      );
    }
    const role = `${VICUNA_ROLES.human}:`;
    shift = tokenizeWithImage(role, tokenizer).length - (tokenizeWithImage(eos + role, tokenizer).length - 1);
    shifts.set(tokenizer, shift);
  }
  return shift;
}

/** The plain template takes image rows of one caption (the reference asserts the same). */
function plainCheck(row: LlavaRow): void {
  if (row.image === undefined) {
    throw new DataRowError(row.file, row.index, row.id, "the plain template needs an image in every row");
  }
  if (row.conversations.length !== 2) {
    throw new DataRowError(
      row.file,
      row.index,
      row.id,
      `the plain template takes one caption (2 turns), got ${row.conversations.length} turns`,
    );
  }
}

/**
 * A row as token ids and labels under a template, the image as one {@linkcode IMAGE_TOKEN_ID}
 * placeholder (label -100). See the module's documentation for the exact reference behaviour; throws a
 * {@linkcode DataRowError} for a row the template cannot take, and masks every label of a `vicuna_v1`
 * row whose rounds do not line up ({@linkcode TemplateTokens.roundMismatch}).
 */
export function applyTemplate(
  row: LlavaRow,
  template: TemplateName,
  tokenizer: TemplateTokenizer,
): TemplateTokens {
  const prompt = templatePrompt(row, template);
  const ids = tokenizeWithImage(prompt, tokenizer);
  const labels = ids.slice();
  let roundMismatch: TemplateTokens["roundMismatch"];
  switch (template) {
    case "plain": {
      // Everything up to and including the image (<s>, image) is unsupervised.
      labels.fill(IGNORE_INDEX, 0, tokenizeWithImage(IMAGE_MARKER, tokenizer).length);
      break;
    }
    case "vicuna_v1": {
      const sep = `${VICUNA_SEP}${VICUNA_ROLES.gpt}: `;
      const shift = roundShift(tokenizer);
      let cur = 1; // <s>
      labels[0] = IGNORE_INDEX;
      const rounds = prompt.split(VICUNA_SEP2);
      for (let i = 0; i < rounds.length; i++) {
        const round = rounds[i];
        if (round === "") break;
        const parts = round.split(sep);
        if (parts.length !== 2) break;
        let roundLen = tokenizeWithImage(round, tokenizer).length;
        let instructionLen = tokenizeWithImage(parts[0] + sep, tokenizer).length - 2;
        if (i !== 0) {
          roundLen -= shift;
          instructionLen -= shift;
        }
        labels.fill(IGNORE_INDEX, cur, Math.min(cur + instructionLen, labels.length));
        cur += roundLen;
      }
      labels.fill(IGNORE_INDEX, Math.min(cur, labels.length));
      if (cur !== ids.length) {
        labels.fill(IGNORE_INDEX);
        roundMismatch = { rounds: cur, tokens: ids.length };
      }
      break;
    }
    default: {
      const never: never = template;
      throw new Error(`unknown template ${JSON.stringify(never)}; use one of ${TEMPLATE_NAMES.join(", ")}`);
    }
  }
  ids.forEach((id, t) => {
    if (id === IMAGE_TOKEN_ID) labels[t] = IGNORE_INDEX;
  });
  return roundMismatch ? { ids, labels, roundMismatch } : { ids, labels };
}
