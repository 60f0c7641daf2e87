/**
 * Aggregating an ablation: several variants (e.g. heads) each trained with several seeds, each run ending
 * in an evaluation. Per variant: the mean and sample standard deviation over seeds of the accuracy overall
 * and per category, and of the final losses; written as a markdown table and an SVG bar chart with error
 * bars.
 * @module
 */

import { join } from "node:path";
import type { EvalReport } from "../eval/report.ts";
import type { EvalSummary } from "../eval/score.ts";
import { CHART_COLORS } from "./svg.ts";

/** One finished run of an ablation. */
export interface AblationRun {
  /** The variant's name (e.g. "semantic"). */
  variant: string;
  /** The run's seed. */
  seed: number;
  /** Its final evaluation. */
  summary: EvalSummary;
  /** Its final losses (see {@linkcode finalLosses}). */
  losses: Record<string, number>;
  /** Its image reliance gap (trainers/image_reliance.ts), when measured. */
  reliance?: number;
}

/** A mean and a sample standard deviation (0 for a single value). */
export interface MeanStd {
  /** The mean. */
  mean: number;
  /** The sample standard deviation. */
  std: number;
  /** How many values. */
  n: number;
}

/** One variant's aggregate. */
export interface AblationRow {
  /** The variant. */
  variant: string;
  /** Seeds aggregated. */
  seeds: number[];
  /** Overall accuracy. */
  overall: MeanStd;
  /** Accuracy per category. */
  byCategory: Record<string, MeanStd>;
  /** Final losses. */
  losses: Record<string, MeanStd>;
  /** Image reliance gaps (n = 0 when none was measured). */
  reliance: MeanStd;
}

/** Steps {@linkcode finalLosses} averages by default. */
export const FINAL_LOSS_STEPS = 20;

/**
 * A run's final losses: each `loss_*` value averaged over the last `steps` step records that have one
 * (one step's loss is one batch's, which varies with the batch's rows: length-grouped batches most).
 */
export function finalLosses(
  records: readonly Record<string, unknown>[],
  steps: number = FINAL_LOSS_STEPS,
): Record<string, number> {
  const withLoss = records.filter((r) => Object.keys(r).some((k) => k.startsWith("loss_"))).slice(-steps);
  const sums: Record<string, { sum: number; n: number }> = {};
  for (const r of withLoss) {
    for (const [k, v] of Object.entries(r)) {
      if (!k.startsWith("loss_") || typeof v !== "number" || !Number.isFinite(v)) continue;
      const acc = sums[k] ??= { sum: 0, n: 0 };
      acc.sum += v;
      acc.n++;
    }
  }
  return Object.fromEntries(Object.entries(sums).map(([k, { sum, n }]) => [k, sum / n]));
}

/** Mean and sample standard deviation of some values. */
export function meanStd(xs: readonly number[]): MeanStd {
  const n = xs.length;
  if (n === 0) return { mean: NaN, std: NaN, n };
  const mean = xs.reduce((s, x) => s + x, 0) / n;
  const std = n > 1 ? Math.sqrt(xs.reduce((s, x) => s + (x - mean) ** 2, 0) / (n - 1)) : 0;
  return { mean, std, n };
}

/** Aggregates runs by variant, in the order variants first appear. */
export function aggregateAblation(runs: readonly AblationRun[]): AblationRow[] {
  const variants = [...new Set(runs.map((r) => r.variant))];
  return variants.map((variant) => {
    const rs = runs.filter((r) => r.variant === variant);
    const cats = [...new Set(rs.flatMap((r) => Object.keys(r.summary.byCategory)))].sort();
    const lossKeys = [...new Set(rs.flatMap((r) => Object.keys(r.losses)))].sort();
    return {
      variant,
      seeds: rs.map((r) => r.seed),
      overall: meanStd(rs.map((r) => r.summary.overall.accuracy)),
      byCategory: Object.fromEntries(
        cats.map((
          c,
        ) => [
          c,
          meanStd(rs.flatMap((r) => r.summary.byCategory[c] ? [r.summary.byCategory[c].accuracy] : [])),
        ]),
      ),
      losses: Object.fromEntries(
        lossKeys.map((
          k,
        ) => [k, meanStd(rs.flatMap((r) => Number.isFinite(r.losses[k]) ? [r.losses[k]] : []))]),
      ),
      reliance: meanStd(rs.flatMap((r) => (r.reliance === undefined ? [] : [r.reliance]))),
    };
  });
}

const pct = (m: MeanStd) =>
  Number.isNaN(m.mean) ? "-" : `${(100 * m.mean).toFixed(1)} ± ${(100 * m.std).toFixed(1)}`;
const num = (m: MeanStd) => Number.isNaN(m.mean) ? "-" : `${m.mean.toFixed(3)} ± ${m.std.toFixed(3)}`;

/**
 * The aggregate as a markdown table: accuracy (%) overall and per category, the final text loss, and the
 * image reliance gap (%) when measured.
 */
