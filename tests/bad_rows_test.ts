/**
 * A training run on LLaVA data holding every kind of bad row met in the real data sets: with
 * `data.onError: "skip"` it finishes, its stage summary counts each kind and quotes the first rows,
 * and `metrics.jsonl` holds the counts; with `"error"` it stops at the first bad row, naming it.
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { gpuTest } from "../core/testing.ts";
import { parseRunConfig } from "../trainers/config.ts";
import { train } from "../trainers/trainer.ts";
import { readMetrics } from "../trainers/metrics.ts";
import { readLlavaRows } from "../data/llava_json.ts";
import { writeTinyRun } from "./tiny_run.ts";

const encoder = new TextEncoder();

/** A row asking about `image` (null: a text-only row). */
function row(
  id: string,
  image: string | null,
  question = "<image>\nWhat color is the square?",
  answer = "red",
) {
  return {
    id,
    ...(image === null ? {} : { image }),
    conversations: [{ from: "human", value: question }, { from: "gpt", value: answer }],
  };
}

/**
 * The lines of a `.jsonl` stage file: 13 usable rows (1 of them cut to `maxLength`, 1 with bytes that
 * are not UTF-8), then 9 bad rows (2 malformed, 3 images outside the root, 3 unreadable images, 1
 * whose image span cannot fit). `outside` is a PNG outside the image root.
 */
function lines(outside: string): Uint8Array[] {
  const json = (r: unknown) => encoder.encode(JSON.stringify(r));
  const good = Array.from({ length: 8 }, (_, i) => json(row(`qa${i}`, `img${i}.png`)));
  const [head, tail] = JSON.stringify(row("bytes", "img1.png", "What colour\u0001 is it?")).split("\\u0001");
  return [
    ...good,
    json(row("text", null, "Say hi.", "hi")),
    json(row("no_marker", "img2.png", "What color is the square?", "blue")), // gets its <image> marker
    json(row("long", "img3.png", "<image>\nDescribe the picture.", "yellow ".repeat(150).trim())), // cut
    // Bytes that are not UTF-8 (0xff) in the question: read as U+FFFD, the row kept.
    new Uint8Array([...encoder.encode(head), 0xff, ...encoder.encode(tail)]),
    json(row("qa_again", "img5.png")),
    encoder.encode('{"id": "torn", "image": "img0.png", "conversations": ['), // malformed JSON
    json({ id: "empty", image: "img0.png", conversations: [] }), // malformed: no turns
    json(row("escape", "../../../../etc/passwd")), // path: .. out of the root
    json(row("absolute", outside)), // path: an absolute path elsewhere
    json(row("linked", "linked.png")), // path: a link to a file outside the root
    json(row("gone", "missing.png")), // image: missing
    json(row("html", "page.png")), // image: not an image
    json(row("huge", "huge.png")), // image: over data.maxImageBytes
    // text: the image comes after more than maxLength tokens of text, so its span cannot fit.
    json({
      id: "late_image",
      image: "img4.png",
      conversations: [
        { from: "human", value: "word ".repeat(150).trim() },
        { from: "gpt", value: "ok" },
        { from: "human", value: "<image>\nAnd this?" },
        { from: "gpt", value: "green" },
      ],
    }),
  ];
}

