/**
 * Scoring of evaluation answers by question type: `open` answers by exact match after VQA-style
 * normalization, `choice` answers by the option picked (a letter or the option's text), `yesno`
 * answers by their first yes/no word, with POPE's figures ("yes" is the positive class).
 * Aggregates per type, per category and overall.
 * @module
 */

import type { Question, QuestionType } from "./questions.ts";

/** Number words that normalization turns into digits. */
const NUMBER_WORDS: Record<string, string> = {
  zero: "0",
  one: "1",
  two: "2",
  three: "3",
  four: "4",
  five: "5",
  six: "6",
  seven: "7",
  eight: "8",
  nine: "9",
  ten: "10",
};

/** Words that normalization drops. */
const ARTICLES = new Set(["a", "an", "the"]);

/**
 * VQA-style normalization of a short answer: lowercase; thousands separators and apostrophes
 * removed ("1,000" -> "1000", "don't" -> "dont"); a period stays only between two digits ("3.5"),
 * every other punctuation mark becomes a space; the articles a, an, the dropped; the number words
 * zero..ten become digits; whitespace collapsed to single spaces, trimmed.
 *
 * @example
 * ```ts
 * normalizeAnswer("The Two dogs."); // "2 dogs"
 * normalizeAnswer("3.5 m/s"); // "3.5 m s"
 * ```
 */
