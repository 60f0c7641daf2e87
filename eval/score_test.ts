import assert from "node:assert/strict";
import type { Question } from "./questions.ts";
import {
  normalizeAnswer,
  parseChoice,
  parseYesNo,
  popeStats,
  scoreAll,
  scoreAnswer,
  type ScoredAnswer,
  summarize,
} from "./score.ts";

Deno.test("normalizeAnswer: VQA-style lowercase, punctuation, articles, number words, whitespace", () => {
  const cases: [string, string][] = [
    ["The Two dogs.", "2 dogs"],
    ["3.5", "3.5"],
    ["3.5.", "3.5"],
    ["It is 3.5 m/s!", "it is 3.5 m s"],
    [".5", "5"],
    ["1,000 people", "1000 people"],
    ["red, white", "red white"],
    ["Don't", "dont"],
    ["an apple, a pear", "apple pear"],
    ["  TEN\t ", "10"],
    ["zero", "0"],
    ["eleven", "eleven"],
    ["Mr. Smith", "mr smith"],
    ["e.g.", "e g"],
    ["t-shirt", "t shirt"],
    ["theater", "theater"],
    ["A", ""],
    ["Café (left)", "café left"],
  ];
  for (const [input, want] of cases) assert.equal(normalizeAnswer(input), want, JSON.stringify(input));
});

const CHOICES = ["cat", "dog", "bird"];

Deno.test("parseChoice: letters in their forms, option texts, out of range and no match", () => {
  const cases: [string, number | null][] = [
    ["B", 1],
    ["b", 1],
    ["(B)", 1],
    ["(b)", 1],
    ["B.", 1],
    [" B) dog", 1],
    ["C: bird", 2],
    ["D", null], // only A..C
    ["Dog", 1],
    ["A dog.", 1], // "a" is an article here, not a letter
    ["a bird", 2],
    ["Because", null],
    ["B cat", null], // neither a letter form nor an option's text
    ["dogs", null],
    ["", null],
  ];
  for (const [input, want] of cases) assert.equal(parseChoice(input, CHOICES), want, JSON.stringify(input));
});

Deno.test("parseYesNo: the first yes/no word", () => {
  assert.equal(parseYesNo("Yes, there is."), "yes");
  assert.equal(parseYesNo("There is no dog. Yes."), "no");
  assert.equal(parseYesNo("NO."), "no");
  assert.equal(parseYesNo("Not sure"), null);
  assert.equal(parseYesNo("yesterday, nothing"), null);
});

const q = (id: string, type: Question["type"], answer: string, extra: Partial<Question> = {}): Question => ({
  id,
  question: "?",
  answer,
  type,
  ...extra,
});

Deno.test("scoreAnswer: open by normalized exact match, choice by option, yesno by first word", () => {
  const open = q("o", "open", "two");
  assert.equal(scoreAnswer(open, "2.").correct, true);
  assert.equal(scoreAnswer(open, "The Two").correct, true);
  assert.equal(scoreAnswer(open, "The answer is 2").correct, false);
  assert.deepEqual(scoreAnswer(open, "Two dogs"), {
    id: "o",
    type: "open",
    category: null,
    prediction: "Two dogs",
    parsed: "2 dogs",
    expected: "2",
    correct: false,
  });
  const byText = q("c1", "choice", "dog", { choices: CHOICES });
  const byLetter = q("c2", "choice", "(B)", { choices: CHOICES, category: "animals" });
  for (const question of [byText, byLetter]) {
    assert.equal(scoreAnswer(question, "B").correct, true);
    assert.equal(scoreAnswer(question, "dog").correct, true);
    assert.equal(scoreAnswer(question, "A").correct, false);
    assert.equal(scoreAnswer(question, "E").correct, false);
  }
  const s = scoreAnswer(byLetter, "C. bird");
  assert.equal(s.parsed, "C");
  assert.equal(s.expected, "B");
  assert.equal(s.category, "animals");
  const yn = q("y", "yesno", "No");
  assert.equal(scoreAnswer(yn, "No, there is not.").correct, true);
  assert.equal(scoreAnswer(yn, "Yes").correct, false);
  const none = scoreAnswer(yn, "I cannot tell");
  assert.equal(none.parsed, null);
  assert.equal(none.correct, false);
});