function joinLines(ls: Uint8Array[]): Uint8Array {
  const nl = encoder.encode("\n");
  const parts = ls.flatMap((l) => [l, nl]);
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

gpuTest(
  "train: every kind of bad LLaVA row is skipped and counted in the summary and the metrics, or stops the run",
  async (e) => {
    const dir = await Deno.realPath(await Deno.makeTempDir());
    try {
      const input = await writeTinyRun(dir, { steps: 1 });
      const images = join(dir, "images");
      const outside = join(dir, "outside.png");
      await Deno.copyFile(join(images, "img0.png"), outside);
      await Deno.symlink(outside, join(images, "linked.png"));
      await Deno.writeTextFile(join(images, "page.png"), "<html>not an image</html>");
      const huge = new Uint8Array(64 * 1024);
      huge.set([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
      await Deno.writeFile(join(images, "huge.png"), huge);
      const data = join(images, "mixed.jsonl");
      await Deno.writeFile(data, joinLines(lines(outside)));

      // An image row without the <image> marker gets it; bytes that are not UTF-8 read as U+FFFD.
      const { rows } = await readLlavaRows(data, { onError: "skip" });
      const text = (id: string) => rows.find((r) => r.id === id)!.conversations[0].value;
      assert.equal(text("no_marker"), "<image>\nWhat color is the square?");
      assert.equal(text("bytes"), "<image>\nWhat colour\uFFFD is it?");

      const cfg = parseRunConfig(input, "tiny");
      const stage = { ...cfg.train.stages[1], data, maxSteps: null, epochs: 1 };
      cfg.train.stages = [stage];
      cfg.train.evalData = null;
      cfg.data.shuffle = false;
      cfg.data.maxImageBytes = 32 * 1024;

      // "error": the first bad row (the torn line, met when the file is read) stops the run.
      await assert.rejects(
        () => train(e, cfg, { runDir: join(dir, "strict"), print: () => {} }),
        /mixed\.jsonl row 13 \(no id\): not valid JSON .*; fix the row or set data\.onError: "skip"/,
      );

      // "skip": 9 of 22 rows are left out (41%), under the limit; the run finishes.
      cfg.data.onError = "skip";
      cfg.data.maxSkipShare = 0.5;
      const out: string[] = [];
      const runDir = join(dir, "lenient");
      const r = await train(e, cfg, { runDir, print: (l) => out.push(l) });
      assert.equal(r.stopped, false);
      assert.equal(r.skippedRows[stage.name], 9);
      assert.equal(r.history.length, 10, "20 rows read (2 malformed), 10 steps of 2");
      const summary = out.find((l) => l.startsWith(`stage ${stage.name}: 9 of 22 rows skipped`));
      assert.ok(summary, out.join("\n"));
      assert.match(summary, /\(41%, limit 50%\): /);
      for (const kind of ["3 path", "3 image", "2 malformed", "1 text"]) {
        assert.match(summary, new RegExp(kind));
      }
      // The first rows met: the two malformed ones (when the file is read), then the escaping path.
      assert.match(
        summary,
        /; first: .*mixed\.jsonl row 13: not valid JSON .* \| .*mixed\.jsonl row 14: conversations is empty \| .*mixed\.jsonl row 15 \(id "escape"\): \.\.\/\.\.\/\.\.\/\.\.\/etc\/passwd: the path leads through "\.\." to \/etc\/passwd, outside the image root /,
      );
      assert.match(
        summary,
        /; 1 row cut to maxLength; 1 row with bytes that are not UTF-8 \(replaced by U\+FFFD\)$/,
      );

      // The metrics hold the counts, on a line of their own at the stage's last step.
      const records = await readMetrics(runDir);
      const counts = records.filter((m) => "rows_skipped" in m);
      assert.deepEqual(counts, [{
        step: 10,
        stage: stage.name,
        rows_skipped: 9,
        rows_skipped_malformed: 2,
        rows_skipped_text: 1,
        rows_skipped_image: 3,
        rows_skipped_path: 3,
        rows_cut: 1,
        rows_text_masked: 0,
        rows_invalid_utf8: 1,
      }]);
      assert.deepEqual(records.filter((m) => "stage_step" in m).map((m) => m.step), [
        1,
        2,
        3,
        4,
        5,
        6,
        7,
        8,
        9,
        10,
      ]);
      // The last three micro-batches held only bad rows: steps without an update, and without a loss.
      assert.deepEqual(records.filter((m) => "loss_text" in m).map((m) => m.step), [1, 2, 3, 4, 5, 6, 7]);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);
