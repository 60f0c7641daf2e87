/**
 * Evaluation: a questions file format (open, multiple-choice and yes/no questions), answer scoring
 * (VQA-style normalized exact match, option letters, POPE precision/recall/F1) and reports.
 *
 * ```ts ignore
 * import { formatReport, loadQuestions, scoreAll, summarize } from "./mod.ts";
 * const questions = await loadQuestions("eval/pope.json");
 * const answers = scoreAll(questions, predictions); // predictions: Map<id, text>
 * console.log(formatReport(summarize(answers)));
 * ```
 * @module
 */

export * from "./questions.ts";
export * from "./score.ts";
export * from "./report.ts";
