/**
 * The parts of an {@linkcode AsvrConfig}'s model, built from the parsed config one typed slice
 * each, and disposed: the frozen vision encoder (an HF folder or random init on the GPU, or ONNX on
 * the CPU), the LLM (an HF folder or random init, with its LoRA adapters), the frozen visual
 * tokenizers (RQ codebooks with the encoder whose features they quantize, or ONNX), the projector
 * (its input width from the encoder or the input tokenizer's code vectors) and the visual head.
 *
 * Each slot builds its own part (`encoders/slot.ts`, `tokenizers/slot.ts`); the checks here are the
 * ones across parts that need the loaded files: an LLM folder holding another architecture than its
 * `kind`, a projector or head width that disagrees with the parts around it. Errors name the config
 * field, the file and the fix.
 * @module
 */

import { LoraAdapters } from "../backbones/lora.ts";
import type { Engine } from "../core/engine.ts";
import type { Tensor } from "../core/tensor.ts";
import { Decoder, type DecoderDType } from "../backbones/decoder.ts";
import {
  buildEncoderSlot,
  disposeEncoderSlot,
  type EncoderPart,
  isGpuEncoderPart,
} from "../encoders/slot.ts";
import { buildHead, type HeadTarget, headTargets, type VisualHead } from "../heads/mod.ts";
import { Projector } from "../projectors/projector.ts";
import {
  buildVisualTokenizer,
  disposeVisualTokenizer,
  isRqTokenizerPart,
  type TokenizerPart,
} from "../tokenizers/slot.ts";
import type { LoadProgress } from "../io/params.ts";
import type { AsvrConfig, LlmSlotConfig, ProjectorSlotConfig } from "./config.ts";

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
    const enc = await buildEncoderSlot(e, c.encoder, {
      dtype,
      seed: seed * 4 + 1,
      onProgress: progress && ((p) => progress("encoder", p)),
    });
    cleanup.push(() => disposeEncoderSlot(enc));
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
    cleanup.push(() => Promise.all([...toks.values()].map((t) => disposeVisualTokenizer(t, enc))));
    for (const [i, t] of c.visualTokenizers.entries()) {
      toks.set(t.name, await buildVisualTokenizer(e, t, `visualTokenizers[${i}]`, enc, dtype));
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
  for (const t of p.toks.values()) await disposeVisualTokenizer(t, p.enc);
  disposeAll(p.head.params());
  disposeAll(p.projector.params());
  if (p.llm.lora) disposeAll(p.llm.lora.params());
  p.llm.dispose();
  await disposeEncoderSlot(p.enc);
}

// ------------------------------------------------------------------ builders (one typed slice each)

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

/** The projector's input width: the encoder's features, or the input tokenizer's code vectors. */
function projectorInDim(cfg: AsvrConfig, enc: EncoderPart, toks: Map<string, TokenizerPart>): number {
  if (!isGpuEncoderPart(enc)) return cfg.projector.inDim!; // an ONNX encoder's width: the config's
  const input = enc.cfg.input;
  switch (input) {
    case "continuous":
      return enc.enc.cfg.hiddenSize;
    case "quantized": {
      const t = toks.get(enc.cfg.inputTokenizer)!;
      if (!isRqTokenizerPart(t)) throw new Error(`encoder.inputTokenizer must name an rq tokenizer`);
      return t.books.shape[2];
    }
    default: {
      const never: never = input;
      throw new Error(`encoder.input: unhandled ${never}`);
    }
  }
}

/** A head that teacher-forces reads its tokenizer's code vectors: their widths must agree. */
function checkHeadCodebooks(targets: HeadTarget[], toks: Map<string, TokenizerPart>, path: string): void {
  for (const t of targets) {
    const tok = toks.get(t.tokenizer);
    if (t.codebookDim === undefined || !tok || !isRqTokenizerPart(tok)) continue;
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
