/**
 * The results of an evaluation run: a JSON-serialisable report (summary plus every scored answer)
 * and its summary as an aligned text table.
 * @module
 */

import { type EvalSummary, type GroupScore, type ScoredAnswer, summarize } from "./score.ts";

/** What an evaluation run reports. JSON-serialisable (`JSON.stringify` loses nothing). */
export interface EvalReport {
  /** Free-form facts about the run (model, questions file, date, ...). */
  meta: Record<string, string | number | boolean>;
  /** Scores overall, per type and per category. */
  summary: EvalSummary;
  /** Every question's scored answer, in question order. */
  answers: ScoredAnswer[];
}

/** The report of scored answers: their {@linkcode summarize} summary, the answers and `meta`. */
export function buildReport(
  answers: readonly ScoredAnswer[],
  meta: Record<string, string | number | boolean> = {},
): EvalReport {
  return { meta: { ...meta }, summary: summarize(answers), answers: answers.map((a) => ({ ...a })) };
}

/** The table's columns: header, and the cell of a group (a percentage with 2 decimals, or a count). */
const COLUMNS: [string, (g: GroupScore) => string][] = [
  ["n", (g) => String(g.n)],
  ["correct", (g) => String(g.correct)],
  ["acc%", (g) => pct(g.accuracy)],
  ["prec%", (g) => (g.pope ? pct(g.pope.precision) : "-")],
  ["recall%", (g) => (g.pope ? pct(g.pope.recall) : "-")],
  ["f1%", (g) => (g.pope ? pct(g.pope.f1) : "-")],
  ["yes%", (g) => (g.pope ? pct(g.pope.yesRatio) : "-")],
];

function pct(x: number): string {
  return (100 * x).toFixed(2);
}

/**
 * The summary as an aligned text table, one row per group: `overall`, then `type <t>` per type,
 * then `category <c>` per category; columns n, correct, accuracy and POPE's precision, recall, F1
 * and yes-ratio (percentages; "-" for groups without yes/no questions). The group column is
 * left-aligned, the others right-aligned, separated by two spaces; no trailing spaces.
 *
 * @example
 * ```ts ignore
 * console.log(formatReport(buildReport(scoreAll(questions, predictions)).summary));
 * // group          n  correct    acc%  prec%  recall%    f1%   yes%
 * // overall        4        3   75.00      -        -      -      -
 * // ...
 * ```
 */
export function formatReport(summary: EvalSummary): string {
  const groups: [string, GroupScore][] = [["overall", summary.overall]];
  for (const [t, g] of Object.entries(summary.byType)) if (g) groups.push([`type ${t}`, g]);
  for (const [c, g] of Object.entries(summary.byCategory)) groups.push([`category ${c}`, g]);
  const table = [
    ["group", ...COLUMNS.map(([h]) => h)],
    ...groups.map(([name, g]) => [name, ...COLUMNS.map(([, cell]) => cell(g))]),
  ];
  const widths = table[0].map((_, j) => Math.max(...table.map((row) => row[j].length)));
  return table
    .map((row) =>
      row.map((cell, j) => (j === 0 ? cell.padEnd(widths[j]) : cell.padStart(widths[j]))).join("  ")
    )
    .map((line) => line.trimEnd())
    .join("\n");
}
