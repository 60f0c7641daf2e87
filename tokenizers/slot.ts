/**
 * A visual tokenizer slot built (`visualTokenizers[i]`): an rq tokenizer's codebooks, checked against
 * its config and the encoder whose features they quantize (the VLM's own, or one loaded from the
 * tokenizer's own folder), or an ONNX tokenizer. What the rest of the model needs to know of a built
 * tokenizer goes through {@linkcode isRqTokenizerPart} and {@linkcode isOnnxTokenizerPart}.
 *
 * The checks here are the ones that need the loaded files: codebooks that do not fit their config
 * (sharing, size, depths, layer) or the encoder (width, image size and patches). Errors name the
 * config field, the file and the fix.
 *
 * ```ts ignore
 * const tok = await buildVisualTokenizer(e, cfg.visualTokenizers[0], "visualTokenizers[0]", encoder, "f32");
 * if (isRqTokenizerPart(tok)) tok.perDepth; // f32 [D, K, Dc]
 * await disposeVisualTokenizer(tok, encoder);
 * ```
 * @module
 */

import type { DType } from "../core/dtype.ts";
import type { Engine } from "../core/engine.ts";
import { concat, slice } from "../core/kernels/rows/rows.ts";
import type { Tensor } from "../core/tensor.ts";
import { type EncoderPart, isGpuEncoderPart } from "../encoders/slot.ts";
import { VisionEncoder } from "../encoders/vit.ts";
import { Codebooks } from "./codebooks.ts";
import { type OnnxTokenizerConfig, OnnxVisualTokenizer } from "./onnx_tokenizer.ts";
import type { RqTokenizerConfig, VisualTokenizerConfig } from "./visual_config.ts";

/** A built rq tokenizer: its codebooks and the encoder whose features it quantizes. */
export interface RqTokenizerPart {
  /** The variant. */
  kind: "rq";
  /** Its config. */
  cfg: RqTokenizerConfig;
  /** The encoder whose features it quantizes (the VLM's own, or its own folder's). */
  enc: VisionEncoder;
  /** Key of that encoder in the per-batch feature cache. */
  encId: string;
  /** Codebooks as stored, f32 [books, K, Dc]. */
  books: Tensor;
  /** One codebook per depth f32 [D, K, Dc] (what heads teacher-force with). */
  perDepth: Tensor;
}

/** A built ONNX tokenizer (run on the CPU; no codebooks). */
export interface OnnxTokenizerPart {
  /** The variant. */
  kind: "onnx";
  /** Its config. */
  cfg: OnnxTokenizerConfig;
  /** The model. */
  tok: OnnxVisualTokenizer;
  /** A zero f32 [1, 1, 1] standing for the codebooks a head would teacher-force with. */
  placeholder: Tensor;
}

/** A built visual tokenizer. */
export type TokenizerPart = RqTokenizerPart | OnnxTokenizerPart;

/**
 * Builds the visual tokenizer `cfg` (at `at` in the config, e.g. `visualTokenizers[0]`): loads an rq
 * tokenizer's codebooks (and its own encoder folder, frozen, unless it reads the VLM's `model`) and
 * checks them, or loads the ONNX model. On an error, frees what it loaded.
 */
export async function buildVisualTokenizer(
  e: Engine,
  cfg: VisualTokenizerConfig,
  at: string,
  model: EncoderPart,
  dtype: DType,
): Promise<TokenizerPart> {
  const kind = cfg.kind;
  switch (kind) {
    case "rq":
      return await buildRqTokenizer(e, cfg, at, model, dtype);
    case "onnx": {
      const tok = await OnnxVisualTokenizer.load({
        kind: "onnx",
        name: cfg.name,
        model: cfg.model,
        ...(cfg.inputName ? { inputName: cfg.inputName } : {}),
        ...(cfg.outputName ? { outputName: cfg.outputName } : {}),
      });
      const placeholder = e.zeros([1, 1, 1]); // an onnx tokenizer has no codebooks to teacher-force with
      e.untrack(placeholder);
      return { kind: "onnx", cfg, tok, placeholder };
    }
    default: {
      const never: never = kind;
      throw new Error(`${at}.kind: unhandled kind ${never}`);
    }
  }
}

/** Frees the codebooks and the tokenizer's own encoder (not the VLM's `model`); closes an ONNX model. */
export async function disposeVisualTokenizer(t: TokenizerPart, model: EncoderPart): Promise<void> {
  if (isOnnxTokenizerPart(t)) {
    t.placeholder.dispose();
    await t.tok.close();
    return;
  }
  if (t.perDepth !== t.books) t.perDepth.dispose();
  t.books.dispose();
  if (t.enc !== model.enc) disposeParams(t.enc);
}

