/**
 * Training curves as self-contained SVG files: {@linkcode lineChartSvg} draws line charts (nice axis
 * ticks, a legend, one colour per series, optional log y axis, labelled vertical markers), and
 * {@linkcode writeCurves} writes a run's `loss.svg` (each loss raw and smoothed) and `lr.svg` from its
 * metrics records, titled with the run's name, with a dashed line where each stage starts. No scripts, fonts or styles from outside:
 * the files open in any browser.
 *
 * ```ts ignore
 * await writeCurves("runs/asvr_tiny", await readMetrics("runs/asvr_tiny"), { runName: "asvr_tiny" });
 * ```
 * @module
 */

import { basename, resolve } from "node:path";
import { writeTextAtomic } from "../io/safetensors.ts";
import type { MetricsRecord } from "./metrics.ts";

/** One line of a chart: its legend name and its [x, y] points (non-finite points are skipped). */
export interface ChartSeries {
  /** The legend text. */
  name: string;
  /** The points, in drawing order. */
  points: [number, number][];
  /** Its colour (default: the next of {@linkcode CHART_COLORS}). */
  color?: string;
  /** Line width in pixels (default 1.5). */
  width?: number;
  /** Line opacity in (0, 1] (default 1). */
  opacity?: number;
}

/** A labelled vertical line across the plot (e.g. where a stage starts). */
export interface ChartMarker {
  /** Its x value. */
  x: number;
  /** Its label, drawn at the top beside the line. */
  label: string;
}

/** Options of {@linkcode lineChartSvg}. */
export interface ChartOptions {
  /** The title above the plot. */
  title: string;
  /** The x axis label. */
  xLabel: string;
  /** The y axis label. */
  yLabel: string;
  /** A logarithmic y axis (points with y <= 0 are skipped); default false. */
  logY?: boolean;
  /** Width in pixels (default 720). */
  width?: number;
  /** Height in pixels (default 420). */
  height?: number;
  /** Vertical lines across the plot (default none). */
  markers?: ChartMarker[];
}

/** The series colours, in order (repeating after ten series). */
export const CHART_COLORS: readonly string[] = [
  "#1f77b4",
  "#d62728",
  "#2ca02c",
  "#ff7f0e",
  "#9467bd",
  "#8c564b",
  "#e377c2",
  "#7f7f7f",
  "#bcbd22",
  "#17becf",
];

/**
 * About `target` evenly spaced "nice" tick values (steps of 1, 2 or 5 times a power of ten) whose
 * range covers [lo, hi]: the first tick is <= lo and the last >= hi.
 */
export function niceTicks(lo: number, hi: number, target = 5): number[] {
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) {
    throw new Error(`niceTicks: bounds must be finite, got ${lo}, ${hi}`);
  }
  if (hi < lo) [lo, hi] = [hi, lo];
  if (hi === lo) {
    const pad = lo === 0 ? 1 : Math.abs(lo) * 0.1;
    lo -= pad;
    hi += pad;
  }
  const raw = (hi - lo) / Math.max(1, target);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / mag;
  const step = (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * mag;
  const decimals = Math.max(0, -Math.floor(Math.log10(step)));
  const first = Math.floor(lo / step + 1e-9), last = Math.ceil(hi / step - 1e-9);
  const out: number[] = [];
  for (let k = first; k <= last; k++) out.push(Number((k * step).toFixed(decimals)));
  return out;
}

/**
 * Tick values of a log axis covering [lo, hi] (both > 0): the powers of ten, plus 2 and 5 times
 * them when the range spans fewer than three decades.
 */
export function logTicks(lo: number, hi: number): number[] {
  if (!(lo > 0 && hi > 0 && Number.isFinite(lo) && Number.isFinite(hi))) {
    throw new Error(`logTicks: bounds must be finite and > 0, got ${lo}, ${hi}`);
  }
  if (hi < lo) [lo, hi] = [hi, lo];
  const a = Math.floor(Math.log10(lo) + 1e-9);
  let b = Math.ceil(Math.log10(hi) - 1e-9);
  if (a === b) b++;
  const dense = b - a < 3;
  const out: number[] = [];
  for (let e = a; e <= b; e++) {
    const p = Number((10 ** e).toPrecision(12));
    out.push(p);
    if (dense && e < b) out.push(Number((2 * p).toPrecision(12)), Number((5 * p).toPrecision(12)));
  }
  if (dense) {
    // Trim multiples outside the data, keeping one tick at or beyond each end.
    const lower = out.filter((t) => t <= lo).at(-1) ?? out[0];
    const upper = out.find((t) => t >= hi) ?? out.at(-1)!;
    return out.filter((t) => t >= lower && t <= upper);
  }
  return out;
}