/** Ten POPE answers: truth yes x5 (predicted yes, yes, yes, no, nothing), truth no x5 (no, no, no, yes, nothing). */
function popeAnswers(): ScoredAnswer[] {
  const truth = ["yes", "yes", "yes", "yes", "yes", "no", "no", "no", "no", "no"];
  const preds = ["Yes.", "yes", "Yes, it is", "No", "unsure", "no", "No.", "There is no cat", "Yes", "maybe"];
  return truth.map((t, i) =>
    scoreAnswer(q(`p${i}`, "yesno", t, { category: i % 2 ? "odd" : "even" }), preds[i])
  );
}

Deno.test("popeStats: hand-worked precision, recall, F1, accuracy and yes-ratio", () => {
  const s = popeStats(popeAnswers());
  // TP 3, FN 2 (a no and an unparsed answer on yes questions), TN 3, FP 1, one unparsed on a no question.
  assert.deepEqual([s.tp, s.fp, s.tn, s.fn, s.noAnswer], [3, 1, 3, 2, 1]);
  assert.equal(s.precision, 3 / 4);
  assert.equal(s.recall, 3 / 5);
  assert.ok(Math.abs(s.f1 - 2 / 3) < 1e-12, `f1 ${s.f1}`); // 2 * 0.75 * 0.6 / 1.35
  assert.equal(s.accuracy, 6 / 10);
  assert.equal(s.yesRatio, 4 / 10);
  // No yes predictions at all: the zero denominators give 0, not NaN.
  const allNo = popeStats([scoreAnswer(q("n", "yesno", "yes"), "no")]);
  assert.deepEqual([allNo.precision, allNo.recall, allNo.f1, allNo.accuracy, allNo.yesRatio], [
    0,
    0,
    0,
    0,
    0,
  ]);
});

Deno.test("summarize: overall, per type and per category, POPE where there are yes/no answers", () => {
  const answers = [
    ...popeAnswers(),
    scoreAnswer(q("o1", "open", "two", { category: "even" }), "2"),
    scoreAnswer(q("o2", "open", "red"), "blue"),
    scoreAnswer(q("c1", "choice", "A", { choices: CHOICES }), "(A)"),
  ];
  const s = summarize(answers);
  assert.deepEqual(Object.keys(s.byType), ["open", "choice", "yesno"]);
  assert.deepEqual({ ...s.overall, pope: undefined }, {
    n: 13,
    correct: 8,
    accuracy: 8 / 13,
    pope: undefined,
  });
  assert.deepEqual(s.overall.pope, popeStats(answers));
  assert.deepEqual(s.byType.open, { n: 2, correct: 1, accuracy: 0.5 });
  assert.deepEqual(s.byType.choice, { n: 1, correct: 1, accuracy: 1 });
  assert.equal(s.byType.yesno!.accuracy, 0.6);
  assert.deepEqual(Object.keys(s.byCategory), ["even", "odd"]);
  // even: p0 yes/Yes. (TP), p2 yes (TP), p4 yes/unsure (FN), p6 no/No. (TN), p8 no/Yes (FP), o1 correct.
  const even = s.byCategory.even;
  assert.deepEqual([even.n, even.correct], [6, 4]);
  assert.deepEqual([even.pope!.tp, even.pope!.fn, even.pope!.tn, even.pope!.fp], [2, 1, 1, 1]);
  assert.equal(even.pope!.precision, 2 / 3);
  assert.equal(even.pope!.yesRatio, 3 / 5);
  // odd: p1 TP, p3 FN, p5 TN, p7 TN, p9 no answer.
  assert.deepEqual([s.byCategory.odd.n, s.byCategory.odd.correct], [5, 3]);
  assert.deepEqual(summarize([]).overall, { n: 0, correct: 0, accuracy: 0 });
});

Deno.test("scoreAll: predictions by id; missing ones are named", () => {
  const qs = [q("a", "open", "x"), q("b", "yesno", "yes")];
  const got = scoreAll(qs, new Map([["b", "Yes"], ["a", "X"]]));
  assert.deepEqual(got.map((a) => [a.id, a.correct]), [["a", true], ["b", true]]);
  assert.throws(() => scoreAll(qs, new Map([["a", "x"]])), /no prediction for 1 question\(s\): "b"/);
});
