/**
 * Head configs as data: a discriminated union on `kind`, validated once at the edge by
 * {@linkcode parseHeadConfig}, whose errors name the path (e.g. `head.layers`) and what is allowed.
 * Every default lives here, in the schemas; the heads read the parsed config and default nothing.
 *
 * ```ts ignore
 * const cfg = parseHeadConfig({ kind: "asvr_depth", depths: 4, codebookSizes: [512, 512, 512, 512] }, "head");
 * cfg.width; // 2048, cfg.heads: 16, cfg.layers: 3
 * ```
 * @module
 */

import { z } from "zod";
import {
  BUILTIN_HEAD_KINDS,
  type BuiltinHeadKind,
  type HeadConfigBase,
  isBuiltinHeadKind,
  VISUAL_TARGETS,
  type VisualTarget,
} from "./head.ts";
import { type HeadConfigIssue, headRegistration, registeredHeadKinds } from "./registry.ts";

/** The LLaVA baseline: no visual head, no visual loss. */
export interface NoneHeadConfig {
  /** Discriminator. */
  kind: "none";
}

/** One classifier per depth on a projected state: Linear d_llm -> width, exact GELU, D x Linear width -> V_d. */
export interface LinearHeadConfig {
  /** Discriminator. */
  kind: "linear";
  /** Width of the projected state (default 2048). */
  width: number;
  /** Number of RQ depths D (default 8). */
  depths: number;
  /** Codebook size V_d per depth, D entries (default 16384 each). */
  codebookSizes: number[];
  /** Which tokenizer's codes it learns (default "semantic"). */
  target: VisualTarget;
  /**
   * Rows per chunk of the classifier cross-entropy, which bounds the logits held at once; null
   * (default): the loss's own choice, 64 MiB of logits per chunk.
   */
  chunkRows: number | null;
}

/** ASVR's RQ depth transformer (ASVR_SPEC section 3). */
export interface AsvrDepthHeadConfig {
  /** Discriminator. */
  kind: "asvr_depth";
  /** Width C of the input projector and the depth transformer (default 2048). */
  width: number;
  /** Causal depth-transformer layers (default 3). */
  layers: number;
  /** Attention heads NH (default width / 128; width / heads must be at most 128). */
  heads: number;
  /** Number of RQ depths D, the length of each patch's depth sequence (default 8). */
  depths: number;
  /** Codebook size V_d per depth, D entries (default 16384 each). */
  codebookSizes: number[];
  /** Width Dc of the codebook vectors used for teacher forcing (default 1152). */
  codebookDim: number;
  /** Which tokenizer's codes it learns (default "semantic"). */
  target: VisualTarget;
  /**
   * Rows per chunk of the classifier cross-entropy, which bounds the logits held at once; null
   * (default): the loss's own choice, 64 MiB of logits per chunk.
   */
  chunkRows: number | null;
  /** Re-run each depth layer's forward in backward instead of keeping its activations (default true, as the reference). */
  checkpointLayers: boolean;
}

/** A head of a registered custom kind: `kind` plus whatever fields the kind defines. */
export interface CustomHeadConfig extends HeadConfigBase {
  /** The kind's own fields. */
  [field: string]: unknown;
}

/** A side of a {@linkcode DualHeadConfig}: a classifier head of a built-in or registered kind. */
export type DualSideConfig = LinearHeadConfig | AsvrDepthHeadConfig | CustomHeadConfig;

/**
 * Two heads whose losses add: an appearance head on the "pixel" codes and a semantic head on the
 * "semantic" codes (ASVR's dual ablation). Each side's `target` defaults to its role and must match it.
 */
export interface DualHeadConfig {
  /** Discriminator. */
  kind: "dual";
  /** The head on the pixel-VQ (appearance) codes; its loss is reported as `visual_pixel`. */
  appearance: DualSideConfig;
  /** The head on the semantic codes; its loss is reported as `visual_semantic`. */
  semantic: DualSideConfig;
}

/** The configs of the built-in kinds. */
export type BuiltinHeadConfig = NoneHeadConfig | LinearHeadConfig | AsvrDepthHeadConfig | DualHeadConfig;

/** Any head config: a built-in kind or a registered custom kind. */
export type HeadConfig =
  | NoneHeadConfig
  | LinearHeadConfig
  | AsvrDepthHeadConfig
  | DualHeadConfig
  | CustomHeadConfig;

