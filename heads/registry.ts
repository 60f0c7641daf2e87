/**
 * The registry of custom head kinds. A user's head registers its `kind` here, from its own module,
 * and from then on configs of that kind parse (`parseHeadConfig`) and build (`buildHead`) like the
 * built-in kinds; no framework file is edited.
 *
 * ```ts ignore
 * import { registerHead } from "@asvr/asvr/heads";
 * registerHead("my_head", (e, cfg, ctx) => new MyHead(e, cfg, ctx.llmWidth));
 * ```
 * @module
 */

import type { Engine } from "../core/engine.ts";
import {
  BUILTIN_HEAD_KINDS,
  type HeadConfigBase,
  type HeadContext,
  isBuiltinHeadKind,
  type VisualHead,
} from "./head.ts";

/**
 * Builds a head of a registered kind from its parsed config (the `kind` plus the kind's own fields)
 * and the model's context.
 */
export type HeadFactory = (
  e: Engine,
  cfg: HeadConfigBase & Record<string, unknown>,
  ctx: HeadContext,
) => VisualHead;

/** One problem a {@linkcode HeadConfigSchema} found: where (a path inside the config) and what. */
export interface HeadConfigIssue {
  /** The path of the bad field inside the head's config (e.g. ["dim"]). */
  readonly path: readonly PropertyKey[];
  /** What is wrong and what is allowed. */
  readonly message: string;
  /** A short code of the problem (zod's issue codes, e.g. "invalid_type"). */
  readonly code: string;
}

/** The result of {@linkcode HeadConfigSchema.safeParse}: the config with its defaults, or the issues. */
export type HeadConfigParseResult =
  | { readonly success: true; readonly data: HeadConfigBase & Record<string, unknown> }
  | { readonly success: false; readonly error: { readonly issues: readonly HeadConfigIssue[] } };

/**
 * Validates a custom kind's config. A zod schema of the whole config object (`kind` included) fits
 * as it is, e.g. `z.strictObject({ kind: z.literal("my_head"), dim: z.number().int().default(64) })`.
 */
export interface HeadConfigSchema {
  /** Parses the config, filling defaults; never throws. */
  safeParse(value: unknown): HeadConfigParseResult;
}

/** Options of {@linkcode registerHead}. */
export interface RegisterHeadOptions {
  /**
   * Validates the config of this kind. `parseHeadConfig` runs it, so its defaults fill in and its
   * issues are reported under the config's path (e.g. `head.dim`). Without one, the config passes
   * through as given.
   */
  schema?: HeadConfigSchema;
}

/** A registered kind: its factory and optional schema. */
export interface HeadRegistration {
  /** Builds the head. */
  factory: HeadFactory;
  /** Validates its config (see {@linkcode RegisterHeadOptions.schema}). */
  schema?: HeadConfigSchema;
}

const KIND_PATTERN = /^[a-z][a-z0-9_]*$/;
const registry = new Map<string, HeadRegistration>();

/**
 * Registers a custom head kind. `kind` is snake_case (`[a-z][a-z0-9_]*`), must not be a built-in kind
 * and must not be registered already with another factory (registering the same factory again is a
 * no-op, so a module may be imported twice).
 */
export function registerHead(kind: string, factory: HeadFactory, options: RegisterHeadOptions = {}): void {
  if (!KIND_PATTERN.test(kind)) {
    throw new Error(
      `registerHead: kind ${JSON.stringify(kind)} must be snake_case ([a-z][a-z0-9_]*), e.g. "cosine_head"`,
    );
  }
  if (isBuiltinHeadKind(kind)) {
    throw new Error(
      `registerHead: "${kind}" is a built-in head kind (${BUILTIN_HEAD_KINDS.join(", ")}); pick another name`,
    );
  }
  const prev = registry.get(kind);
  if (prev && prev.factory !== factory) {
    throw new Error(
      `registerHead: kind "${kind}" is already registered with another factory; pick another name`,
    );
  }
  registry.set(kind, { factory, schema: options.schema });
}

/** The registration of a custom kind, or undefined when it is not registered. */
export function headRegistration(kind: string): HeadRegistration | undefined {
  return registry.get(kind);
}

/** Every kind that parses and builds now: the built-in kinds, then the registered ones (sorted). */
export function registeredHeadKinds(): string[] {
  return [...BUILTIN_HEAD_KINDS, ...[...registry.keys()].sort()];
}