/**
 * The labels of one axis's ticks, in one notation: plain (`0.25`, `1200`) unless a tick needs an
 * exponent (|v| >= 1e5, or 0 < |v| < 1e-3), then all in exponent form (`0`, `5e-4`, `1e-3`).
 */
export function formatTicks(values: number[]): string[] {
  const exp = values.some((v) => v !== 0 && (Math.abs(v) >= 1e5 || Math.abs(v) < 1e-3));
  return values.map((v) => {
    if (!exp || v === 0) return String(Number(v.toPrecision(6)));
    const [m, e] = v.toExponential().split("e");
    return `${Number(Number(m).toPrecision(3))}e${e.replace("+", "")}`;
  });
}

function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

const r1 = (v: number) => String(Math.round(v * 10) / 10);

/**
 * A self-contained SVG line chart: axes with nice ticks and grid lines, a legend, one `<path>` per
 * series that has points (one colour each), points with a non-finite coordinate (or y <= 0 on a log
 * axis) skipped.
 */
export function lineChartSvg(series: ChartSeries[], opts: ChartOptions): string {
  const W = opts.width ?? 720, H = opts.height ?? 420;
  if (!(W >= 200 && H >= 150)) {
    throw new Error(`lineChartSvg: width/height must be >= 200/150, got ${W}x${H}`);
  }
  const logY = opts.logY ?? false;
  const ok = (x: number, y: number) => Number.isFinite(x) && Number.isFinite(y) && (!logY || y > 0);
  const clean = series.map((s) => ({ ...s, points: s.points.filter(([x, y]) => ok(x, y)) }));
  const colorOf = (i: number) => series[i].color ?? CHART_COLORS[i % CHART_COLORS.length];
  const markers = (opts.markers ?? []).filter((m) => Number.isFinite(m.x));
  const all = clean.flatMap((s) => s.points);
  const empty = all.length === 0;

  const left = 72, right = 24, top = 40, bottom = 52;
  const pw = W - left - right, ph = H - top - bottom;
  let xmin = 0, xmax = 1, ymin = logY ? 1 : 0, ymax = logY ? 10 : 1;
  if (!empty) {
    xmin = Math.min(...all.map((p) => p[0]), ...markers.map((m) => m.x));
    xmax = Math.max(...all.map((p) => p[0]), ...markers.map((m) => m.x));
    ymin = Math.min(...all.map((p) => p[1]));
    ymax = Math.max(...all.map((p) => p[1]));
  }
  const xt = niceTicks(xmin, xmax, 6);
  const yt = logY ? logTicks(ymin, ymax) : niceTicks(ymin, ymax, 5);
  const [x0, x1] = [xt[0], xt.at(-1)!];
  const [y0, y1] = logY ? [Math.log10(yt[0]), Math.log10(yt.at(-1)!)] : [yt[0], yt.at(-1)!];
  const sx = (x: number) => left + ((x - x0) / (x1 - x0)) * pw;
  const sy = (y: number) => top + ph - (((logY ? Math.log10(y) : y) - y0) / (y1 - y0)) * ph;

  const o: string[] = [];
  o.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" ` +
      `font-family="sans-serif" font-size="12">`,
  );
  o.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  o.push(
    `<text class="title" x="${r1(W / 2)}" y="22" text-anchor="middle" font-size="15">${
      esc(opts.title)
    }</text>`,
  );
  o.push(`<g class="grid" stroke="#e5e5e5" stroke-width="1">`);
  for (const t of xt) o.push(`<line x1="${r1(sx(t))}" y1="${top}" x2="${r1(sx(t))}" y2="${top + ph}"/>`);
  for (const t of yt) o.push(`<line x1="${left}" y1="${r1(sy(t))}" x2="${left + pw}" y2="${r1(sy(t))}"/>`);
  o.push(`</g>`);
  o.push(`<g class="axes" stroke="#333" stroke-width="1">`);
  o.push(`<line x1="${left}" y1="${top + ph}" x2="${left + pw}" y2="${top + ph}"/>`);
  o.push(`<line x1="${left}" y1="${top}" x2="${left}" y2="${top + ph}"/>`);
  o.push(`</g>`);
  o.push(`<g class="x-ticks" text-anchor="middle" fill="#333">`);
  const xl = formatTicks(xt), yl = formatTicks(yt);
  xt.forEach((t, i) => o.push(`<text x="${r1(sx(t))}" y="${top + ph + 16}">${xl[i]}</text>`));
  o.push(`</g>`);
  o.push(`<g class="y-ticks" text-anchor="end" fill="#333">`);
  yt.forEach((t, i) => o.push(`<text x="${left - 6}" y="${r1(sy(t) + 4)}">${yl[i]}</text>`));
  o.push(`</g>`);
  o.push(
    `<text class="x-label" x="${r1(left + pw / 2)}" y="${H - 12}" text-anchor="middle">${
      esc(opts.xLabel)
    }</text>`,
  );
  const ly = r1(top + ph / 2);
  o.push(
    `<text class="y-label" x="16" y="${ly}" text-anchor="middle" transform="rotate(-90 16 ${ly})">` +
      `${esc(opts.yLabel)}</text>`,
  );
  if (empty) {
    o.push(
      `<text class="no-data" x="${r1(left + pw / 2)}" y="${
        r1(top + ph / 2)
      }" text-anchor="middle" fill="#999">no data</text>`,
    );
  }
  if (markers.length && !empty) {
    o.push(`<g class="markers" fill="#555" font-size="11">`);
    for (const m of markers) {
      const x = r1(sx(m.x));
      o.push(`<line x1="${x}" y1="${top}" x2="${x}" y2="${top + ph}" stroke="#888" stroke-dasharray="4 3"/>`);
      // Above the plot, centred on its line, kept inside the chart.
      const half = 3.2 * m.label.length;
      const cx = Math.min(Math.max(sx(m.x), half + 2), W - half - 2);
      o.push(`<text x="${r1(cx)}" y="${top - 5}" text-anchor="middle">${esc(m.label)}</text>`);
    }
    o.push(`</g>`);
  }
  o.push(`<g class="lines" fill="none" stroke-width="1.5" stroke-linejoin="round">`);
  clean.forEach((s, i) => {
    if (!s.points.length) return;
    const d = s.points.map(([x, y], k) => `${k ? "L" : "M"}${r1(sx(x))} ${r1(sy(y))}`).join(" ");
    const style = (s.width !== undefined ? ` stroke-width="${s.width}"` : "") +
      (s.opacity !== undefined ? ` stroke-opacity="${s.opacity}"` : "");
    o.push(
      `<path class="series" stroke="${colorOf(i)}" d="${d}"${style}><title>${esc(s.name)}</title></path>`,
    );
  });
  o.push(`</g>`);
  if (series.length) {
    const lw = Math.min(pw / 2, 24 + 7 * Math.max(...series.map((s) => s.name.length)));
    const lx = left + pw - lw - 8, ltop = top + 8;
    o.push(`<g class="legend">`);
    o.push(
      `<rect x="${r1(lx)}" y="${ltop}" width="${r1(lw)}" height="${series.length * 18 + 8}" fill="white" ` +
        `fill-opacity="0.85" stroke="#ccc"/>`,
    );
    series.forEach((s, i) => {
      const y = ltop + 4 + i * 18 + 9;
      const opacity = s.opacity !== undefined ? ` stroke-opacity="${s.opacity}"` : "";
      o.push(
        `<line x1="${r1(lx + 6)}" y1="${y}" x2="${r1(lx + 20)}" y2="${y}" stroke="${colorOf(i)}" ` +
          `stroke-width="${s.width ?? 2}"${opacity}/>`,
      );
      o.push(`<text x="${r1(lx + 24)}" y="${y + 4}">${esc(s.name)}</text>`);
    });
    o.push(`</g>`);
  }
  o.push(`</svg>`);
  return o.join("\n") + "\n";
}