// ------------------------------------------------------------------ schemas (the defaults live here)

/** The largest head size of the attention kernel. */
const MAX_HEAD_SIZE = 128;

const posInt = z.number().int().positive();
const target = z.enum(VISUAL_TARGETS as [VisualTarget, ...VisualTarget[]]);

/** The classifier fields both classifier heads share. */
const CLASSIFIER_FIELDS = {
  width: posInt.default(2048),
  depths: posInt.default(8),
  codebookSizes: z.array(posInt).optional(),
  target: target.default("semantic"),
  chunkRows: posInt.nullable().default(null),
};

/** `codebookSizes` defaults to 16384 per depth and must have one entry per depth. */
function withCodebookSizes<T extends { depths: number; codebookSizes?: number[] }>(
  v: T,
  ctx: z.RefinementCtx,
): Omit<T, "codebookSizes"> & { codebookSizes: number[] } {
  const codebookSizes = v.codebookSizes ?? new Array<number>(v.depths).fill(16384);
  if (codebookSizes.length !== v.depths) {
    ctx.addIssue({
      code: "custom",
      path: ["codebookSizes"],
      message:
        `has ${codebookSizes.length} entries but depths is ${v.depths}; give one codebook size per depth`,
    });
  }
  return { ...v, codebookSizes };
}

const noneSchema = z.strictObject({ kind: z.literal("none") });

const linearSchema = z.strictObject({ kind: z.literal("linear"), ...CLASSIFIER_FIELDS })
  .transform((v, ctx): LinearHeadConfig => withCodebookSizes(v, ctx));

const asvrDepthSchema = z.strictObject({
  kind: z.literal("asvr_depth"),
  ...CLASSIFIER_FIELDS,
  layers: posInt.default(3),
  heads: posInt.optional(),
  codebookDim: posInt.default(1152),
  checkpointLayers: z.boolean().default(true),
}).transform((v, ctx): AsvrDepthHeadConfig => {
  const heads = v.heads ?? Math.max(1, Math.floor(v.width / MAX_HEAD_SIZE));
  if (v.width % heads !== 0) {
    ctx.addIssue({
      code: "custom",
      path: ["heads"],
      message: `width ${v.width} is not a multiple of heads ${heads}; set heads to a divisor of width` +
        (v.heads === undefined ? " (the default is width / 128)" : ""),
    });
  } else if (v.width / heads > MAX_HEAD_SIZE) {
    ctx.addIssue({
      code: "custom",
      path: ["heads"],
      message: `head size width / heads = ${v.width / heads} is over ${MAX_HEAD_SIZE}; use more heads`,
    });
  }
  return { ...withCodebookSizes(v, ctx), heads };
});

const sideSchema = z.looseObject({}, {
  error: 'expected a head config object (with a kind), e.g. { kind: "linear" }',
});
const dualSchema = z.strictObject({ kind: z.literal("dual"), appearance: sideSchema, semantic: sideSchema });

/** The role of each side of a dual head: the target it learns. */
const DUAL_SIDES: readonly { side: "appearance" | "semantic"; target: VisualTarget }[] = [
  { side: "appearance", target: "pixel" },
  { side: "semantic", target: "semantic" },
];

// ------------------------------------------------------------------ parsing

/**
 * Validates a head config given as data and fills its defaults. `path` names where it sits in the
 * whole config (e.g. "head"); errors name the full path of each bad field (`head.layers`,
 * `head.codebookSizes[2]`, `head.semantic.width`) and what it must be. Kinds: the built-in ones and
 * those registered with `registerHead` (a registered schema validates its kind's fields).
 * Parsing a parsed config returns an equal config.
 */
export function parseHeadConfig(value: unknown, path: string): HeadConfig {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new Error(`${path}: expected an object with a "kind" field, got ${describe(value)}`);
  }
  const kind = (value as Record<string, unknown>).kind;
  const allowed = () => registeredHeadKinds().map((k) => JSON.stringify(k)).join(", ");
  if (typeof kind !== "string") {
    throw new Error(
      `${path}.kind: ${kind === undefined ? "missing" : `got ${describe(kind)}`}; use one of ${allowed()}`,
    );
  }
  if (!isBuiltinHeadKind(kind)) {
    const reg = headRegistration(kind);
    if (!reg) {
      throw new Error(
        `${path}.kind: unknown head kind ${JSON.stringify(kind)}; use one of ${allowed()} ` +
          `(a custom kind must be registered with registerHead before its config is parsed)`,
      );
    }
    return reg.schema ? parseWith(reg.schema, value, path) : { ...(value as CustomHeadConfig) };
  }
  return parseBuiltin(kind, value, path);
}