export function ablationMarkdown(rows: readonly AblationRow[]): string {
  const cats = [...new Set(rows.flatMap((r) => Object.keys(r.byCategory)))].sort();
  const reliance = rows.some((r) => r.reliance.n > 0);
  const head = [
    "variant",
    "seeds",
    "overall acc %",
    ...cats.map((c) => `${c} %`),
    "final text loss",
    ...(reliance ? ["image reliance %"] : []),
  ];
  const lines = [`| ${head.join(" | ")} |`, `| ${head.map(() => "---").join(" | ")} |`];
  for (const r of rows) {
    const cells = [
      r.variant,
      String(r.seeds.length),
      pct(r.overall),
      ...cats.map((c) => r.byCategory[c] ? pct(r.byCategory[c]) : "-"),
      r.losses.loss_text ? num(r.losses.loss_text) : "-",
      ...(reliance ? [r.reliance.n > 0 ? pct(r.reliance) : "-"] : []),
    ];
    lines.push(`| ${cells.join(" | ")} |`);
  }
  const notes = "Mean ± sample standard deviation over seeds. Final text loss: the mean of the last " +
    `${FINAL_LOSS_STEPS} steps' text losses.` +
    (reliance
      ? " Image reliance: how much higher the stage-2 text loss is when each row gets another row's image."
      : "");
  return lines.join("\n") + `\n\n${notes}\n`;
}

/** A grouped bar chart: one group per measure (overall, then categories), one bar per variant, ± 1 std. */
export function ablationSvg(rows: readonly AblationRow[], title: string): string {
  const cats = [...new Set(rows.flatMap((r) => Object.keys(r.byCategory)))].sort();
  const groups = ["overall", ...cats];
  const value = (r: AblationRow, g: string) => g === "overall" ? r.overall : r.byCategory[g];
  const W = 120 + groups.length * (rows.length * 22 + 24), H = 320, top = 40, bottom = 260, left = 60;
  const y = (v: number) => bottom - (bottom - top) * Math.max(0, Math.min(1, v));
  const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;");
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="11">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="20" text-anchor="middle" font-size="14">${esc(title)}</text>`,
  ];
  for (const t of [0, 0.25, 0.5, 0.75, 1]) {
    out.push(`<line x1="${left}" x2="${W - 10}" y1="${y(t)}" y2="${y(t)}" stroke="#ddd"/>`);
    out.push(`<text x="${left - 6}" y="${y(t) + 4}" text-anchor="end">${100 * t}%</text>`);
  }
  groups.forEach((g, gi) => {
    const x0 = left + 12 + gi * (rows.length * 22 + 24);
    rows.forEach((r, ri) => {
      const m = value(r, g);
      if (!m || Number.isNaN(m.mean)) return;
      const x = x0 + ri * 22;
      out.push(
        `<rect x="${x}" y="${y(m.mean)}" width="18" height="${bottom - y(m.mean)}" fill="${
          CHART_COLORS[ri % CHART_COLORS.length]
        }"><title>${esc(`${r.variant} ${g}: ${pct(m)}`)}</title></rect>`,
      );
      const cx = x + 9;
      out.push(
        `<line x1="${cx}" x2="${cx}" y1="${y(m.mean + m.std)}" y2="${y(m.mean - m.std)}" stroke="black"/>`,
      );
    });
    out.push(
      `<text x="${x0 + (rows.length * 22) / 2}" y="${bottom + 16}" text-anchor="middle">${esc(g)}</text>`,
    );
  });
  rows.forEach((r, ri) => {
    const x = left + ri * 110, yy = H - 22;
    out.push(
      `<rect x="${x}" y="${yy - 9}" width="10" height="10" fill="${
        CHART_COLORS[ri % CHART_COLORS.length]
      }"/>`,
    );
    out.push(`<text x="${x + 14}" y="${yy}">${esc(r.variant)}</text>`);
  });
  out.push("</svg>");
  return out.join("\n") + "\n";
}

/**
 * The final evaluation of the ablation run in `runDir` (its `eval.json`), or null when it has none yet.
 * A run whose `config.json` differs from `cfg` (the recipe, or the parts it was built on, changed since)
 * is an error naming the folder, so that a table never mixes runs of another recipe into its rows.
 */
export async function finishedRunReport(runDir: string, cfg: unknown): Promise<EvalReport | null> {
  const read = async (file: string): Promise<string | null> => {
    try {
      return await Deno.readTextFile(join(runDir, file));
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return null;
      throw new Error(`${join(runDir, file)}: ${(err as Error).message}; delete the run folder to redo it`);
    }
  };
  const parse = (file: string, text: string | null): unknown => {
    try {
      return text === null ? null : JSON.parse(text);
    } catch (err) {
      throw new Error(`${join(runDir, file)}: ${(err as Error).message}; delete the run folder to redo it`);
    }
  };
  const report = parse("eval.json", await read("eval.json"));
  if (report === null) return null;
  const saved = parse("config.json", await read("config.json"));
  if (JSON.stringify(saved) !== JSON.stringify(cfg)) {
    throw new Error(
      `${runDir}: this finished run was trained with another config than the ablation's (the recipe or ` +
        `its parts changed since); delete the folder to retrain it, or give the ablation another --out`,
    );
  }
  return report as EvalReport;
}
