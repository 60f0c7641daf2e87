/**
 * The visual tokenizer's configuration as data: which frozen tokenizer turns an image into the
 * discrete targets the visual head predicts. A discriminated union on `kind`:
 * - `"rq"`: residual quantization of a frozen encoder's features at one layer, with codebooks from a
 *   safetensors file (`rq.ts`, `codebooks.ts`): the semantic tokenizer (layer 26 of SigLIP) or the
 *   appearance one (an early layer, or raw patch pixels);
 * - `"onnx"`: any tokenizer exported to ONNX (`onnx_tokenizer.ts`), image in, codes out.
 *
 * Defaults live once, in the schema below.
 *
 * ```ts ignore
 * const cfg = parseVisualTokenizerConfig({ kind: "rq", name: "semantic", codebooks: "cb.safetensors" }, "head.tokenizer");
 * // { kind: "rq", name: "semantic", encoder: "input", layer: 26, depths: 8, codebookSize: 16384, ... }
 * ```
 * @module
 */

import { z } from "zod";
import { type OnnxTokenizerConfig, parseOnnxTokenizerConfig } from "./onnx_tokenizer.ts";

/** The tokenizer kinds. */
export type VisualTokenizerKind = "rq" | "onnx";

/** Every {@linkcode VisualTokenizerKind}. */
export const VISUAL_TOKENIZER_KINDS: readonly VisualTokenizerKind[] = ["rq", "onnx"];

/** Residual quantization of frozen encoder features (ASVR_SPEC section 2). */
export interface RqTokenizerConfig {
  /** The kind. */
  kind: "rq";
  /** What the targets are ("semantic", "pixel", or another name the heads refer to). */
  name: string;
  /** The encoder whose features are quantized: a model folder, or "input" for the VLM's own vision encoder (default). */
  encoder: string;
  /** The encoder layer whose output is quantized (default 26, the semantic recipe; ~6 for appearance), or "pixels" for raw patch pixels. */
  layer: number | "pixels";
  /** RQ depths D: codes per patch (default 8). */
  depths: number;
  /** Codes K per codebook (default 16384; at most 65536, the target cache stores u16). */
  codebookSize: number;
  /** One codebook shared by every depth (default false: one per depth). */
  sharedCodebook: boolean;
  /** The codebooks file (safetensors with tensor "codebooks" [D, K, Dc]). */
  codebooks: string;
}

/** A visual tokenizer config, by `kind`. */
export type VisualTokenizerConfig = RqTokenizerConfig | OnnxTokenizerConfig;

const nonEmpty = z.string().min(1);

const rqSchema = z.strictObject({
  kind: z.literal("rq"),
  name: nonEmpty,
  encoder: nonEmpty.default("input"),
  layer: z.union([z.number().int().min(0), z.literal("pixels")]).default(26),
  depths: z.number().int().min(1).default(8),
  codebookSize: z.number().int().min(1).max(65536).default(16384),
  sharedCodebook: z.boolean().default(false),
  codebooks: nonEmpty,
});

const kindSchema = z.object({ kind: z.enum(["rq", "onnx"]) });

/** What each field must be, for the error messages. */
const WANT: Record<string, string> = {
  kind: `one of ${VISUAL_TOKENIZER_KINDS.map((k) => `"${k}"`).join(", ")}`,
  name: `a non-empty string such as "semantic" or "pixel"`,
  encoder: `a model folder path, or "input" for the VLM's own vision encoder`,
  layer: `an integer >= 0 (the encoder layer, e.g. 26) or "pixels"`,
  depths: "an integer >= 1 (e.g. 8)",
  codebookSize: "an integer in [1, 65536] (targets are cached as u16; e.g. 16384)",
  sharedCodebook: "true or false",
  codebooks: "the path of a codebooks .safetensors file (make one with `deno task tokenizer fit`)",
};

/**
 * Validates a visual tokenizer config given as data and fills in the defaults. `path` names where
 * the value sits (e.g. "config.head.tokenizer"); errors name the field under it, the value found and
 * what is allowed. Kind "onnx" is validated by `parseOnnxTokenizerConfig` of `onnx_tokenizer.ts`.
 */
export function parseVisualTokenizerConfig(value: unknown, path: string): VisualTokenizerConfig {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new Error(
      `${path}: a visual tokenizer config must be an object with a "kind" (${WANT.kind}), got ${
        JSON.stringify(value)
      }`,
    );
  }
  const obj = value as Record<string, unknown>;
  const k = kindSchema.safeParse(value);
  if (!k.success) {
    const found = obj.kind === undefined ? "missing" : JSON.stringify(obj.kind);
    throw new Error(`${path}.kind is ${found}; it must be ${WANT.kind}`);
  }
  const kind = k.data.kind;
  switch (kind) {
    case "rq":
      return parseRq(obj, path);
    case "onnx":
      return parseOnnxTokenizerConfig(value, path);
    default: {
      const never: never = kind;
      throw new Error(`${path}: unhandled visual tokenizer kind ${never}`);
    }
  }
}

function parseRq(obj: Record<string, unknown>, path: string): RqTokenizerConfig {
  const r = rqSchema.safeParse(obj);
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  if (issue.code === "unrecognized_keys") {
    throw new Error(
      `${path}: unknown field${issue.keys.length > 1 ? "s" : ""} ${
        issue.keys.map((k) => `"${k}"`).join(", ")
      } for a ` +
        `visual tokenizer of kind "rq"; allowed: ${Object.keys(rqSchema.shape).join(", ")}`,
    );
  }
  const field = String(issue.path[0] ?? "");
  const got = obj[field];
  const found = got === undefined ? "missing" : JSON.stringify(got);
  throw new Error(`${path}.${field} is ${found}; it must be ${WANT[field] ?? issue.message}`);
}
