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
 * Tokenization follows the reference exactly: the whole prompt text is split at the `<image>` marker,
 * each piece is encoded on its own with `<s>` first, and the pieces are joined with one image
 * placeholder ({@linkcode IMAGE_TOKEN_ID}) and without their own `<s>`s. The `vicuna_v1` labels are
 * masked by the reference's round arithmetic: the prompt is split into rounds at `</s>`, each round into
 * instruction and answer at ` ASSISTANT: `; a round advances by the length of the round encoded on its
 * own (its `<s>` standing in for its `</s>`), and its instruction's mask is that of the instruction
 * encoded on its own, less 2 (its `<s>` and the lone `▁` that ` ASSISTANT: `'s trailing space becomes
 * on its own, and that joins the answer's first word in the full text).
 *
 * The reference then takes one more token off every round after the first when its tokenizer is not
 * "legacy" (Vicuna v1.5's `legacy: false` under recent `transformers`): such a tokenizer adds no `▁`
 * to the text right after a special token, so the full text's `</s>USER` encodes as `USER` (11889)
 * where the round on its own starts `▁US`, `ER` (3148, 1001). Which kind a tokenizer is shows in its
 * behaviour, not in a flag here: a `tokenizer.json` with the Llama-2 `Prepend("▁")` normalizer is
 * legacy (a `▁` after every special token), one with a `Metaspace` pre-tokenizer that prepends only to
 * the first piece is not. This module probes the tokenizer (`</s>a` against `a`) and takes the token
 * off exactly when the tokenizer is not legacy, so the masks line up with both kinds.
 *
 * When the rounds still do not add up to the sequence's length (a value holding `</s>` or
 * ` ASSISTANT: ` as text, or text whose tokens merge across the joins), the reference masks the whole
 * row and trains nothing on it; here that row throws a {@linkcode DataRowError} instead, so that it is
 * seen (and skipped with `data.onError: "skip"`), not silently wasted.
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
export type TemplateTokenizer = Pick<TextTokenizer, "encode" | "bosId" | "eosId">;

/** A row as one token sequence, the image still one placeholder. */
export interface TemplateTokens {
  /** Token ids, with {@linkcode IMAGE_TOKEN_ID} where the image goes (at most once). */
  ids: number[];
  /** Labels in HF convention (-100 = not supervised; the loss shifts them), one per id. */
  labels: number[];
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

/**
 * Token ids of a prompt with the `<image>` marker (the reference's `tokenizer_image_token`): each
 * piece between markers is encoded with `<s>` first; the result is one `<s>`, then the pieces without
 * their `<s>`, joined by {@linkcode IMAGE_TOKEN_ID}.
 */
export function tokenizeWithImage(prompt: string, tokenizer: TemplateTokenizer): number[] {
  const bos = bosOf(tokenizer);
  const out = [bos];
  prompt.split(IMAGE_MARKER).forEach((piece, i) => {
    if (i > 0) out.push(IMAGE_TOKEN_ID);
    const ids = tokenizer.encode(piece, { addBos: true, addEos: false });
    for (let t = 1; t < ids.length; t++) out.push(ids[t]);
  });
  return out;
}

const legacyCache = new WeakMap<TemplateTokenizer, boolean>();

/**
 * Whether the tokenizer is "legacy" in the `transformers` sense: text right after a special token is
 * encoded as if it started the text (with a leading `▁`), so `</s>a` encodes as `</s>` followed by
 * the ids of `a` on its own (`▁a`). Probed once per tokenizer.
 */
export function isLegacyTokenizer(tokenizer: TemplateTokenizer): boolean {
  let legacy = legacyCache.get(tokenizer);
  if (legacy === undefined) {
    const eos = tokenizer.eosId;
    if (eos === undefined) {
      throw new Error(
        "the vicuna_v1 template needs a tokenizer with an EOS token (</s>); name eos_token in tokenizer_config.json",
      );
    }
    const opts = { addBos: false, addEos: false };
    const joined = tokenizer.encode("</s>a", opts);
    const alone = tokenizer.encode("a", opts);
    legacy = joined.length === alone.length + 1 && joined[0] === eos &&
      alone.every((id, i) => joined[i + 1] === id);
    legacyCache.set(tokenizer, legacy);
  }
  return legacy;
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
 * {@linkcode DataRowError} for a row the template cannot take or whose rounds do not line up.
 */
export function applyTemplate(
  row: LlavaRow,
  template: TemplateName,
  tokenizer: TemplateTokenizer,
): TemplateTokens {
  const prompt = templatePrompt(row, template);
  const ids = tokenizeWithImage(prompt, tokenizer);
  const labels = ids.slice();
  switch (template) {
    case "plain": {
      // Everything up to and including the image (<s>, image) is unsupervised.
      labels.fill(IGNORE_INDEX, 0, tokenizeWithImage(IMAGE_MARKER, tokenizer).length);
      break;
    }
    case "vicuna_v1": {
      const sep = `${VICUNA_SEP}${VICUNA_ROLES.gpt}: `;
      const shift = isLegacyTokenizer(tokenizer) ? 0 : 1;
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
        throw new DataRowError(
          row.file,
          row.index,
          row.id,
          `the vicuna_v1 rounds add up to ${cur} tokens but the conversation has ${ids.length} (a value ` +
            `holding "</s>" or " ASSISTANT: " as text, or tokens that merge across turns)`,
        );
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
  return { ids, labels };
}
