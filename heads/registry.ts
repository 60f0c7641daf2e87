/**
 * Head kinds: each kind of visual head, built-in or a user's, is one {@linkcode HeadKind} descriptor
 * registered here with {@linkcode registerHead}. Everything the framework does with a head config
 * goes through the descriptor of its `kind`: parsing (`parseHeadConfig`), filling fields from the
 * visual tokenizers (`fillHeadConfig`), the tokenizers whose codes it learns (`headTargets`),
 * building (`buildHead`), and `--plan`'s count (`headParamShapes`, `headPlanBytes`). No file outside
 * `heads/` names a head kind, so a user's kind gets everything a built-in kind gets.
 *
 * ```ts ignore
 * import { registerHead } from "@asvr/asvr/heads";
 * registerHead({
 *   kind: "my_head",
 *   schema: z.strictObject({ kind: z.literal("my_head"), dim: z.number().int().default(64) }),
 *   build: (e, cfg, ctx) => new MyHead(e, cfg, ctx),
 *   targets: (cfg) => [{ tokenizer: "semantic", at: "" }],
 *   paramShapes: (cfg, llmWidth) => MyHead.paramShapes(cfg, llmWidth),
 * });
 * ```
 * @module
 */

import type { Engine } from "../core/engine.ts";
import { describeValue, parseSchema, type SafeParser } from "../schema/parse.ts";
import type { HeadConfig, HeadContext, VisualHead } from "./head.ts";
import type { ParamShape } from "./param_init.ts";
import type { TokenizerSizes } from "../tokenizers/visual_config.ts";
import { isRecord } from "../schema/fields.ts";

export type { TokenizerSizes };

/** One tokenizer whose codes a head learns, and what the head expects of them. */
export interface HeadTarget {
  /** The tokenizer's name. */
  tokenizer: string;
  /**
   * Where in the head's config the target is declared, relative to the head: "" for the head
   * itself, ".semantic" for a side of a dual head. Errors name `<head path><at>.<field>`.
   */
  at: string;
  /** The depths D the head expects of the codes (checked against the tokenizer's, when both are known). */
  depths?: number;
  /** The codebook size per depth the head expects (checked likewise). */
  codebookSizes?: readonly number[];
  /** The width Dc of the codebook vectors the head teacher-forces with (it then needs codebooks). */
  codebookDim?: number;
}

/** One micro-batch, as `--plan` asks a head kind about it. */
export interface HeadPlanStep {
  /** Image rows the head sees: micro-batch x image positions (B * N). */
  rows: number;
  /** Bytes per activation element (4: f32, 2: f16). */
  bytes: number;
  /** The LLM's width d_llm. */
  llmWidth: number;
  /** The run's `loss.chunkRows` (rows per chunk of a cross-entropy whose head sets none), if set. */
  chunkRows?: number;
}

/** What a head holds at its peak in a training step, in bytes (`--plan`). */
export interface HeadPlanBytes {
  /** Activations kept for backward. */
  activations: number;
  /** The loss's logits at their peak (one depth, one chunk of rows). */
  logits: number;
}

/**
 * A kind of visual head: everything the framework needs to parse, fill, check, build and plan it.
 * Only `kind` and `build` are required; `schema` (or `parse`) validates the config, `targets` says
 * which tokenizers' codes the model feeds it (default: every tokenizer), `paramShapes` lets `--plan`
 * count it.
 */