/** The loss keys of metrics records, in first-seen order: `loss`, and every key starting `loss_`. */
export function lossKeys(records: MetricsRecord[]): string[] {
  const keys = new Set<string>();
  for (const r of records) {
    for (const [k, v] of Object.entries(r)) {
      if ((k === "loss" || k.startsWith("loss_")) && (typeof v === "number" || v === null)) keys.add(k);
    }
  }
  return [...keys];
}

/** The [step, value] points of `key` (null values become NaN, so the chart skips them). */
function seriesOf(records: MetricsRecord[], key: string): [number, number][] {
  const out: [number, number][] = [];
  for (const r of records) {
    if (!(key in r)) continue;
    const v = r[key];
    out.push([r.step, typeof v === "number" ? v : NaN]);
  }
  return out;
}

/**
 * Where each stage after the first starts: a marker halfway between its first step and the step before,
 * labelled with its name, from the records' `stage` field (records without one start no stage).
 */
export function stageMarkers(records: MetricsRecord[]): ChartMarker[] {
  const out: ChartMarker[] = [];
  let stage: string | null = null, last = NaN;
  for (const r of records) {
    if (typeof r.stage !== "string") continue;
    if (stage !== null && r.stage !== stage) out.push({ x: (last + r.step) / 2, label: r.stage });
    stage = r.stage;
    last = r.step;
  }
  return out;
}

