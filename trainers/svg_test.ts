import assert from "node:assert/strict";
import type { MetricsRecord } from "./metrics.ts";
import {
  emaPoints,
  formatTicks,
  lineChartSvg,
  logTicks,
  lossKeys,
  niceTicks,
  stageMarkers,
  writeCurves,
} from "./svg.ts";

/** Checks that tags nest and close properly (a small XML well-formedness check) and returns the tag names. */
function checkXml(svg: string): string[] {
  const stack: string[] = [];
  const seen: string[] = [];
  const body = svg.replace(/>[^<]*</g, "><"); // text content
  for (const m of body.matchAll(/<(\/?)([a-zA-Z][\w-]*)((?:\s+[\w:-]+="[^"<>]*")*)\s*(\/?)>/g)) {
    const [, close, name, , self] = m;
    if (close) assert.equal(stack.pop(), name, `</${name}> closes the wrong tag`);
    else {
      seen.push(name);
      if (!self) stack.push(name);
    }
  }
  assert.deepEqual(stack, [], "unclosed tags");
  const tags = body.match(/<[^>]*>/g) ?? [];
  const matched = [...body.matchAll(/<(\/?)([a-zA-Z][\w-]*)((?:\s+[\w:-]+="[^"<>]*")*)\s*(\/?)>/g)].length;
  assert.equal(matched, tags.length, "a tag has malformed attributes");
  assert.equal(seen[0], "svg");
  return seen;
}

function count(s: string, re: RegExp): number {
  return (s.match(re) ?? []).length;
}

function textsOf(svg: string, group: string): string[] {
  const g = svg.split(`<g class="${group}"`)[1].split("</g>")[0];
  return [...g.matchAll(/<text[^>]*>([^<]*)<\/text>/g)].map((m) => m[1]);
}

Deno.test("nice ticks cover the data with steps of 1, 2 or 5 x 10^k", () => {
  assert.deepEqual(niceTicks(0, 1, 5), [0, 0.2, 0.4, 0.6, 0.8, 1]);
  assert.deepEqual(niceTicks(3, 97, 5), [0, 20, 40, 60, 80, 100]);
  assert.deepEqual(niceTicks(2.31, 5.12, 5), [2, 2.5, 3, 3.5, 4, 4.5, 5, 5.5]);
  assert.deepEqual(niceTicks(0, 5000, 6), [0, 1000, 2000, 3000, 4000, 5000]);
  assert.deepEqual(niceTicks(1e-5, 2e-5, 5), [0.00001, 0.000012, 0.000014, 0.000016, 0.000018, 0.00002]);
  assert.deepEqual(niceTicks(4, 4, 4), [3.6, 3.8, 4, 4.2, 4.4]);
  assert.deepEqual(logTicks(0.05, 30), [0.01, 0.1, 1, 10, 100]);
  assert.deepEqual(logTicks(2.3, 8), [2, 5, 10]);
  assert.deepEqual(formatTicks([0, 0.0005, 0.001]), ["0", "5e-4", "1e-3"]);
  assert.deepEqual(formatTicks([0, 250000]), ["0", "2.5e5"]);
  assert.deepEqual(formatTicks([0.30000000000000004, 1200]), ["0.3", "1200"]);
});

Deno.test("a chart: well-formed, one path per series, tick labels, legend, NaN skipped", () => {
  const svg = lineChartSvg(
    [
      { name: "loss_text", points: [[0, 5], [10, 4], [20, NaN], [30, 3]] },
      { name: "loss_visual_<semantic>", points: [[0, 8], [30, 6]] },
      { name: "all NaN", points: [[0, NaN]] },
    ],
    { title: "Loss & more", xLabel: "step", yLabel: "loss", width: 600, height: 300 },
  );
  const tags = checkXml(svg);
  assert.ok(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg" width="600" height="300"'));
  assert.equal(tags.filter((t) => t === "path").length, 2); // the all-NaN series draws nothing
  assert.equal(count(svg, /<path class="series"/g), 2);
  const paths = [...svg.matchAll(/<path class="series" stroke="([^"]+)" d="([^"]+)"/g)];
  assert.notEqual(paths[0][1], paths[1][1], "one colour per series");
  assert.equal(count(paths[0][2], /[ML]/g), 3, "the NaN point is skipped");
  assert.equal(count(paths[1][2], /[ML]/g), 2);
  assert.ok(!svg.replace(/>[^<]*</g, "><").includes("NaN"), "no NaN coordinates");
  assert.deepEqual(textsOf(svg, "x-ticks"), ["0", "5", "10", "15", "20", "25", "30"]);
  assert.deepEqual(textsOf(svg, "y-ticks"), ["3", "4", "5", "6", "7", "8"]);
  assert.deepEqual(textsOf(svg, "legend"), ["loss_text", "loss_visual_&lt;semantic&gt;", "all NaN"]);
  assert.match(svg, />Loss &amp; more<\/text>/);
  // higher y is drawn higher up: the first point (y = 5) sits below the y = 8 point of the second series
  const firstY = (d: string) => Number(d.split(" ")[1]);
  assert.ok(firstY(paths[0][2]) > firstY(paths[1][2]));
});

Deno.test("log y: decade ticks, non-positive points skipped; empty charts say so", () => {
  const svg = lineChartSvg([{ name: "lr", points: [[0, 0], [1, 1e-4], [2, 1e-3], [3, 1e-6]] }], {
    title: "lr",
    xLabel: "step",
    yLabel: "lr",
    logY: true,
  });
  checkXml(svg);
  assert.deepEqual(textsOf(svg, "y-ticks"), ["1e-6", "1e-5", "1e-4", "1e-3"]);
  assert.equal(count(svg.match(/ d="([^"]+)"/)![1], /[ML]/g), 3);
  const empty = lineChartSvg([], { title: "t", xLabel: "x", yLabel: "y" });
  checkXml(empty);
  assert.match(empty, /no data/);
  assert.equal(count(empty, /<path/g), 0);
});

Deno.test("writeCurves writes loss.svg and lr.svg from metrics records", async () => {
  const dir = await Deno.makeTempDir({ prefix: "asvr_svg_" });
  try {
    const records: MetricsRecord[] = [];
    for (let s = 1; s <= 20; s++) {
      records.push({
        step: s,
        loss_text: 3 - s / 10,
        loss_visual_semantic: 6 - s / 5,
        loss_total: 9 - s / 4,
        lr: s * 1e-4,
      });
    }
    records.push({ step: 21, loss_text: null, eval_acc: 0.5 });
    assert.deepEqual(lossKeys(records), ["loss_text", "loss_visual_semantic", "loss_total"]);
    const paths = await writeCurves(`${dir}/run`, records);
    assert.deepEqual(paths, [`${dir}/run/loss.svg`, `${dir}/run/lr.svg`]);
    const loss = await Deno.readTextFile(paths[0]);
    checkXml(loss);
    assert.equal(count(loss, /<path class="series"/g), 6, "each loss raw and smoothed");
    assert.deepEqual(textsOf(loss, "legend"), [
      "loss_text",
      "loss_text (EMA 0.9)",
      "loss_visual_semantic",
      "loss_visual_semantic (EMA 0.9)",
      "loss_total",
      "loss_total (EMA 0.9)",
    ]);
    assert.match(loss, />run: loss<\/text>/, "the run folder's name by default");
    assert.ok(!loss.includes('class="markers"'), "one stage: no stage line");
    const lr = await Deno.readTextFile(paths[1]);
    checkXml(lr);
    assert.equal(count(lr, /<path class="series"/g), 1);
    assert.deepEqual(textsOf(lr, "y-ticks"), ["0", "5e-4", "1e-3", "1.5e-3", "2e-3"]);
    const names = [];
    for await (const e of Deno.readDir(`${dir}/run`)) names.push(e.name);
    assert.deepEqual(names.sort(), ["loss.svg", "lr.svg"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("loss.svg: the run's name, a smoothed line beside the raw one, a line where each stage starts", async () => {
  const dir = await Deno.makeTempDir({ prefix: "asvr_svg_" });
  try {
    const records: MetricsRecord[] = [];
    for (let s = 1; s <= 30; s++) {
      records.push({
        step: s,
        stage: s <= 20 ? "pretrain" : "finetune",
        loss_text: 5 - s / 10 + (s % 2),
        lr: 1e-3,
      });
    }
    assert.deepEqual(stageMarkers(records), [{ x: 20.5, label: "finetune" }]);
    const [lossPath, lrPath] = await writeCurves(`${dir}/out`, records, {
      runName: "asvr_tiny",
      smoothing: 0.5,
    });
    const loss = await Deno.readTextFile(lossPath);
    checkXml(loss);
    assert.match(loss, />asvr_tiny: loss<\/text>/);
    assert.deepEqual(textsOf(loss, "markers"), ["finetune"]);
    assert.equal(count(loss, /stroke-dasharray="4 3"/g), 1);
    const paths = [...loss.matchAll(/<path class="series" stroke="([^"]+)" d="[^"]+"([^>]*)>/g)];
    assert.equal(paths.length, 2);
    assert.equal(paths[0][1], paths[1][1], "raw and smoothed share a colour");
    assert.match(paths[0][2], /stroke-width="1" stroke-opacity="0\.35"/);
    assert.match(paths[1][2], /stroke-width="2"/);
    const lr = await Deno.readTextFile(lrPath);
    assert.match(lr, />asvr_tiny: learning rate<\/text>/);
    assert.deepEqual(textsOf(lr, "markers"), ["finetune"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("EMA: bias-corrected, restarted at each stage, NaN skipped", () => {
  const pts: [number, number][] = [[1, 4], [2, 2], [3, NaN], [4, 2], [5, 10], [6, 0]];
  const ema = emaPoints(pts, 0.5, [4.5]);
  // 4; (0.25 * 4 + 0.5 * 2) / 0.75 = 2.667; NaN; then 2.286; a new stage restarts at 10, then 3.333.
  assert.deepEqual(ema.map(([x]) => x), [1, 2, 3, 4, 5, 6]);
  assert.ok(Number.isNaN(ema[2][1]));
  const ys = ema.filter(([, y]) => !Number.isNaN(y)).map(([, y]) => Number(y.toFixed(3)));
  assert.deepEqual(ys, [4, 2.667, 2.286, 10, 3.333]);
  assert.deepEqual(emaPoints(pts, 0).map(([, y]) => y).filter(Number.isFinite), [4, 2, 2, 10, 0]);
  assert.throws(() => emaPoints(pts, 1), /emaPoints: weight must be in \[0, 1\), got 1/);
});
