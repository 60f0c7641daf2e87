import assert from "node:assert/strict";
import type { Question } from "./questions.ts";
import { scoreAnswer } from "./score.ts";
import { buildReport, formatReport } from "./report.ts";

const q = (id: string, type: Question["type"], answer: string, category?: string): Question => ({
  id,
  question: "?",
  answer,
  type,
  ...(category ? { category } : {}),
});

/** Two open answers (one right), four POPE answers in category "random": TP, FP, TN, FN. */
function answers() {
  return [
    scoreAnswer(q("o1", "open", "two"), "2"),
    scoreAnswer(q("o2", "open", "red"), "blue"),
    scoreAnswer(q("y1", "yesno", "yes", "random"), "Yes"),
    scoreAnswer(q("y2", "yesno", "no", "random"), "Yes"),
    scoreAnswer(q("y3", "yesno", "no", "random"), "No"),
    scoreAnswer(q("y4", "yesno", "yes", "random"), "No"),
  ];
}

Deno.test("buildReport: summary, answers and meta survive a JSON round trip", () => {
  const r = buildReport(answers(), { model: "tiny", questions: "q.json", maxNewTokens: 16 });
  assert.deepEqual(JSON.parse(JSON.stringify(r)), r);
  assert.equal(r.answers.length, 6);
  assert.deepEqual([r.summary.overall.n, r.summary.overall.correct], [6, 3]);
  assert.equal(r.summary.byCategory.random.pope!.f1, 0.5);
  assert.equal(r.meta.model, "tiny");
});

Deno.test("formatReport: an aligned table, hand-worked figures, '-' where there is no POPE", () => {
  const table = formatReport(buildReport(answers()).summary);
  const want = [
    "group            n  correct   acc%  prec%  recall%    f1%   yes%",
    "overall          6        3  50.00  50.00    50.00  50.00  50.00",
    "type open        2        1  50.00      -        -      -      -",
    "type yesno       4        2  50.00  50.00    50.00  50.00  50.00",
    "category random  4        2  50.00  50.00    50.00  50.00  50.00",
  ].join("\n");
  assert.equal(table, want);
  // Uneven figures: 1 of 3 right, precision 1/2, recall 1, F1 2/3, yes-ratio 2/3.
  const three = [
    scoreAnswer(q("a", "yesno", "yes"), "yes"),
    scoreAnswer(q("b", "yesno", "no"), "yes"),
    scoreAnswer(q("c", "yesno", "no"), "not sure"),
  ];
  const lines = formatReport(buildReport(three).summary).split("\n");
  assert.equal(lines[1], "overall     3        1  33.33  50.00   100.00  66.67  66.67");
  assert.equal(new Set(lines.map((l) => l.length)).size, 1, "every line has the same width");
});
