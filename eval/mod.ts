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

export {
  loadQuestions,
  parseQuestions,
  type Question,
  QUESTION_TYPES,
  type QuestionType,
} from "./questions.ts";
export {
  type EvalSummary,
  expectedAnswer,
  type GroupScore,
  normalizeAnswer,
  parseChoice,
  parseYesNo,
  type PopeStats,
  popeStats,
  scoreAll,
  scoreAnswer,
  type ScoredAnswer,
  summarize,
  type YesNo,
} from "./score.ts";
export { buildReport, type EvalReport, formatReport } from "./report.ts";
