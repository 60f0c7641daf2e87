import assert from "node:assert/strict";
import type { EvalSummary } from "../eval/score.ts";
import { join } from "node:path";
import {
  ablationMarkdown,
  ablationSvg,
  aggregateAblation,
  finalLosses,
  finishedRunReport,
  meanStd,
} from "./ablation.ts";

function summary(overall: number, color: number): EvalSummary {
  const g = (acc: number) => ({ n: 10, correct: Math.round(10 * acc), accuracy: acc });
  return { overall: g(overall), byType: {}, byCategory: { color: g(color) } };
}

Deno.test("meanStd: mean and sample standard deviation worked by hand", () => {
  assert.deepEqual(meanStd([2, 4, 6]), { mean: 4, std: 2, n: 3 });
  assert.deepEqual(meanStd([5]), { mean: 5, std: 0, n: 1 });
  assert.ok(Number.isNaN(meanStd([]).mean));
});

Deno.test("finalLosses: each loss term's mean over the last steps that have losses", () => {
  const records = [
    { step: 1, loss_text: 9, loss_visual: 9 },
    { step: 2, loss_text: 1, loss_visual: 4 },
    { step: 3, eval: true }, // no losses: not a step of its own
    { step: 4, loss_text: 3, loss_visual: Infinity },
  ];
  assert.deepEqual(finalLosses(records, 2), { loss_text: 2, loss_visual: 4 });
  assert.deepEqual(finalLosses(records), { loss_text: 13 / 3, loss_visual: 6.5 });
  assert.deepEqual(finalLosses([]), {});
});

Deno.test("aggregateAblation: per variant over seeds; markdown and SVG carry every variant and group", () => {
  const rows = aggregateAblation([
    { variant: "none", seed: 1, summary: summary(0.5, 0.2), losses: { loss_text: 1 } },
    { variant: "none", seed: 2, summary: summary(0.7, 0.4), losses: { loss_text: 3 } },
    {
      variant: "semantic",
      seed: 1,
      summary: summary(0.9, 0.6),
      losses: { loss_text: 2, loss_visual_semantic: 4 },
      reliance: 0.1,
    },
  ]);
  assert.deepEqual(rows.map((r) => r.variant), ["none", "semantic"]);
  assert.ok(Math.abs(rows[0].overall.mean - 0.6) < 1e-12);
  assert.ok(Math.abs(rows[0].overall.std - Math.SQRT2 * 0.1) < 1e-12);
  assert.ok(Math.abs(rows[0].byCategory.color.mean - 0.3) < 1e-12);
  assert.equal(rows[0].losses.loss_text.mean, 2);
  assert.equal(rows[1].losses.loss_visual_semantic.mean, 4);
  const md = ablationMarkdown(rows);
  assert.match(
    md,
    /\| variant \| seeds \| overall acc % \| color % \| final text loss \| image reliance % \|/,
  );
  assert.match(md, /\| none \| 2 \| 60\.0 ± 14\.1 \| 30\.0 ± 14\.1 \| 2\.000 ± 1\.414 \| - \|/);
  assert.match(md, /\| semantic \| 1 \| 90\.0 ± 0\.0 \| .* \| 10\.0 ± 0\.0 \|/);
  const svg = ablationSvg(rows, "test");
  assert.equal((svg.match(/<rect x=/g) ?? []).length, 4 + 2); // 2 groups x 2 variants, 2 legend swatches
  assert.match(svg, /<title>semantic color: 60\.0 ± 0\.0<\/title>/);
  assert.ok(svg.startsWith("<svg") && svg.trimEnd().endsWith("</svg>"));
});

Deno.test("finishedRunReport: none yet, the report of a run of the same config, an error for another config", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const cfg = { name: "semantic-s1", train: { seed: 1, stages: [{ lr: 3e-3 }] } };
    assert.equal(await finishedRunReport(dir, cfg), null);
    const report = { meta: {}, summary: { overall: { n: 1, correct: 1, accuracy: 1 } }, answers: [] };
    await Deno.writeTextFile(join(dir, "eval.json"), JSON.stringify(report));
    await Deno.writeTextFile(join(dir, "config.json"), JSON.stringify(cfg, null, 2) + "\n");
    assert.deepEqual(await finishedRunReport(dir, cfg), report);
    const changed = { ...cfg, train: { seed: 1, stages: [{ lr: 1e-3 }] } };
    await assert.rejects(
      () => finishedRunReport(dir, changed),
      /trained with another config.*delete the folder/,
    );
    await Deno.writeTextFile(join(dir, "eval.json"), "{");
    await assert.rejects(() => finishedRunReport(dir, cfg), /eval\.json: .*delete the run folder/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