export function normalizeAnswer(text: string): string {
  const s = text.toLowerCase()
    .replace(/(\d),(?=\d)/g, "$1")
    .replace(/['\u2018\u2019`]/g, "")
    .replace(/\.(?!\d)|(?<!\d)\./g, " ")
    .replace(/[^\p{L}\p{N}\s.]/gu, " ");
  return s.split(/\s+/)
    .filter((w) => w !== "" && !ARTICLES.has(w))
    .map((w) => NUMBER_WORDS[w] ?? w)
    .join(" ");
}

/** The letter of option i: 0 -> "A". */
export function choiceLetter(i: number): string {
  return String.fromCharCode(65 + i);
}

/**
 * The option a text picks among `choices` (0-based), or null: first a letter in one of the forms
 * "B", "b", "(B)", "B.", "B)", "B:" (the last three may be followed by more text: "B. a cat"), in
 * range; else the option whose text equals it after {@linkcode normalizeAnswer} (the first, if two do).
 *
 * @example
 * ```ts
 * parseChoice("(B)", ["cat", "dog"]); // 1
 * parseChoice("A dog.", ["cat", "dog"]); // 1 ("a" is an article, not a letter)
 * ```
 */
export function parseChoice(text: string, choices: readonly string[]): number | null {
  const t = text.trim();
  const m = /^\(([A-Za-z])\)/.exec(t) ?? /^([A-Z])[.):](?:\s|$)/.exec(t) ?? /^([A-Za-z])$/.exec(t);
  if (m) {
    const i = m[1].toUpperCase().charCodeAt(0) - 65;
    return i < choices.length ? i : null;
  }
  const norm = normalizeAnswer(t);
  if (norm === "") return null;
  const i = choices.findIndex((c) => normalizeAnswer(c) === norm);
  return i >= 0 ? i : null;
}

/** A yes/no reading of a text. */
export type YesNo = "yes" | "no";

/**
 * The first word "yes" or "no" of a text (after {@linkcode normalizeAnswer}), or null when it has
 * neither: "Yes, there is." -> "yes", "There is no dog." -> "no", "Not sure." -> null.
 */
export function parseYesNo(text: string): YesNo | null {
  for (const w of normalizeAnswer(text).split(" ")) {
    if (w === "yes" || w === "no") return w;
  }
  return null;
}

/** One question's prediction, scored. JSON-serialisable. */
export interface ScoredAnswer {
  /** The question's id. */
  id: string;
  /** The question's type. */
  type: QuestionType;
  /** The question's category, null when it has none. */
  category: string | null;
  /** The model's raw answer. */
  prediction: string;
  /**
   * What was read from the prediction: the normalized text (`open`), the option's letter or null
   * (`choice`), "yes", "no" or null (`yesno`).
   */
  parsed: string | null;
  /** The expected answer in the same form as `parsed`. */
  expected: string;
  /** Whether `parsed` equals `expected`. */
  correct: boolean;
}

/**
 * The expected answer of a question in scored form (see {@linkcode ScoredAnswer.expected}); throws
 * when it cannot be read (`parseQuestions` refuses such questions).
 */
export function expectedAnswer(q: Question): string {
  switch (q.type) {
    case "open":
      return normalizeAnswer(q.answer);
    case "choice": {
      const i = parseChoice(q.answer, q.choices ?? []);
      if (i === null) {
        throw new Error(`question ${q.id}: answer ${JSON.stringify(q.answer)} is not one of its choices`);
      }
      return choiceLetter(i);
    }
    case "yesno": {
      const a = parseYesNo(q.answer);
      if (a === null) {
        throw new Error(`question ${q.id}: answer ${JSON.stringify(q.answer)} is not yes or no`);
      }
      return a;
    }
    default: {
      const never: never = q.type;
      throw new Error(`unknown question type ${never}`);
    }
  }
}

/** Scores one prediction against its question. */
export function scoreAnswer(q: Question, prediction: string): ScoredAnswer {
  const expected = expectedAnswer(q);
  let parsed: string | null;
  switch (q.type) {
    case "open":
      parsed = normalizeAnswer(prediction);
      break;
    case "choice": {
      const i = parseChoice(prediction, q.choices ?? []);
      parsed = i === null ? null : choiceLetter(i);
      break;
    }
    case "yesno":
      parsed = parseYesNo(prediction);
      break;
    default: {
      const never: never = q.type;
      throw new Error(`unknown question type ${never}`);
    }
  }
  return {
    id: q.id,
    type: q.type,
    category: q.category ?? null,
    prediction,
    parsed,
    expected,
    correct: parsed !== null && parsed === expected,
  };
}

/**
 * Scores every question against `predictions` (by question id). Throws, naming the ids, when
 * predictions are missing for some questions.
 */
export function scoreAll(
  questions: readonly Question[],
  predictions: ReadonlyMap<string, string>,
): ScoredAnswer[] {
  const missing = questions.filter((q) => !predictions.has(q.id)).map((q) => q.id);
  if (missing.length) {
    const shown = missing.slice(0, 5).map((id) => JSON.stringify(id)).join(", ");
    throw new Error(
      `scoreAll: no prediction for ${missing.length} question(s): ${shown}${
        missing.length > 5 ? ", ..." : ""
      }`,
    );
  }
  return questions.map((q) => scoreAnswer(q, predictions.get(q.id)!));
}

/**
 * POPE's figures over yes/no answers, "yes" the positive class. A prediction with no yes/no word
 * counts as wrong: a false negative when the answer is yes, `noAnswer` when it is no. Ratios with a
 * zero denominator are 0.
 */
export interface PopeStats {
  /** Predicted yes, answer yes. */
  tp: number;
  /** Predicted yes, answer no. */
  fp: number;
  /** Predicted no, answer no. */
  tn: number;
  /** Answer yes, predicted no or nothing. */
  fn: number;
  /** Answer no, predicted nothing. */
  noAnswer: number;
  /** tp / (tp + fp). */
  precision: number;
  /** tp / (tp + fn). */
  recall: number;
  /** 2 precision recall / (precision + recall). */
  f1: number;
  /** (tp + tn) / all. */
  accuracy: number;
  /** (tp + fp) / all: how often the model says yes. */
  yesRatio: number;
}

/** POPE's figures over the `yesno` answers among `answers`. */
export function popeStats(answers: readonly ScoredAnswer[]): PopeStats {
  let tp = 0, fp = 0, tn = 0, fn = 0, noAnswer = 0;
  for (const a of answers) {
    if (a.type !== "yesno") continue;
    if (a.expected === "yes") {
      if (a.parsed === "yes") tp++;
      else fn++;
    } else if (a.parsed === "yes") fp++;
    else if (a.parsed === "no") tn++;
    else noAnswer++;
  }
  const n = tp + fp + tn + fn + noAnswer;
  const ratio = (a: number, b: number) => (b === 0 ? 0 : a / b);
  const precision = ratio(tp, tp + fp), recall = ratio(tp, tp + fn);
  return {
    tp,
    fp,
    tn,
    fn,
    noAnswer,
    precision,
    recall,
    f1: ratio(2 * precision * recall, precision + recall),
    accuracy: ratio(tp + tn, n),
    yesRatio: ratio(tp + fp, n),
  };
}

/** Scores of a group of answers. */
export interface GroupScore {
  /** Answers in the group. */
  n: number;
  /** Correct answers. */
  correct: number;
  /** correct / n (0 for an empty group). */
  accuracy: number;
  /** POPE's figures over the group's yes/no answers; absent when it has none. */
  pope?: PopeStats;
}

/** Scores overall, per question type and per category. JSON-serialisable. */
export interface EvalSummary {
  /** Every answer. */
  overall: GroupScore;
  /** Per question type, for the types present. */
  byType: Partial<Record<QuestionType, GroupScore>>;
  /** Per category (sorted by name), for the answers that have one. */
  byCategory: Record<string, GroupScore>;
}

/** The {@linkcode GroupScore} of some answers. */
export function groupScore(answers: readonly ScoredAnswer[]): GroupScore {
  const n = answers.length, correct = answers.filter((a) => a.correct).length;
  const g: GroupScore = { n, correct, accuracy: n === 0 ? 0 : correct / n };
  if (answers.some((a) => a.type === "yesno")) g.pope = popeStats(answers);
  return g;
}

/** Aggregates scored answers overall, per type (in the order open, choice, yesno) and per category. */
export function summarize(answers: readonly ScoredAnswer[]): EvalSummary {
  const byType: Partial<Record<QuestionType, GroupScore>> = {};
  for (const t of ["open", "choice", "yesno"] as const) {
    const of = answers.filter((a) => a.type === t);
    if (of.length) byType[t] = groupScore(of);
  }
  const cats = [...new Set(answers.map((a) => a.category).filter((c) => c !== null))].sort();
  const byCategory = Object.fromEntries(
    cats.map((c) => [c, groupScore(answers.filter((a) => a.category === c))]),
  );
  return { overall: groupScore(answers), byType, byCategory };
}
