/**
 * Training curves as self-contained SVG files: {@linkcode lineChartSvg} draws line charts (nice axis
 * ticks, a legend, one colour per series, optional log y axis), and {@linkcode writeCurves} writes a
 * run's `loss.svg` and `lr.svg` from its metrics records. No scripts, fonts or styles from outside:
 * the files open in any browser.
 *
 * ```ts ignore
 * await writeCurves("runs/stage1", await readMetrics("runs/stage1"));
 * ```
 * @module
 */

import { writeTextAtomic } from "../io/safetensors.ts";
import type { MetricsRecord } from "./metrics.ts";

/** One line of a chart: its legend name and its [x, y] points (non-finite points are skipped). */
export interface ChartSeries {
  /** The legend text. */
  name: string;
  /** The points, in drawing order. */
  points: [number, number][];
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
  const clean = series.map((s) => ({ name: s.name, points: s.points.filter(([x, y]) => ok(x, y)) }));
  const all = clean.flatMap((s) => s.points);
  const empty = all.length === 0;

  const left = 72, right = 24, top = 40, bottom = 52;
  const pw = W - left - right, ph = H - top - bottom;
  let xmin = 0, xmax = 1, ymin = logY ? 1 : 0, ymax = logY ? 10 : 1;
  if (!empty) {
    xmin = Math.min(...all.map((p) => p[0]));
    xmax = Math.max(...all.map((p) => p[0]));
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
  o.push(`<g class="lines" fill="none" stroke-width="1.5" stroke-linejoin="round">`);
  clean.forEach((s, i) => {
    if (!s.points.length) return;
    const d = s.points.map(([x, y], k) => `${k ? "L" : "M"}${r1(sx(x))} ${r1(sy(y))}`).join(" ");
    o.push(
      `<path class="series" stroke="${CHART_COLORS[i % CHART_COLORS.length]}" d="${d}"><title>${
        esc(s.name)
      }</title></path>`,
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
      const c = CHART_COLORS[i % CHART_COLORS.length];
      o.push(
        `<line x1="${r1(lx + 6)}" y1="${y}" x2="${r1(lx + 20)}" y2="${y}" stroke="${c}" stroke-width="2"/>`,
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
 * Writes `<runDir>/loss.svg` (every `loss`/`loss_*` key against `step`) and `<runDir>/lr.svg`
 * (`lr` against `step`), each atomically. Returns the two paths.
 */
export async function writeCurves(runDir: string, records: MetricsRecord[]): Promise<string[]> {
  await Deno.mkdir(runDir, { recursive: true });
  const loss = lineChartSvg(
    lossKeys(records).map((k) => ({ name: k, points: seriesOf(records, k) })),
    { title: "Loss", xLabel: "step", yLabel: "loss" },
  );
  const lr = lineChartSvg(
    records.some((r) => "lr" in r) ? [{ name: "lr", points: seriesOf(records, "lr") }] : [],
    { title: "Learning rate", xLabel: "step", yLabel: "lr" },
  );
  const paths = [`${runDir}/loss.svg`, `${runDir}/lr.svg`];
  await writeTextAtomic(paths[0], loss);
  await writeTextAtomic(paths[1], lr);
  return paths;
}