function parseBuiltin(kind: BuiltinHeadKind, value: object, path: string): BuiltinHeadConfig {
  switch (kind) {
    case "none":
      return parseWith(noneSchema, value, path);
    case "linear":
      return parseWith(linearSchema, value, path);
    case "asvr_depth":
      return parseWith(asvrDepthSchema, value, path);
    case "dual": {
      const v = parseWith(dualSchema, value, path);
      const [appearance, semantic] = DUAL_SIDES.map(({ side, target }) =>
        parseDualSide(v[side], target, `${path}.${side}`)
      );
      return { kind: "dual", appearance, semantic };
    }
    default: {
      const never: never = kind;
      throw new Error(`parseHeadConfig: unhandled kind ${never}`);
    }
  }
}

/** A side of a dual head: not "none" or "dual"; `target` defaults to the side's role and must match it. */
function parseDualSide(value: unknown, role: VisualTarget, path: string): DualSideConfig {
  let v = value;
  if (typeof v === "object" && v !== null && !Array.isArray(v)) {
    const o = v as Record<string, unknown>;
    if (o.kind === "none" || o.kind === "dual") {
      throw new Error(
        `${path}.kind: a dual head's side cannot be ${JSON.stringify(o.kind)}; use "linear", "asvr_depth" ` +
          `or a registered kind (for a single head, use that kind instead of "dual")`,
      );
    }
    if ((o.kind === "linear" || o.kind === "asvr_depth") && o.target === undefined) {
      v = { ...o, target: role };
    }
  }
  const cfg = parseHeadConfig(v, path) as DualSideConfig;
  if ((cfg.kind === "linear" || cfg.kind === "asvr_depth") && cfg.target !== role) {
    throw new Error(
      `${path}.target: is ${JSON.stringify(cfg.target)}, but this side of a dual head learns the ` +
        `"${role}" codes; remove the field or set it to "${role}"`,
    );
  }
  return cfg;
}

/** Anything with zod's `safeParse` (a zod schema, or a registered kind's schema). */
interface SafeParser<T> {
  safeParse(
    value: unknown,
  ): { success: true; data: T } | { success: false; error: { issues: readonly HeadConfigIssue[] } };
}

/** Parses with `schema`; on failure one error listing every issue under its full path. */
function parseWith<T>(schema: SafeParser<T>, value: unknown, path: string): T {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const lines = r.error.issues.map((issue) => {
    const at = path + issue.path.map((k) => (typeof k === "number" ? `[${k}]` : `.${String(k)}`)).join("");
    const keys = (issue as { keys?: unknown }).keys;
    if (issue.code === "unrecognized_keys" && Array.isArray(keys)) {
      const fields = Object.keys(shapeOf(schema));
      return keys.map((k) =>
        `${at}.${k}: unknown field${fields.length ? `; allowed fields: ${fields.join(", ")}` : ""}`
      )
        .join("\n");
    }
    let got: unknown = value;
    for (const k of issue.path) got = (got as Record<PropertyKey, unknown> | undefined)?.[k as PropertyKey];
    const allowedKinds = issue.path.length === 1 && issue.path[0] === "kind"
      ? `; use one of ${BUILTIN_HEAD_KINDS.join(", ")}`
      : "";
    const gotText = got === undefined || issue.code === "custom" ? "" : ` (got ${describe(got)})`;
    return `${at}: ${issue.message}${gotText}${allowedKinds}`;
  });
  throw new Error(lines.join("\n"));
}

/** The fields of an object schema (through a transform), for listing the allowed ones. */
function shapeOf(schema: unknown): Record<string, unknown> {
  const s = schema as { shape?: Record<string, unknown>; in?: unknown };
  if (s.shape) return s.shape;
  return s.in ? shapeOf(s.in) : {};
}

function describe(v: unknown): string {
  if (v === undefined) return "undefined";
  const s = JSON.stringify(v);
  return s.length > 60 ? s.slice(0, 57) + "..." : s;
}
