/**
 * The configs of the framework's head kinds, as data: one zod schema per kind, whose parsed output
 * is the kind's config type (one definition, no hand-written twin). Every default lives here; the
 * heads read the parsed config and default nothing. The kinds themselves (schema + build + targets +
 * plan) are registered in `builtin.ts`.
 *
 * ```ts ignore
 * const cfg = parseHeadConfig({ kind: "asvr_depth", depths: 4, codebookSizes: [512, 512, 512, 512] }, "head");
 * cfg.width; // 2048, cfg.heads: 16, cfg.layers: 3
 * ```
 * @module
 */

import { z } from "zod";
import { type HeadConfig, VISUAL_TARGETS, type VisualTarget } from "./head.ts";
import { type HeadTarget, parseHeadConfig, type TokenizerSizes } from "./registry.ts";
import { parseSchema } from "../schema/parse.ts";

/** The largest head size of the attention kernel. */
const MAX_HEAD_SIZE = 128;

const posInt = z.number().int().positive();
const target = z.enum(VISUAL_TARGETS as [VisualTarget, ...VisualTarget[]]);

/** The classifier fields both classifier heads share, with their defaults. */
const CLASSIFIER_FIELDS = {
  /** Width of the projected state (default 2048). */
  width: posInt.default(2048),
  /** Number of RQ depths D (default 8; in a model, its target tokenizer's). */
  depths: posInt.default(8),
  /** Codebook size V_d per depth, D entries (default 16384 each; in a model, its target tokenizer's). */
  codebookSizes: z.array(posInt).optional(),
  /** Which tokenizer's codes it learns (default "semantic"). */
  target: target.default("semantic"),
  /**
   * Rows per chunk of the classifier cross-entropy, which bounds the logits held at once; null
   * (default): the run's `loss.chunkRows`, else 64 MiB of logits per chunk.
   */
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

/** The LLaVA baseline's config. */
export type NoneHeadConfig = { kind: "none" };

/** The fields both classifier heads share, parsed (see the schema's fields for each default). */
export type ClassifierFields = {
  /** Width of the projected state. */
  width: number;
  /** Number of RQ depths D. */
  depths: number;
  /** Codebook size V_d per depth, D entries. */
  codebookSizes: number[];
  /** Which tokenizer's codes it learns. */
  target: VisualTarget;
  /** Rows per chunk of the classifier cross-entropy; null: the run's `loss.chunkRows`, else 64 MiB of logits. */
  chunkRows: number | null;
};

/** One classifier per depth on a projected state: Linear d_llm -> width, exact GELU, D x Linear width -> V_d. */
export type LinearHeadConfig = { kind: "linear" } & ClassifierFields;

/** ASVR's RQ depth transformer (ASVR_SPEC section 3), parsed. */
export type AsvrDepthHeadConfig = { kind: "asvr_depth" } & ClassifierFields & {
  /** Causal depth-transformer layers. */
  layers: number;
  /** Attention heads NH. */
  heads: number;
  /** Width Dc of the codebook vectors used for teacher forcing. */
  codebookDim: number;
  /** Re-run each depth layer's forward in backward instead of keeping its activations. */
  checkpointLayers: boolean;
};

/** A linear head as written (every field but `kind` has a default). */
export type LinearHeadConfigInput = { kind: "linear" } & Partial<ClassifierFields>;

/** An ASVR depth-transformer head as written (every field but `kind` has a default). */
export type AsvrDepthHeadConfigInput = { kind: "asvr_depth" } & Partial<Omit<AsvrDepthHeadConfig, "kind">>;

/** A dual head as written: each side a head config of any kind as written. */
export interface DualHeadConfigInput {
  /** Discriminator. */
  kind: "dual";
  /** The head on the "pixel" codes. */
  appearance: HeadConfigInput;
  /** The head on the "semantic" codes. */
  semantic: HeadConfigInput;
}

/** A head config as written: a built-in kind with any of its fields, or a registered custom kind. */
export type HeadConfigInput =
  | NoneHeadConfig
  | LinearHeadConfigInput
  | AsvrDepthHeadConfigInput
  | DualHeadConfigInput
  | HeadConfig;

// The schemas are typed by the configs above, so the compiler holds each type to its schema.

/** Validates a `none` head config. */
export const noneHeadSchema: z.ZodType<NoneHeadConfig> = z.strictObject({ kind: z.literal("none") });

/** Validates a linear head config and fills its defaults. */
export const linearHeadSchema: z.ZodType<LinearHeadConfig, LinearHeadConfigInput> = z.strictObject({
  kind: z.literal("linear"),
  ...CLASSIFIER_FIELDS,
}).transform((v, ctx) => withCodebookSizes(v, ctx));

/** Validates an asvr_depth head config and fills its defaults. */
export const asvrDepthHeadSchema: z.ZodType<AsvrDepthHeadConfig, AsvrDepthHeadConfigInput> = z.strictObject({
  kind: z.literal("asvr_depth"),
  ...CLASSIFIER_FIELDS,
  /** Causal depth-transformer layers (default 3). */
  layers: posInt.default(3),
  /** Attention heads NH (default width / 128; width / heads must be at most 128). */
  heads: posInt.optional(),
  /** Width Dc of the codebook vectors used for teacher forcing (default 1152). */
  codebookDim: posInt.default(1152),
  /** Re-run each depth layer's forward in backward instead of keeping its activations (default true). */
  checkpointLayers: z.boolean().default(true),
}).transform((v, ctx) => {
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

const dualHeadSchema = z.strictObject({
  kind: z.literal("dual"),
  appearance: sideSchema,
  semantic: sideSchema,
});

/**
 * Two heads whose losses add: an appearance head on the "pixel" codes and a semantic head on the
 * "semantic" codes (ASVR's dual ablation). Each side is a head of any kind but `none` and `dual`; a
 * side with a `target` field defaults it to its role and must match it.
 */
export interface DualHeadConfig {
  /** Discriminator. */
  kind: "dual";
  /** The head on the pixel-VQ (appearance) codes; its loss is reported as `visual_pixel`. */
  appearance: HeadConfig;
  /** The head on the semantic codes; its loss is reported as `visual_semantic`. */
  semantic: HeadConfig;
  /** No other fields (the index signature makes it a `HeadConfig`). */
  [field: string]: unknown;
}

/** The sides of a dual head, each with the target it learns. */
export const DUAL_SIDES: readonly { side: "appearance" | "semantic"; target: VisualTarget }[] = [
  { side: "appearance", target: "pixel" },
  { side: "semantic", target: "semantic" },
];

/** A dual head: its own fields, then each side by its own kind, under `<path>.<side>`. */
export function parseDualHeadConfig(value: Record<string, unknown>, path: string): DualHeadConfig {
  const v = parseSchema(dualHeadSchema, value, path);
  const [appearance, semantic] = DUAL_SIDES.map(({ side, target }) =>
    parseDualSide(v[side], target, `${path}.${side}`)
  );
  return { kind: "dual", appearance, semantic };
}

/** A side: not "none" or "dual"; a `target` field defaults to the side's role and must match it. */
function parseDualSide(value: Record<string, unknown>, role: VisualTarget, path: string): HeadConfig {
  if (value.kind === "none" || value.kind === "dual") {
    throw new Error(
      `${path}.kind: a dual head's side cannot be ${
        JSON.stringify(value.kind)
      }; use "linear", "asvr_depth" ` +
        `or a registered kind (for a single head, use that kind instead of "dual")`,
    );
  }
  const probe = parseHeadConfig(value, path);
  if (!("target" in probe)) return probe;
  const cfg = value.target === undefined ? parseHeadConfig({ ...value, target: role }, path) : probe;
  if (cfg.target !== role) {
    throw new Error(
      `${path}.target: is ${JSON.stringify(cfg.target)}, but this side of a dual head learns the ` +
        `"${role}" codes; remove the field or set it to "${role}"`,
    );
  }
  return cfg;
}

// ------------------------------------------------------------------ the classifier heads' targets

/** A linear or asvr_depth head's one target, with the sizes it expects. */
export function classifierTarget(cfg: LinearHeadConfig | AsvrDepthHeadConfig, at = ""): HeadTarget {
  return {
    tokenizer: cfg.target,
    at,
    depths: cfg.depths,
    codebookSizes: cfg.codebookSizes,
    ...("codebookDim" in cfg ? { codebookDim: cfg.codebookDim } : {}),
  };
}

/**
 * A classifier head as written, with `depths` and `codebookSizes` taken from its target tokenizer
 * where it leaves them out (a probe parse without them finds the target and its default).
 */
export function fillClassifierSizes(
  value: Record<string, unknown>,
  tokenizers: readonly TokenizerSizes[],
): Record<string, unknown> {
  if (value.depths !== undefined && value.codebookSizes !== undefined) return value;
  const { depths: _d, codebookSizes: _c, ...rest } = value;
  let probe: HeadConfig;
  try {
    probe = parseHeadConfig(rest, "head");
  } catch {
    return value; // parsing the config as written reports the problem
  }
  const tok = tokenizers.find((t) => t.name === probe.target);
  if (!tok || tok.depths === undefined || tok.codebookSize === undefined) return value;
  const depths = typeof value.depths === "number" ? value.depths : tok.depths;
  return {
    ...value,
    depths,
    codebookSizes: value.codebookSizes ?? new Array<number>(depths).fill(tok.codebookSize),
  };
}
