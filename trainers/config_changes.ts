/**
 * What a resumed run changed in its config: the fields whose values differ between the run's saved
 * `config.json` and the config it resumes with, each as `path: old -> new`.
 * @module
 */

import { describeValue, joinPath } from "../schema/parse.ts";
import { isRecord } from "../schema/fields.ts";

/**
 * The differing leaves of two JSON values, in the order of `before`'s fields then `after`'s new ones:
 * `["train.stages[0].batchSize: 2 -> 4", "data.shuffle: (absent) -> false"]`. Arrays of different
 * lengths, and values of different types, differ as a whole.
 */
export function configChanges(before: unknown, after: unknown, path = ""): string[] {
  if (JSON.stringify(before) === JSON.stringify(after)) return [];
  const bothObjects = isRecord(before) && isRecord(after);
  const sameArrays = Array.isArray(before) && Array.isArray(after) && before.length === after.length;
  if (!bothObjects && !sameArrays) return [`${path || "(config)"}: ${show(before)} -> ${show(after)}`];
  const keys = sameArrays
    ? (before as unknown[]).map((_, i) => i)
    : [...new Set([...Object.keys(before as object), ...Object.keys(after as object)])];
  return keys.flatMap((k) => {
    const at = joinPath(path, [k]).replace(/^\./, "");
    return configChanges((before as never)[k], (after as never)[k], at);
  });
}

function show(v: unknown): string {
  return v === undefined ? "(absent)" : describeValue(v);
}
