/**
 * Evaluation of a trained model on a questions file (eval/questions.ts): each question becomes a
 * generation prompt in the run's chat template (open and yes/no questions ask for a single word or
 * phrase, multiple-choice ones list the options and ask for the letter, as LLaVA's evaluation does),
 * the answer is generated greedily with a KV cache, and the answers are scored by type (exact match,
 * choice, POPE-style yes/no).
 * @module
 */

import type { AsvrBatch, AsvrModel } from "../models/asvr_model.ts";
import type { TextTokenizer } from "../tokenizers/text_tokenizer.ts";
import { generateGreedy } from "../backbones/generate.ts";
import { generationPrompt, IMAGE_TOKEN_ID, type TemplateName, tokenizeWithImage } from "../data/templates.ts";
import { readImage } from "../data/image.ts";
import { resolveImagePath } from "../data/image_path.ts";
import { type ImagePreprocessConfig, preprocess } from "../data/preprocess.ts";
import { choiceLetter, scoreAll } from "../eval/score.ts";
import { buildReport, type EvalReport } from "../eval/report.ts";
import type { Question } from "../eval/questions.ts";

/** Options of {@linkcode evaluate}. */
export interface EvaluateOptions {
  /** The chat template of the prompts. */
  template: TemplateName;
  /**
   * Folder that questions' `image` paths are relative to (a run's `train.evalImageRoot`, else the
   * questions file's folder).
   */
  imageRoot: string;
  /** The encoder's preprocessing. */
  image: ImagePreprocessConfig;
  /** Image positions per image (N). */
  imageTokens: number;
  /** Most tokens generated per answer. */
  maxNewTokens: number;
  /** Called after each answer (question index, count, the answer). */
  onAnswer?: (i: number, n: number, answer: string) => void;
}

/** The question text as the model is asked it. */
export function questionPrompt(q: Question): string {
  switch (q.type) {
    case "choice":
      return `${q.question}\n${q.choices!.map((c, i) => `${choiceLetter(i)}. ${c}`).join("\n")}\n` +
        "Answer with the option's letter from the given choices directly.";
    case "open":
    case "yesno":
      return `${q.question}\nAnswer the question using a single word or phrase.`;
    default: {
      const never: never = q.type;
      throw new Error(`unhandled question type ${never}`);
    }
  }
}

/** Generates an answer to every question and scores them; returns the report (summary + answers). */
export async function evaluate(
  model: AsvrModel,
  tokenizer: TextTokenizer,
  questions: Question[],
  opts: EvaluateOptions,
): Promise<EvalReport> {
  const predictions = new Map<string, string>();
  for (const [i, q] of questions.entries()) {
    const hasImage = q.image !== undefined;
    const ids = tokenizeWithImage(generationPrompt(questionPrompt(q), hasImage, opts.template), tokenizer);
    const at = ids.indexOf(IMAGE_TOKEN_ID);
    const N = opts.imageTokens;
    const inputIds = at < 0
      ? ids
      : [...ids.slice(0, at), ...new Array<number>(N).fill(IMAGE_TOKEN_ID), ...ids.slice(at + 1)];
    const batch: AsvrBatch = {
      inputIds: Int32Array.from(inputIds, (id) => Math.max(id, 0)),
      labels: new Int32Array(inputIds.length).fill(-100),
      imagePositions: [at < 0 ? [] : Array.from({ length: N }, (_, k) => at + k)],
      pixels: hasImage
        ? preprocess(await readImage(await resolveImagePath(opts.imageRoot, q.image!)), opts.image)
        : null,
      hasImage: [hasImage],
    };
    const embeds = model.inputsEmbeds(batch);
    const out = await generateGreedy(model.llm, embeds, {
      maxNewTokens: opts.maxNewTokens,
      eosId: tokenizer.eosId ?? null,
    });
    embeds.dispose();
    const answer = tokenizer.decode(out, { skipSpecial: true }).trim();
    predictions.set(q.id, answer);
    opts.onAnswer?.(i, questions.length, answer);
  }
  return buildReport(scoreAll(questions, predictions), {
    questions: questions.length,
    template: opts.template,
  });
}