export interface HeadKind<C extends HeadConfig = HeadConfig> {
  /** The `kind` of its configs: snake_case, `[a-z][a-z0-9_]*`. */
  kind: string;
  /**
   * Validates a config of this kind (`kind` included) and fills its defaults; a zod schema fits as
   * it is. Its issues are reported under the config's path (e.g. `head.dim`). Without `schema` or
   * `parse`, a config passes through as given.
   */
  schema?: SafeParser<C>;
  /** Instead of `schema`: parses a config of this kind or throws an error naming `path`'s fields. */
  parse?: (value: Record<string, unknown>, path: string) => C;
  /** Builds the head from its parsed config, with fresh parameters. */
  build(e: Engine, cfg: C, ctx: HeadContext): VisualHead;
  /**
   * The tokenizers whose codes it learns, in order (default: every visual tokenizer of the model).
   * The model feeds the head exactly these in `VisualTargets`, checks each names a tokenizer, and
   * checks the depths, codebook sizes and codebook width given here against that tokenizer.
   */
  targets?(cfg: C): HeadTarget[];
  /**
   * Fills fields the config leaves out from the model's tokenizers, before parsing (the built-in
   * classifier heads take `depths` and `codebookSizes` from their target). Returns the config as
   * written with those fields added; leaves it as given when it has nothing to fill.
   */
  fill?(value: Record<string, unknown>, tokenizers: readonly TokenizerSizes[]): Record<string, unknown>;
  /**
   * Its parameters' names and shapes for an LLM of width `llmWidth` (what `--plan` counts); run the
   * code that makes them with a `ShapeRecorder` to get them without a second description.
   */
  paramShapes?(cfg: C, llmWidth: number): Map<string, ParamShape>;
  /** What a training step of it holds beyond its parameters (`--plan`; default: nothing counted). */
  planBytes?(cfg: C, step: HeadPlanStep): HeadPlanBytes;
}

const KIND_PATTERN = /^[a-z][a-z0-9_]*$/;
// deno-lint-ignore no-explicit-any
const registry = new Map<string, HeadKind<any>>();
const builtin = new Set<string>();

/**
 * Registers a head kind. Its `kind` is snake_case and must not be registered already by another
 * descriptor (registering the same descriptor again is a no-op, so a module may be imported twice).
 * From then on its configs parse, fill, build and plan like the built-in kinds'.
 */
export function registerHead<C extends HeadConfig>(desc: HeadKind<C>): void {
  const kind = desc?.kind;
  if (typeof kind !== "string" || !KIND_PATTERN.test(kind)) {
    throw new Error(
      `registerHead: kind ${JSON.stringify(kind)} must be snake_case ([a-z][a-z0-9_]*), e.g. "cosine_head"`,
    );
  }
  if (typeof desc.build !== "function") {
    throw new Error(`registerHead: kind "${kind}" needs a build(e, cfg, ctx) function`);
  }
  const prev = registry.get(kind);
  if (prev && prev !== desc) {
    throw new Error(
      builtin.has(kind)
        ? `registerHead: "${kind}" is a built-in head kind (${[...builtin].join(", ")}); pick another name`
        : `registerHead: kind "${kind}" is already registered by another module; pick another name`,
    );
  }
  registry.set(kind, desc);
}

/** Registers a kind the framework ships (heads/builtin.ts); a user's kind cannot take its name. */
export function registerBuiltinHead<C extends HeadConfig>(desc: HeadKind<C>): void {
  registerHead(desc);
  builtin.add(desc.kind);
}

/** Every registered kind: the built-in ones in registration order, then the others sorted. */
export function registeredHeadKinds(): string[] {
  return [...builtin, ...[...registry.keys()].filter((k) => !builtin.has(k)).sort()];
}

/** The descriptor of `kind`; an unknown kind is an error at `path` listing the registered kinds. */
export function headKind(kind: unknown, path = "head"): HeadKind {
  const allowed = () => registeredHeadKinds().map((k) => JSON.stringify(k)).join(", ");
  if (typeof kind !== "string") {
    throw new Error(
      `${path}.kind: ${
        kind === undefined ? "missing" : `got ${describeValue(kind)}`
      }; use one of ${allowed()}`,
    );
  }
  const desc = registry.get(kind);
  if (!desc) {
    throw new Error(
      `${path}.kind: unknown head kind ${JSON.stringify(kind)}; use one of ${allowed()} (a custom kind ` +
        `is registered by importing its module: in the run file, or with --import <module>)`,
    );
  }
  return desc;
}

// ------------------------------------------------------------------ the operations on any kind

/**
 * Validates a head config given as data and fills its defaults, by its kind's `schema` (or `parse`).
 * `path` names where it sits in the whole config (e.g. "head"); errors name the full path of each bad
 * field (`head.layers`, `head.codebookSizes[2]`). Parsing a parsed config returns an equal config.
 */
export function parseHeadConfig(value: unknown, path: string): HeadConfig {
  if (!isRecord(value)) {
    throw new Error(`${path}: expected an object with a "kind" field, got ${describeValue(value)}`);
  }
  const desc = headKind(value.kind, path);
  if (desc.parse) return desc.parse(value, path);
  if (desc.schema) return parseSchema(desc.schema, value, path);
  return { ...value } as HeadConfig;
}

