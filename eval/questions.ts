/**
 * The evaluation questions file: a JSON array of questions, each with its expected answer and how
 * that answer is scored (`open`, `choice` or `yesno`).
 *
 * ```json
 * [
 *   { "id": "q1", "image": "images/1.png", "question": "How many dogs?", "answer": "2", "type": "open" },
 *   { "id": "q2", "question": "What color?", "answer": "B", "type": "choice", "choices": ["red", "blue"] },
 *   { "id": "q3", "question": "Is there a cat?", "answer": "no", "type": "yesno", "category": "adversarial" }
 * ]
 * ```
 * @module
 */

import { z } from "zod";
import { readJsonFile } from "../io/json.ts";
import { choiceLetter, parseChoice } from "./score.ts";
import { parseSchema } from "../schema/parse.ts";

/** How a question's answer is scored (see eval/score.ts). */
export type QuestionType = "open" | "choice" | "yesno";

/** Every {@linkcode QuestionType}. */
export const QUESTION_TYPES: readonly QuestionType[] = ["open", "choice", "yesno"];

/** One evaluation question. */
export interface Question {
  /** Unique id (a number in the file is read as its decimal string). */
  id: string;
  /** Path of the image (relative to the questions file's folder, as the caller resolves it); absent: text only. */
  image?: string;
  /** The question put to the model. */
  question: string;
  /** The expected answer: the text (`open`), a letter or an option's text (`choice`), yes or no (`yesno`). */
  answer: string;
  /** How the answer is scored. */
  type: QuestionType;
  /** The options of a `choice` question (2 to 26), lettered A, B, ... in order. */
  choices?: string[];
  /** A group to report separately (e.g. POPE's random / popular / adversarial). */
  category?: string;
}

const text = z.string().trim().min(1);

// `Question` is written out because a published type must be (JSR's no-slow-types: not inferred from a
// schema); the schema is typed by it, so the compiler holds the two together. The rules live here.
const questionSchema: z.ZodType<Question> = z.strictObject({
  id: z.union([text, z.number().int().nonnegative()], {
    error: "must be a non-empty string or an integer >= 0",
  }).transform(String),
  image: text.optional(),
  question: text,
  answer: text,
  type: z.enum(QUESTION_TYPES),
  choices: z.array(text).min(2).max(26).optional(),
  category: text.optional(),
}).superRefine((q, ctx) => {
  const fail = (field: "answer" | "choices", message: string) =>
    ctx.addIssue({ code: "custom", path: [field], message });
  if (q.type === "choice") {
    if (!q.choices) fail("choices", 'a "choice" question needs its options: "choices": ["...", "..."]');
    else if (parseChoice(q.answer, q.choices) === null) {
      const last = choiceLetter(q.choices.length - 1);
      fail("answer", `${JSON.stringify(q.answer)} is neither a letter A..${last} nor the text of a choice`);
    }
  } else if (q.choices) {
    fail("choices", `only "choice" questions have choices; this one is "${q.type}"`);
  }
  if (q.type === "yesno" && !["yes", "no"].includes(q.answer.toLowerCase().replace(/[.!]$/, ""))) {
    fail("answer", `${JSON.stringify(q.answer)}: a "yesno" answer must be "yes" or "no"`);
  }
});

/**
 * Validates a parsed questions file: `json` must be an array of questions. `source` names the file
 * in errors, which also give the question's index (0-based), its id when known and the field, e.g.
 * `questions.json: question 3 (id "q4").choices: ...`, the value found and what is allowed (see
 * `parseSchema`). Besides each field's type: a `choice` question needs `choices` and an answer that is
 * a letter in range or one of the choices; a `yesno` answer must read yes or no; only `choice`
 * questions have `choices`; ids are unique.
 */
export function parseQuestions(json: unknown, source: string): Question[] {
  if (!Array.isArray(json)) {
    throw new Error(`${source}: a questions file must be a JSON array of questions, got ${typeName(json)}`);
  }
  const seen = new Map<string, number>();
  return json.map((item, i) => {
    const rawId = item && typeof item === "object" ? (item as Record<string, unknown>).id : undefined;
    const where = `${source}: question ${i}${
      typeof rawId === "string" || typeof rawId === "number" ? ` (id ${JSON.stringify(String(rawId))})` : ""
    }`;
    if (!item || typeof item !== "object" || Array.isArray(item)) {
      throw new Error(`${where}: must be an object {id, question, answer, type, ...}, got ${typeName(item)}`);
    }
    const q = parseSchema(questionSchema, item, where);
    const before = seen.get(q.id);
    if (before !== undefined) {
      throw new Error(`${where}.id: ${JSON.stringify(q.id)} is also the id of question ${before}`);
    }
    seen.set(q.id, i);
    return q;
  });
}

function typeName(v: unknown): string {
  return v === null ? "null" : Array.isArray(v) ? "an array" : typeof v;
}

/**
 * Reads and validates a questions file (a JSON array, see {@linkcode parseQuestions}); errors name
 * the path.
 *
 * ```ts ignore
 * const questions = await loadQuestions("eval/pope_questions.json");
 * ```
 */
export async function loadQuestions(path: string): Promise<Question[]> {
  const json = await readJsonFile(
    path,
    'a questions file: a JSON array of {"id", "question", "answer", "type", ...}',
  );
  return parseQuestions(json, path);
}
