import assert from "node:assert/strict";
import { join } from "node:path";
import { loadQuestions, parseQuestions } from "./questions.ts";

const GOOD = [
  { id: "q1", image: "images/1.png", question: " How many dogs? ", answer: "two", type: "open" },
  { id: 7, question: "Color?", answer: "B", type: "choice", choices: ["red", "blue"], category: "color" },
  { id: "q3", question: "Is there a cat?", answer: "No.", type: "yesno", category: "adversarial" },
];

Deno.test("parseQuestions: a valid file; numeric ids become strings, text is trimmed", () => {
  const qs = parseQuestions(GOOD, "q.json");
  assert.deepEqual(qs, [
    { id: "q1", image: "images/1.png", question: "How many dogs?", answer: "two", type: "open" },
    { id: "7", question: "Color?", answer: "B", type: "choice", choices: ["red", "blue"], category: "color" },
    { id: "q3", question: "Is there a cat?", answer: "No.", type: "yesno", category: "adversarial" },
  ]);
  assert.deepEqual(parseQuestions([], "q.json"), []);
});

Deno.test("parseQuestions: errors name the file, the index, the id and the field", () => {
  const bad = (i: number, patch: Record<string, unknown>, drop?: string) => {
    const items: unknown[] = structuredClone(GOOD);
    const item = { ...(items[i] as Record<string, unknown>), ...patch };
    if (drop) delete item[drop];
    items[i] = item;
    return () => parseQuestions(items, "q.json");
  };
  assert.throws(
    () => parseQuestions({ questions: [] }, "q.json"),
    /q\.json: .*must be a JSON array.*got object/,
  );
  assert.throws(() => parseQuestions([GOOD[0], "x"], "q.json"), /q\.json: question 1: must be an object/);
  assert.throws(
    bad(0, {}, "answer"),
    /q\.json: question 0 \(id "q1"\)\.answer: .*expected string.* \(missing\)/,
  );
  assert.throws(
    bad(1, { type: "multi" }),
    /question 1 \(id "7"\)\.type: .*expected one of "open"\|"choice"\|"yesno" \(got "multi"\)/,
  );
  assert.throws(
    bad(0, { question: "  " }),
    /question 0 \(id "q1"\)\.question: .*>=1 characters \(got " {2}"\)/,
  );
  assert.throws(
    bad(0, { id: true }),
    /question 0\.id: must be a non-empty string or an integer >= 0 \(got true\)/,
  );
  assert.throws(bad(0, { id: -1 }), /question 0 \(id "-1"\)\.id: .*>=0 \(got -1\)/);
  assert.throws(
    bad(2, { answers: ["no"] }),
    /question 2 \(id "q3"\)\.answers: unknown field; allowed fields: id, image, question, answer, type, /,
  );
  assert.throws(
    bad(1, {}, "choices"),
    /question 1 \(id "7"\)\.choices: a "choice" question needs its options/,
  );
  assert.throws(
    bad(1, { choices: ["red"] }),
    /question 1 \(id "7"\)\.choices: .*>=2 items \(got \["red"\]\)/,
  );
  assert.throws(
    bad(1, { answer: "C" }),
    /question 1 \(id "7"\)\.answer: "C" is neither a letter A\.\.B nor the text of a choice/,
  );
  assert.doesNotThrow(bad(1, { answer: "blue" }));
  assert.throws(
    bad(0, { choices: ["a", "b"] }),
    /question 0 \(id "q1"\)\.choices: only "choice" questions have choices; this one is "open"/,
  );
  assert.throws(
    bad(2, { answer: "maybe" }),
    /question 2 \(id "q3"\)\.answer: "maybe": a "yesno" answer must be/,
  );
  assert.throws(
    bad(2, { id: "q1" }),
    /question 2 \(id "q1"\)\.id: "q1" is also the id of question 0/,
  );
  // The number 7 and the string "7" are the same id.
  assert.throws(
    () => parseQuestions([GOOD[1], { ...GOOD[0], id: "7" }], "q.json"),
    /also the id of question 0/,
  );
});

Deno.test("loadQuestions: reads a file; a missing file or bad JSON is named", async () => {
  const dir = await Deno.makeTempDir({ prefix: "asvr_questions_" });
  try {
    const path = join(dir, "questions.json");
    await Deno.writeTextFile(path, JSON.stringify(GOOD));
    assert.equal((await loadQuestions(path)).length, 3);
    await Deno.writeTextFile(path, "[{},]");
    await assert.rejects(() => loadQuestions(path), /questions\.json.*invalid JSON at line 1/);
    await Deno.writeTextFile(path, JSON.stringify([{ ...GOOD[0], type: "essay" }]));
    await assert.rejects(
      () => loadQuestions(path),
      /questions\.json: question 0 \(id "q1"\)\.type: .*\(got "essay"\)/,
    );
    await assert.rejects(
      () => loadQuestions(join(dir, "none.json")),
      /none\.json: file not found; it should be a questions file/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