/**
 * The head a config describes, with fresh parameters (`ctx.dtype`, default f32; `ctx.seed`, default
 * 0). The config is validated again (and its defaults filled), so a hand-written object works too.
 */
export function buildHead(e: Engine, cfg: HeadConfig, ctx: HeadContext): VisualHead {
  if (!Number.isInteger(ctx.llmWidth) || ctx.llmWidth < 1) {
    throw new Error(
      `buildHead: ctx.llmWidth is ${ctx.llmWidth}; it must be the LLM's width, a positive integer`,
    );
  }
  const parsed = parseHeadConfig(cfg, "head");
  return headKind(parsed.kind).build(e, parsed, ctx);
}

/** A config as written with the fields its kind fills from `tokenizers` (unchanged when none). */
export function fillHeadConfig(value: unknown, tokenizers: readonly TokenizerSizes[]): unknown {
  if (!isRecord(value) || typeof value.kind !== "string") return value;
  const desc = registry.get(value.kind);
  return desc?.fill ? desc.fill(value, tokenizers) : value;
}

/** The tokenizers a parsed head learns (its kind's `targets`, else every one of `tokenizers`). */
export function headTargets(cfg: HeadConfig, tokenizers: readonly { name: string }[]): HeadTarget[] {
  const desc = headKind(cfg.kind);
  return desc.targets ? desc.targets(cfg) : tokenizers.map((t) => ({ tokenizer: t.name, at: "" }));
}

/**
 * Checks a parsed head's targets against the model's tokenizers: each names one, its depths and
 * codebook sizes equal the tokenizer's, and a head that teacher-forces has codebooks to do it with.
 * Errors name the head's field (`head.target`, `head.semantic.depths`) and the fix.
 */
export function checkHeadTargets(cfg: HeadConfig, tokenizers: readonly TokenizerSizes[], path: string): void {
  for (const t of headTargets(cfg, tokenizers)) {
    const at = path + t.at;
    const i = tokenizers.findIndex((k) => k.name === t.tokenizer);
    if (i < 0) {
      const have = tokenizers.length ? tokenizers.map((k) => JSON.stringify(k.name)).join(", ") : "none";
      throw new Error(
        `${at}.target is ${JSON.stringify(t.tokenizer)}, which names no visual tokenizer (visualTokenizers ` +
          `has: ${have}); add a visual tokenizer named ${JSON.stringify(t.tokenizer)} or change ${at}.target`,
      );
    }
    const tok = tokenizers[i];
    const where = `visualTokenizers[${i}] (${JSON.stringify(tok.name)})`;
    if (t.codebookDim !== undefined && !tok.hasCodebooks) {
      throw new Error(
        `${at}.target: ${where} has no codebooks, but the ${cfg.kind} head teacher-forces with the codebook ` +
          `vectors; use an rq tokenizer or a head that does not read codebooks`,
      );
    }
    if (t.depths !== undefined && tok.depths !== undefined && t.depths !== tok.depths) {
      throw new Error(
        `${at}.depths is ${t.depths} but ${where} has depths ${tok.depths}; they must be equal ` +
          `(leave ${at}.depths out to take the tokenizer's)`,
      );
    }
    t.codebookSizes?.forEach((k, d) => {
      if (tok.codebookSize !== undefined && k !== tok.codebookSize) {
        throw new Error(
          `${at}.codebookSizes[${d}] is ${k} but ${where} has codebookSize ${tok.codebookSize}; they must ` +
            `be equal (leave ${at}.codebookSizes out to take the tokenizer's)`,
        );
      }
    });
  }
}

/** A parsed head's parameter shapes for an LLM of width `llmWidth`; null when its kind declares none. */
export function headParamShapes(cfg: HeadConfig, llmWidth: number): Map<string, ParamShape> | null {
  const desc = headKind(cfg.kind);
  return desc.paramShapes ? desc.paramShapes(cfg, llmWidth) : null;
}

/** What a step of a parsed head holds beyond its parameters (zero when its kind declares nothing). */
export function headPlanBytes(cfg: HeadConfig, step: HeadPlanStep): HeadPlanBytes {
  const desc = headKind(cfg.kind);
  return desc.planBytes ? desc.planBytes(cfg, step) : { activations: 0, logits: 0 };
}
