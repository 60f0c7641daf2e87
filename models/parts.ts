/**
 * The parts of an {@linkcode AsvrConfig}'s model, built from the parsed config one typed slice
 * each, and disposed: the frozen vision encoder (an HF folder or random init on the GPU, or ONNX on
 * the CPU), the LLM (an HF folder or random init, with its LoRA adapters), the frozen visual
 * tokenizers (RQ codebooks with the encoder whose features they quantize, or ONNX), the projector
 * (its input width from the encoder or the input tokenizer's code vectors) and the visual head.
 *
 * The checks here are the ones that need the loaded files: a folder holding another architecture than
 * its `kind`, codebooks that do not fit their config (sharing, size, depths, layer) or the encoder
 * (width, image size and patches), a projector or head width that disagrees with the parts around it.
 * Errors name the config field, the file and the fix.
 * @module
 */

import { LoraAdapters } from "../backbones/lora.ts";
import type { Engine } from "../core/engine.ts";
import type { Tensor } from "../core/tensor.ts";
import { Decoder, type DecoderDType } from "../backbones/decoder.ts";
import { OnnxEncoder } from "../encoders/onnx_encoder.ts";
import { VisionEncoder } from "../encoders/vit.ts";
import { buildHead, type HeadTarget, headTargets, type VisualHead } from "../heads/mod.ts";
import { Projector } from "../projectors/projector.ts";
import { concat, slice } from "../core/kernels/rows/rows.ts";
import { Codebooks } from "../tokenizers/codebooks.ts";
import { OnnxVisualTokenizer } from "../tokenizers/onnx_tokenizer.ts";
import type { OnnxTokenizerConfig } from "../tokenizers/onnx_tokenizer.ts";
import type { RqTokenizerConfig, VisualTokenizerConfig } from "../tokenizers/visual_config.ts";
import type { LoadProgress } from "../io/params.ts";
import type {
  AsvrConfig,
  EncoderSlotConfig,
  LlmSlotConfig,
  ProjectorSlotConfig,
  VisionEncoderSlotConfig,
} from "./config.ts";

/** The built vision encoder. */
export type EncoderPart =
  | { kind: "vision"; cfg: VisionEncoderSlotConfig; enc: VisionEncoder }
  | { kind: "onnx"; enc: OnnxEncoder };

