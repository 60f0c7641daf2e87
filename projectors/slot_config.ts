/**
 * The projector slot of the model's config: a projector kind whose widths, left out, follow the
 * encoder and the LLM (the model's config fills and checks them against the other slots).
 * @module
 */

import { z } from "zod";
import { parseSchema } from "../schema/parse.ts";
import { PROJECTOR_KINDS, type ProjectorKind } from "./projector.ts";

/** The projector slot: a projector kind; the widths follow the encoder and the LLM. */
export interface ProjectorSlotConfig {
  /** Which projector (LLaVA's `mm_projector_type`). */
  kind: ProjectorKind;
  /**
   * Width of its input. Default: the encoder's width (or the input tokenizer's codebook width with
   * quantized input); required with an encoder whose width is only known when it runs (ONNX).
   */
  inDim?: number;
  /** Width of its output; default (and it must be) the LLM's width. */
  outDim?: number;
}

/** The projector slot's rules (no defaults: the widths left out follow the other slots). */
const projectorSlotSchema: z.ZodType<ProjectorSlotConfig> = z.strictObject({
  kind: z.enum(PROJECTOR_KINDS),
  inDim: z.number().int().positive().optional(),
  outDim: z.number().int().positive().optional(),
});

/**
 * Validates the projector slot given as data (alone: the widths are checked against the encoder and
 * the LLM by the model's config). `path` names where it sits (`projector`); errors name the field,
 * the value found and what is allowed.
 */
export function parseProjectorSlot(value: unknown, path: string): ProjectorSlotConfig {
  const v = parseSchema(projectorSlotSchema, value, path, {
    hints: { kind: PROJECTOR_KINDS.map((k) => JSON.stringify(k)).join(", ") },
  });
  return {
    kind: v.kind,
    ...(v.inDim !== undefined ? { inDim: v.inDim } : {}),
    ...(v.outDim !== undefined ? { outDim: v.outDim } : {}),
  };
}