/** Whether a built tokenizer is an rq one (codebooks, computed on the GPU from an encoder's features). */
export function isRqTokenizerPart(t: TokenizerPart): t is RqTokenizerPart {
  return t.kind === "rq";
}

/** Whether a built tokenizer is an ONNX one (codes computed on the CPU, no codebooks). */
export function isOnnxTokenizerPart(t: TokenizerPart): t is OnnxTokenizerPart {
  return t.kind === "onnx";
}

async function buildRqTokenizer(
  e: Engine,
  cfg: RqTokenizerConfig,
  at: string,
  model: EncoderPart,
  dtype: DType,
): Promise<RqTokenizerPart> {
  let enc: VisionEncoder;
  if (cfg.encoder === "input") {
    if (!isGpuEncoderPart(model)) {
      throw new Error(`${at}.encoder is "input" but the VLM's encoder is ONNX; give a folder`);
    }
    enc = model.enc;
  } else {
    enc = await VisionEncoder.load(e, cfg.encoder, { dtype });
    enc.freeze();
  }
  const own = enc !== model.enc;
  try {
    const cb = await Codebooks.load(cfg.codebooks);
    const info = cb.info, file = cfg.codebooks;
    const fail = (field: string, why: string): never => {
      throw new Error(`${at}.${field} ${why}`);
    };
    if (info.shared !== cfg.sharedCodebook) {
      fail(
        "sharedCodebook",
        `is ${cfg.sharedCodebook} but ${file} holds ${
          info.shared ? "one shared codebook" : "one codebook per depth"
        }; ` +
          `set it to ${info.shared}`,
      );
    }
    if (info.codebookSize !== cfg.codebookSize) {
      fail(
        "codebookSize",
        `is ${cfg.codebookSize} but ${file} holds ${info.codebookSize} codes per codebook; ` +
          `set it to ${info.codebookSize}`,
      );
    }
    if (!info.shared && info.depths < cfg.depths) {
      fail(
        "depths",
        `is ${cfg.depths} but ${file} holds only ${info.depths} codebooks; use depths <= ${info.depths}`,
      );
    }
    if (info.layer !== null && info.layer !== cfg.layer) {
      fail(
        "layer",
        `is ${JSON.stringify(cfg.layer)} but ${file} was fit on layer ${
          JSON.stringify(info.layer)
        } features; set it to ${JSON.stringify(info.layer)}`,
      );
    }
    if (own && isGpuEncoderPart(model)) {
      const m = model.enc;
      if (enc.cfg.imageSize !== m.cfg.imageSize || enc.numPatches !== m.numPatches) {
        fail(
          "encoder",
          `${cfg.encoder} takes ${enc.cfg.imageSize} px images in ${enc.numPatches} patches, but the VLM's ` +
            `encoder takes ${m.cfg.imageSize} px in ${m.numPatches}; both must see the same images and patches`,
        );
      }
    }
    if (typeof cfg.layer === "number" && cfg.layer > enc.cfg.numLayers) {
      fail("layer", `is ${cfg.layer} but the encoder has ${enc.cfg.numLayers} layers`);
    }
    const width = cfg.layer === "pixels" ? 3 * enc.cfg.patchSize ** 2 : enc.cfg.hiddenSize;
    if (info.dim !== width) {
      fail(
        "codebooks",
        `${file} holds ${info.dim}-wide code vectors, but the ${
          cfg.layer === "pixels" ? "patch pixels" : "encoder's features"
        } ` +
          `it quantizes are ${width} wide; fit codebooks on this encoder's features`,
      );
    }
    const books = cb.toTensor(e); // f32 [books, K, Dc], untracked
    const D = cfg.depths;
    let perDepth = books;
    if (info.shared && D > 1) perDepth = concat(new Array<Tensor>(D).fill(books), 0); // [D, K, Dc]
    else if (books.shape[0] > D) perDepth = slice(books, 0, 0, D);
    if (perDepth !== books) e.untrack(perDepth);
    return { kind: "rq", cfg, enc, encId: cfg.encoder === "input" ? "input" : cfg.encoder, books, perDepth };
  } catch (err) {
    if (own) disposeParams(enc);
    throw err;
  }
}

function disposeParams(enc: VisionEncoder): void {
  for (const t of enc.params().values()) t.dispose();
}
