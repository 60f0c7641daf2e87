/**
 * Builds a visual head from its config: the built-in kinds through an exhaustive switch, custom kinds
 * through the registry (`registerHead`).
 * @module
 */

import type { Engine } from "../core/engine.ts";
import { AsvrDepthHead } from "./asvr_depth.ts";
import { type BuiltinHeadConfig, type CustomHeadConfig, type HeadConfig, parseHeadConfig } from "./config.ts";
import { DualHead } from "./dual.ts";
import { type HeadContext, isBuiltinHeadKind, type VisualHead } from "./head.ts";
import { LinearHead } from "./linear.ts";
import { NoneHead } from "./none.ts";
import { headRegistration, registeredHeadKinds } from "./registry.ts";

/**
 * The head a config describes, with fresh parameters (`ctx.dtype`, default f32; `ctx.seed`, default
 * 0). The config is validated again (and its defaults filled), so a hand-written object works too.
 * An unknown kind is an error listing the registered kinds.
 *
 * ```ts ignore
 * const head = buildHead(e, parseHeadConfig(cfg.head, "head"), { llmWidth: 4096, dtype: "f16" });
 * const { total, terms } = head.loss(hidden, { semantic: { codes, codebooks } });
 * ```
 */
export function buildHead(e: Engine, cfg: HeadConfig, ctx: HeadContext): VisualHead {
  if (!Number.isInteger(ctx.llmWidth) || ctx.llmWidth < 1) {
    throw new Error(
      `buildHead: ctx.llmWidth is ${ctx.llmWidth}; it must be the LLM's width, a positive integer`,
    );
  }
  const kind = (cfg as { kind?: unknown }).kind;
  if (typeof kind === "string" && !isBuiltinHeadKind(kind) && !headRegistration(kind)) {
    throw new Error(
      `buildHead: unknown head kind ${JSON.stringify(kind)}; registered kinds: ${
        registeredHeadKinds().join(", ")
      } ` +
        `(register a custom kind with registerHead first)`,
    );
  }
  const parsed = parseHeadConfig(cfg, "head");
  if (!isBuiltinHeadKind(parsed.kind)) {
    return headRegistration(parsed.kind)!.factory(e, parsed as CustomHeadConfig, ctx);
  }
  return buildBuiltin(e, parsed as BuiltinHeadConfig, ctx);
}

function buildBuiltin(e: Engine, cfg: BuiltinHeadConfig, ctx: HeadContext): VisualHead {
  const kind = cfg.kind;
  switch (kind) {
    case "none":
      return new NoneHead(e);
    case "linear":
      return LinearHead.create(e, cfg, ctx);
    case "asvr_depth":
      return AsvrDepthHead.create(e, cfg, ctx);
    case "dual": {
      // Different seeds, so the two sides do not start as copies of each other.
      const seed = ctx.seed ?? 0;
      return new DualHead(
        buildHead(e, cfg.appearance, { ...ctx, seed: seed * 2 + 1 }),
        buildHead(e, cfg.semantic, { ...ctx, seed: seed * 2 + 2 }),
      );
    }
    default: {
      const never: never = kind;
      throw new Error(`buildHead: unhandled kind ${never}`);
    }
  }
}