/** A built visual tokenizer. */
export type TokenizerPart =
  | {
    kind: "rq";
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
  | { kind: "onnx"; cfg: OnnxTokenizerConfig; tok: OnnxVisualTokenizer; placeholder: Tensor };

/** Every built part of the model. */
export interface ModelParts {
  /** The frozen vision encoder. */
  enc: EncoderPart;
  /** The LLM, with its LoRA adapters set when the config asks for them. */
  llm: Decoder;
  /** The projector, from the encoder's (or input tokenizer's) width to the LLM's. */
  projector: Projector;
  /** The frozen visual tokenizers by name, in config order. */
  toks: Map<string, TokenizerPart>;
  /** The visual head (kind "none" for the baseline). */
  head: VisualHead;
}

/** How {@linkcode buildParts} builds (the model's build options, defaults applied). */
export interface BuildPartsOptions {
  /** Storage dtype of every parameter and activation. */
  dtype: DecoderDType;
  /** Seed of the random initializations; each part draws from its own stream. */
  seed: number;
  /** Where a randomly initialized LLM draws its weights (see `DecoderCreateOptions.init`). */
  llmInit?: "host" | "gpu";
  /** Called after each tensor of a loaded part ("llm", "encoder") is on the GPU. */
  onLoadProgress?: (part: "llm" | "encoder", p: LoadProgress) => void;
}

/**
 * Builds every part of a parsed config: loads the HF folders given as `path`s (else random init from
 * the inline sizes), the codebooks files and ONNX models; freezes the encoders. On an error, frees what
 * it built so far and rethrows.
 */
export async function buildParts(e: Engine, c: AsvrConfig, opts: BuildPartsOptions): Promise<ModelParts> {
  const { dtype, seed } = opts;
  const cleanup: (() => unknown)[] = [];
  try {
    const progress = opts.onLoadProgress;
    const enc = await buildEncoder(
      e,
      c.encoder,
      dtype,
      seed * 4 + 1,
      progress && ((p) => progress("encoder", p)),
    );
    cleanup.push(() => disposeEncoder(enc));
    const llm = await buildLlm(e, c.llm, dtype, seed * 4 + 2, {
      init: opts.llmInit,
      onProgress: progress && ((p) => progress("llm", p)),
    });
    cleanup.push(() => llm.dispose());
    if (c.llm.lora) {
      const lora = LoraAdapters.create(e, llm.cfg, c.llm.lora, dtype);
      cleanup.push(() => lora.dispose());
      llm.setLora(lora);
    }
    const toks = new Map<string, TokenizerPart>();
    cleanup.push(() => Promise.all([...toks.values()].map((t) => disposeTokenizer(t, enc))));
    for (const [i, t] of c.visualTokenizers.entries()) {
      toks.set(t.name, await buildTokenizer(e, t, `visualTokenizers[${i}]`, enc, dtype));
    }
    const inDim = projectorInDim(c, enc, toks);
    const projector = buildProjector(e, c.projector, inDim, llm.cfg.hiddenSize, dtype, seed * 4 + 3);
    cleanup.push(() => disposeAll(projector.params()));
    checkHeadCodebooks(headTargets(c.head, c.visualTokenizers), toks, "head");
    const head = buildHead(e, c.head, {
      llmWidth: llm.cfg.hiddenSize,
      dtype,
      seed: seed * 4 + 4,
      ...(c.loss.chunkRows !== undefined ? { chunkRows: c.loss.chunkRows } : {}),
    });
    return { enc, llm, projector, toks, head };
  } catch (err) {
    for (const f of cleanup.reverse()) await f();
    throw err;
  }
}

/** Frees every parameter, the codebooks and the tokenizers' own encoders; closes ONNX models. */
export async function disposeParts(p: ModelParts): Promise<void> {
  for (const t of p.toks.values()) await disposeTokenizer(t, p.enc);
  disposeAll(p.head.params());
  disposeAll(p.projector.params());
  if (p.llm.lora) disposeAll(p.llm.lora.params());
  p.llm.dispose();
  await disposeEncoder(p.enc);
}

// ------------------------------------------------------------------ builders (one typed slice each)

async function buildEncoder(
  e: Engine,
  cfg: EncoderSlotConfig,
  dtype: DecoderDType,
  seed: number,
  onProgress?: (p: LoadProgress) => void,
): Promise<EncoderPart> {
  const kind = cfg.kind;
  switch (kind) {
    case "siglip":
    case "clip": {
      const c = cfg as VisionEncoderSlotConfig;
      let enc: VisionEncoder;
      if (c.path !== undefined) {
        enc = await VisionEncoder.load(e, c.path, { dtype, onProgress });
        if (enc.cfg.arch !== kind) {
          disposeAll(enc.params());
          throw new Error(
            `encoder.kind is "${kind}" but ${c.path} holds a ${enc.cfg.arch} encoder; ` +
              `set encoder.kind to "${enc.cfg.arch}"`,
          );
        }
      } else {
        enc = VisionEncoder.create(e, { arch: kind, ...c.config! }, { dtype, seed });
      }
      enc.freeze();
      return { kind: "vision", cfg: c, enc };
    }
    case "onnx": {
      const enc = await OnnxEncoder.load(cfg.path, {
        ...(cfg.inputName ? { inputName: cfg.inputName } : {}),
        ...(cfg.outputName ? { outputName: cfg.outputName } : {}),
      });
      return { kind: "onnx", enc };
    }
    default: {
      const never: never = kind;
      throw new Error(`encoder.kind: unhandled kind ${never}`);
    }
  }
}

async function buildLlm(
  e: Engine,
  cfg: LlmSlotConfig,
  dtype: DecoderDType,
  seed: number,
  opts: { init?: "host" | "gpu"; onProgress?: (p: LoadProgress) => void },
): Promise<Decoder> {
  if (cfg.path === undefined) {
    return Decoder.create(e, { arch: cfg.kind, ...cfg.config! }, { dtype, seed, init: opts.init });
  }
  const llm = await Decoder.load(e, cfg.path, { dtype, onProgress: opts.onProgress });
  if (llm.cfg.arch !== cfg.kind) {
    llm.dispose();
    throw new Error(
      `llm.kind is "${cfg.kind}" but ${cfg.path}/config.json says model_type "${llm.cfg.arch}"; ` +
        `set llm.kind to "${llm.cfg.arch}"`,
    );
  }
  return llm;
}

function buildProjector(
  e: Engine,
  cfg: ProjectorSlotConfig,
  inDim: number,
  outDim: number,
  dtype: DecoderDType,
  seed: number,
): Projector {
  if (cfg.inDim !== undefined && cfg.inDim !== inDim) {
    throw new Error(
      `projector.inDim is ${cfg.inDim} but the projector's input is ${inDim} wide; set it to ${inDim} or leave it out`,
    );
  }
  if (cfg.outDim !== undefined && cfg.outDim !== outDim) {
    throw new Error(
      `projector.outDim is ${cfg.outDim} but the LLM is ${outDim} wide; set it to ${outDim} or leave it out`,
    );
  }
  return Projector.create(e, { kind: cfg.kind, inDim, outDim }, { dtype, seed });
}

async function buildTokenizer(
  e: Engine,
  cfg: VisualTokenizerConfig,
  at: string,
  model: EncoderPart,
  dtype: DecoderDType,
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

async function buildRqTokenizer(
  e: Engine,
  cfg: RqTokenizerConfig,
  at: string,
  model: EncoderPart,
  dtype: DecoderDType,
): Promise<TokenizerPart> {
  let enc: VisionEncoder;
  if (cfg.encoder === "input") {
    if (model.kind !== "vision") {
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
    if (own && model.kind === "vision") {
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
    if (own) disposeAll(enc.params());
    throw err;
  }
}

/** The projector's input width: the encoder's features, or the input tokenizer's code vectors. */
function projectorInDim(cfg: AsvrConfig, enc: EncoderPart, toks: Map<string, TokenizerPart>): number {
  switch (enc.kind) {
    case "onnx":
      return cfg.projector.inDim!;
    case "vision": {
      const input = enc.cfg.input;
      switch (input) {
        case "continuous":
          return enc.enc.cfg.hiddenSize;
        case "quantized": {
          const t = toks.get(enc.cfg.inputTokenizer)!;
          if (t.kind !== "rq") throw new Error(`encoder.inputTokenizer must name an rq tokenizer`);
          return t.books.shape[2];
        }
        default: {
          const never: never = input;
          throw new Error(`encoder.input: unhandled ${never}`);
        }
      }
    }
    default: {
      const never: never = enc;
      throw new Error(`unhandled encoder ${never}`);
    }
  }
}

/** A head that teacher-forces reads its tokenizer's code vectors: their widths must agree. */
function checkHeadCodebooks(targets: HeadTarget[], toks: Map<string, TokenizerPart>, path: string): void {
  for (const t of targets) {
    const tok = toks.get(t.tokenizer);
    if (t.codebookDim === undefined || tok?.kind !== "rq") continue;
    const Dc = tok.books.shape[2];
    if (t.codebookDim !== Dc) {
      throw new Error(
        `${path}${t.at}.codebookDim is ${t.codebookDim} but the ${JSON.stringify(t.tokenizer)} codebooks ` +
          `(${tok.cfg.codebooks}) hold ${Dc}-wide vectors; set ${path}${t.at}.codebookDim to ${Dc}`,
      );
    }
  }
}

// ------------------------------------------------------------------ disposal

function disposeAll(m: Map<string, Tensor>): void {
  for (const t of m.values()) t.dispose();
}

async function disposeEncoder(enc: EncoderPart): Promise<void> {
  if (enc.kind === "vision") disposeAll(enc.enc.params());
  else await enc.enc.close();
}

async function disposeTokenizer(t: TokenizerPart, model: EncoderPart): Promise<void> {
  if (t.kind === "onnx") {
    t.placeholder.dispose();
    await t.tok.close();
    return;
  }
  if (t.perDepth !== t.books) t.perDepth.dispose();
  t.books.dispose();
  if (t.enc !== model.enc) disposeAll(t.enc.params());
}
