/**
 * The framework's head kinds, each one {@linkcode HeadKind} registered through the same door as a
 * user's kind (`registerHead`): `none` (the LLaVA baseline), `linear` (one classifier per depth),
 * `asvr_depth` (ASVR's RQ depth transformer) and `dual` (appearance + semantic heads). Importing this
 * module registers them; `heads/mod.ts` does.
 * @module
 */

import { visualLogitsBytes } from "../losses/visual_ce.ts";
import { AsvrDepthHead } from "./asvr_depth.ts";
import {
  type AsvrDepthHeadConfig,
  asvrDepthHeadSchema,
  classifierTarget,
  DUAL_SIDES,
  type DualHeadConfig,
  fillClassifierSizes,
  type LinearHeadConfig,
  linearHeadSchema,
  type NoneHeadConfig,
  noneHeadSchema,
  parseDualHeadConfig,
} from "./config.ts";
import { DualHead } from "./dual.ts";
import { LinearHead } from "./linear.ts";
import { NoneHead } from "./none.ts";
import { type ParamShape, ShapeRecorder } from "./param_init.ts";
import {
  buildHead,
  fillHeadConfig,
  type HeadKind,
  headParamShapes,
  headPlanBytes,
  headTargets,
  registerBuiltinHead,
} from "./registry.ts";

/** The config of no visual head: the default head of a model, the LLaVA baseline. */
export const NO_HEAD: Readonly<NoneHeadConfig> = { kind: "none" };

/** No visual head, no visual loss, no parameters. */
export const NONE_HEAD: HeadKind<NoneHeadConfig> = {
  kind: "none",
  schema: noneHeadSchema,
  build: (e) => new NoneHead(e),
  targets: () => [],
  paramShapes: () => new Map(),
};

/** What differs between the classifier kinds (one target rq tokenizer, one classifier per depth). */
interface ClassifierParts<C extends LinearHeadConfig | AsvrDepthHeadConfig> {
  kind: C["kind"];
  schema: HeadKind<C>["schema"];
  build: HeadKind<C>["build"];
  /** The head's parameter-making code (run by a `ShapeRecorder` for the plan). */
  makeParams: (m: ShapeRecorder, cfg: C, llmWidth: number) => unknown;
  /** Activations per image row and depth, in units of the head's width. */
  perRowWidths: (cfg: C) => number;
}

/**
 * A classifier kind: its target and the fields it fills come from `target`'s rq tokenizer; its plan's
 * peak is its activations over the image rows plus one chunk of one depth's logits.
 */
function classifierKind<C extends LinearHeadConfig | AsvrDepthHeadConfig>(
  parts: ClassifierParts<C>,
): HeadKind<C> {
  return {
    kind: parts.kind,
    schema: parts.schema,
    build: parts.build,
    targets: (cfg) => [classifierTarget(cfg)],
    fill: fillClassifierSizes,
    paramShapes: (cfg, llmWidth) => recordShapes((m) => parts.makeParams(m, cfg, llmWidth)),
    planBytes: (cfg, step) => ({
      activations: step.rows * cfg.depths * cfg.width * parts.perRowWidths(cfg) * step.bytes,
      logits: visualLogitsBytes({
        rows: step.rows,
        vocab: Math.max(...cfg.codebookSizes),
        chunkRows: cfg.chunkRows ?? step.chunkRows,
      }).chunked,
    }),
  };
}

/** One classifier per depth on a projected state. */
export const LINEAR_HEAD: HeadKind<LinearHeadConfig> = classifierKind<LinearHeadConfig>({
  kind: "linear",
  schema: linearHeadSchema,
  build: (e, cfg, ctx) => LinearHead.create(e, cfg, ctx),
  makeParams: (m, cfg, llmWidth) => LinearHead.makeParams(m, cfg, llmWidth),
  perRowWidths: () => 2,
});

/** ASVR's RQ depth transformer. */
export const ASVR_DEPTH_HEAD: HeadKind<AsvrDepthHeadConfig> = classifierKind<AsvrDepthHeadConfig>({
  kind: "asvr_depth",
  schema: asvrDepthHeadSchema,
  build: (e, cfg, ctx) => AsvrDepthHead.create(e, cfg, ctx),
  makeParams: (m, cfg, llmWidth) => AsvrDepthHead.makeParams(m, cfg, llmWidth),
  // Per row and depth: the projection, the depth sequence and per layer its norms, q/k/v, attention
  // and FFN tensors (measured against the buffer pool's peak by the plan's test).
  perRowWidths: (cfg) => 4 + 12 * cfg.layers,
});

/** Two heads whose losses add; each side is a head of any registered kind. */
export const DUAL_HEAD: HeadKind<DualHeadConfig> = {
  kind: "dual",
  parse: parseDualHeadConfig,
  build: (e, cfg, ctx) => {
    // Different seeds, so the two sides do not start as copies of each other.
    const seed = ctx.seed ?? 0;
    return new DualHead(
      buildHead(e, cfg.appearance, { ...ctx, seed: seed * 2 + 1 }),
      buildHead(e, cfg.semantic, { ...ctx, seed: seed * 2 + 2 }),
    );
  },
  targets: (cfg) =>
    DUAL_SIDES.flatMap(({ side }) =>
      headTargets(cfg[side], []).map((t) => ({ ...t, at: `.${side}${t.at}` }))
    ),
  fill: (value, tokenizers) => {
    const out = { ...value };
    for (const { side, target } of DUAL_SIDES) {
      const v = value[side];
      if (typeof v !== "object" || v === null || Array.isArray(v)) continue;
      // A side fills from the tokenizer of its role unless it names another; a kind that fills
      // nothing gets its config back as written (no target field added).
      const withRole = { target, ...v };
      const filled = fillHeadConfig(withRole, tokenizers);
      out[side] = filled === withRole ? v : filled;
    }
    return out;
  },
  paramShapes: (cfg, llmWidth) => {
    const out = new Map<string, ParamShape>();
    for (const { side } of DUAL_SIDES) {
      const shapes = headParamShapes(cfg[side], llmWidth);
      if (!shapes) throw new Error(`head.${side}: kind "${cfg[side].kind}" declares no paramShapes`);
      for (const [n, s] of shapes) out.set(`${side}.${n}`, s);
    }
    return out;
  },
  planBytes: (cfg, step) => {
    const [a, s] = DUAL_SIDES.map(({ side }) => headPlanBytes(cfg[side], step));
    return { activations: a.activations + s.activations, logits: Math.max(a.logits, s.logits) };
  },
};

/** The names and shapes the parameter-making code `make` makes, recorded instead of made. */
function recordShapes(make: (m: ShapeRecorder) => unknown): Map<string, ParamShape> {
  const m = new ShapeRecorder();
  make(m);
  return m.shapes;
}

for (const desc of [NONE_HEAD, LINEAR_HEAD, ASVR_DEPTH_HEAD, DUAL_HEAD] as HeadKind[]) {
  registerBuiltinHead(desc);
}