/** The default weight of the previous value in the smoothed loss lines. */
export const EMA_WEIGHT = 0.9;

/**
 * The exponential moving average of `points` (weight `weight` on the previous average), bias-corrected
 * as TensorBoard's smoothing, restarted where each stage starts (`starts`: the markers' x values). A
 * non-finite value is skipped (its point is NaN; the average carries on).
 */
export function emaPoints(
  points: [number, number][],
  weight: number,
  starts: number[] = [],
): [number, number][] {
  if (!(weight >= 0 && weight < 1)) throw new Error(`emaPoints: weight must be in [0, 1), got ${weight}`);
  const out: [number, number][] = [];
  let avg = 0, n = 0, next = 0;
  const sorted = [...starts].sort((a, b) => a - b);
  for (const [x, y] of points) {
    while (next < sorted.length && x > sorted[next]) {
      next++;
      avg = 0;
      n = 0;
    }
    if (!Number.isFinite(y)) {
      out.push([x, NaN]);
      continue;
    }
    avg = weight * avg + (1 - weight) * y;
    n++;
    out.push([x, avg / (1 - weight ** n)]);
  }
  return out;
}

/** Options of {@linkcode writeCurves}. */
export interface CurveOptions {
  /** The run's name, in the titles (default: the run folder's name). */
  runName?: string;
  /** The weight of the previous value in the smoothed loss lines (default {@linkcode EMA_WEIGHT}). */
  smoothing?: number;
}

/**
 * Writes `<runDir>/loss.svg` (every `loss`/`loss_*` key against `step`, each raw and smoothed by an EMA
 * restarted at each stage) and `<runDir>/lr.svg` (`lr` against `step`), each atomically, with the run's
 * name in their titles and a dashed line where each stage starts. Returns the two paths.
 */
export async function writeCurves(
  runDir: string,
  records: MetricsRecord[],
  opts: CurveOptions = {},
): Promise<string[]> {
  await Deno.mkdir(runDir, { recursive: true });
  const name = opts.runName ?? basename(resolve(runDir));
  const weight = opts.smoothing ?? EMA_WEIGHT;
  const markers = stageMarkers(records);
  const starts = markers.map((m) => m.x);
  const lossSeries = lossKeys(records).flatMap((k, i): ChartSeries[] => {
    const color = CHART_COLORS[i % CHART_COLORS.length];
    const raw = seriesOf(records, k);
    return [
      { name: k, points: raw, color, width: 1, opacity: 0.35 },
      { name: `${k} (EMA ${weight})`, points: emaPoints(raw, weight, starts), color, width: 2 },
    ];
  });
  const loss = lineChartSvg(lossSeries, { title: `${name}: loss`, xLabel: "step", yLabel: "loss", markers });
  const lr = lineChartSvg(
    records.some((r) => "lr" in r) ? [{ name: "lr", points: seriesOf(records, "lr") }] : [],
    { title: `${name}: learning rate`, xLabel: "step", yLabel: "lr", markers },
  );
  const paths = [`${runDir}/loss.svg`, `${runDir}/lr.svg`];
  await writeTextAtomic(paths[0], loss);
  await writeTextAtomic(paths[1], lr);
  return paths;
}
