/**
 * The visual tokenizer slot of the model's config (`visualTokenizers[i]`): which frozen tokenizer
 * turns an image into the discrete targets the visual head predicts. A discriminated union on `kind`:
 * - `"rq"`: residual quantization of a frozen encoder's features at one layer, with codebooks from a
 *   safetensors file (`rq.ts`, `codebooks.ts`): the semantic tokenizer (layer 26 of SigLIP) or the
 *   appearance one (an early layer, or raw patch pixels);
 * - `"onnx"`: any tokenizer exported to ONNX (`onnx_tokenizer.ts`), image in, codes out.
 *
 * Defaults live once, in the schema below. What the other slots read of a tokenizer goes through this
 * file too: {@linkcode tokenizerSizes} (what a head is filled and checked against),
 * {@linkcode isRqTokenizer} / {@linkcode rqTokenizers} and {@linkcode tokenizerFile} (the file it reads).
 *
 * ```ts ignore
 * const cfg = parseVisualTokenizerConfig({ kind: "rq", name: "semantic", codebooks: "cb.safetensors" }, "t");
 * // { kind: "rq", name: "semantic", encoder: "input", layer: 26, depths: 8, codebookSize: 16384, ... }
 * ```
 * @module
 */

import { z } from "zod";
import { parseSchema } from "../schema/parse.ts";
import { type OnnxTokenizerConfig, parseOnnxTokenizerConfig } from "./onnx_tokenizer.ts";

/** The tokenizer kinds. */
export type VisualTokenizerKind = "rq" | "onnx";

/** Every {@linkcode VisualTokenizerKind}. */
export const VISUAL_TOKENIZER_KINDS: readonly VisualTokenizerKind[] = ["rq", "onnx"];

/** Residual quantization of frozen encoder features (ASVR_SPEC section 2), parsed: every default filled. */
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

/** An rq visual tokenizer as written: `kind`, `name` and `codebooks` are required, the rest have defaults. */
export type RqTokenizerConfigInput =
  & Pick<RqTokenizerConfig, "kind" | "name" | "codebooks">
  & Partial<RqTokenizerConfig>;

/** A visual tokenizer config, by `kind`. */
export type VisualTokenizerConfig = RqTokenizerConfig | OnnxTokenizerConfig;

/** A visual tokenizer as written (an ONNX tokenizer's config has no defaults). */
export type VisualTokenizerConfigInput = RqTokenizerConfigInput | OnnxTokenizerConfig;

const nonEmpty = z.string().min(1);
const CODEBOOKS =
  "expected the path of a codebooks .safetensors file (make one with `deno task tokenizer fit`)";

/** An rq tokenizer's rules and defaults; its parsed output is an {@linkcode RqTokenizerConfig}. */
const rqSchema: z.ZodType<RqTokenizerConfig, RqTokenizerConfigInput> = z.strictObject({
  kind: z.literal("rq"),
  name: nonEmpty,
  encoder: nonEmpty.default("input"),
  layer: z.union([z.number().int().min(0), z.literal("pixels")], {
    error: `expected an integer >= 0 (the encoder layer, e.g. 26) or "pixels"`,
  }).default(26),
  depths: z.number().int().min(1).default(8),
  codebookSize: z.number().int().min(1)
    .max(65536, { error: "Too big: at most 65536 (targets are cached as u16; e.g. 16384)" })
    .default(16384),
  sharedCodebook: z.boolean().default(false),
  codebooks: z.string({ error: CODEBOOKS }).min(1, { error: CODEBOOKS }),
});

/** A visual tokenizer's `kind`, read first to pick the kind's own schema. */
const kindSchema = z.looseObject({ kind: z.enum(VISUAL_TOKENIZER_KINDS) });

/**
 * Validates a visual tokenizer config given as data and fills in the defaults. `path` names where
 * the value sits (e.g. `visualTokenizers[1]`); errors name the field under it, the value found and
 * what is allowed. Kind "onnx" is validated by `parseOnnxTokenizerConfig` of `onnx_tokenizer.ts`.
 */
export function parseVisualTokenizerConfig(value: unknown, path: string): VisualTokenizerConfig {
  const { kind } = parseSchema(kindSchema, value, path, {
    hints: { kind: VISUAL_TOKENIZER_KINDS.map((k) => JSON.stringify(k)).join(", ") },
  });
  switch (kind) {
    case "rq":
      return parseSchema(rqSchema, value, path);
    case "onnx":
      return parseOnnxTokenizerConfig(value, path);
    default: {
      const never: never = kind;
      throw new Error(`${path}: unhandled visual tokenizer kind ${never}`);
    }
  }
}

/** Whether a visual tokenizer is an rq one (it has codebooks and quantizes an encoder's features). */
export function isRqTokenizer(t: VisualTokenizerConfig): t is RqTokenizerConfig {
  return t.kind === "rq";
}

/** The rq visual tokenizers among `toks`, in order. */
export function rqTokenizers(toks: readonly VisualTokenizerConfig[]): RqTokenizerConfig[] {
  return toks.filter(isRqTokenizer);
}

/** What a head's config may be filled and checked against: one visual tokenizer of the model. */
export interface TokenizerSizes {
  /** The tokenizer's name (the key of its codes in `VisualTargets`). */
  name: string;
  /** Its RQ depths D, when its config states them (an ONNX tokenizer's are known only when it runs). */
  depths?: number;
  /** Codes per codebook, when its config states it. */
  codebookSize?: number;
  /** Whether it has codebook vectors a head can teacher-force with (RQ: yes; ONNX: no). */
  hasCodebooks: boolean;
}

/** What a head may be filled and checked against, of each visual tokenizer. */
export function tokenizerSizes(toks: readonly VisualTokenizerConfig[]): TokenizerSizes[] {
  return toks.map((t) => {
    const kind = t.kind;
    switch (kind) {
      case "rq":
        return { name: t.name, depths: t.depths, codebookSize: t.codebookSize, hasCodebooks: true };
      case "onnx":
        return { name: t.name, hasCodebooks: false };
      default: {
        const never: never = kind;
        throw new Error(`unhandled visual tokenizer kind ${never}`);
      }
    }
  });
}

/** The file a visual tokenizer reads, as a run's preflight reports it when missing. */
export interface TokenizerFile {
  /** The config field that names it (`visualTokenizers[0].codebooks`). */
  field: string;
  /** The file. */
  path: string;
  /** How to get it. */
  fix: string;
}

/**
 * The file a visual tokenizer reads: an rq tokenizer's codebooks, an ONNX tokenizer's model. `at` names
 * where the tokenizer sits in the config (`visualTokenizers[0]`).
 */
export function tokenizerFile(t: VisualTokenizerConfig, at: string): TokenizerFile {
  const kind = t.kind;
  switch (kind) {
    case "rq":
      return {
        field: `${at}.codebooks`,
        path: t.codebooks,
        fix:
          `fit codebooks with \`deno task tokenizer fit\` (residual k-means on the encoder's features) or give a safetensors file with tensor "codebooks" [D, K, Dc]`,
      };
    case "onnx":
      return { field: `${at}.model`, path: t.model, fix: "an ONNX file of the visual tokenizer" };
    default: {
      const never: never = kind;
      throw new Error(`unhandled visual tokenizer kind ${never}`);
    }
  }
}
