/**
 * The VLM that composes the slots of an {@linkcode AsvrConfig}: a frozen vision encoder, the
 * projector, the LLM, the frozen visual tokenizers (RQ codebooks), the visual head and the loss
 * (ASVR_SPEC sections 2-5). One training step's loss, for a batch of B rows of T tokens whose image
 * takes N contiguous positions:
 *
 * 1. without gradients: the encoder's features of the images [B, N, Cv] (rows without an image see
 *    a zero image), or with `encoder.input: "quantized"` their RQ reconstruction sum_d C_d[k_d] by
 *    the input tokenizer; the visual targets: each needed tokenizer's codes [B, N, D], with the
 *    text-only rows and the alignment handled as `loss` says (`losses/targets.ts`);
 * 2. the projector maps the image rows' features to the LLM width [B_img, N, C], spliced into the
 *    token embeddings [B*T, C] at the image positions (`scatterRows`);
 * 3. the LLM's final hidden states [B, T, C] give the text loss (shifted next-token CE; from the
 *    hidden states in row chunks when the logits would pass 64 MiB);
 * 4. the hidden states at the image positions [B, N, C] (`gatherRows`; zero rows for text-only
 *    rows, as the reference) go to the head, whose loss terms join the text loss (`combineLosses`).
 *
 * Parameter names (LLaVA's layout): the LLM's own HF names (`model.…`, `lm_head.weight`), the
 * projector under `model.mm_projector.`, the vision encoder under `model.vision_tower.vision_tower.`
 * (LLaVA's tower wraps the HF model), the visual head under `visual_head.` (the reference keeps the
 * head's input MLP at the top level as `projector.*` and the depth transformer under
 * `model.vision_tokenizer.vision_tower.rqtransformer_semantic.`; map them when converting its checkpoints).
 * @module
 */

import { LoraAdapters } from "../backbones/lora.ts";
import { gatherRows, scatterRows } from "../core/kernels/rows/rows.ts";
import { reshape } from "../core/autograd.ts";
import type { Engine } from "../core/engine.ts";
import { cast } from "../core/kernels/elementwise/elementwise.ts";
import type { Tensor } from "../core/tensor.ts";
import { Decoder, type DecoderDType } from "../backbones/decoder.ts";
import { nameTable } from "../backbones/names.ts";
import { OnnxEncoder } from "../encoders/onnx_encoder.ts";
import { patchify } from "../encoders/patch_embed.ts";
import { VisionEncoder } from "../encoders/vit.ts";
import { buildHead, type HeadTarget, headTargets, type VisualHead, type VisualTargets } from "../heads/mod.ts";
import type { LossConfig } from "../losses/config.ts";
import { type CombinedLoss, combineLosses } from "../losses/composite.ts";
import { textLoss, textLossFromHidden } from "../losses/text_ce.ts";
import { visualTargets } from "../losses/targets.ts";
import { CHUNK_LOGITS_BYTES } from "../losses/visual_ce.ts";
import { IGNORE_INDEX } from "../backbones/causal_lm_loss.ts";
import { Projector } from "../projectors/projector.ts";
import { concat, slice } from "../core/kernels/rows/rows.ts";
import { Codebooks } from "../tokenizers/codebooks.ts";
import { OnnxVisualTokenizer } from "../tokenizers/onnx_tokenizer.ts";
import { rqDecode, rqEncode } from "../tokenizers/rq.ts";
import type { OnnxTokenizerConfig } from "../tokenizers/onnx_tokenizer.ts";
import type { RqTokenizerConfig, VisualTokenizerConfig } from "../tokenizers/visual_config.ts";
import type { LoadProgress } from "../io/params.ts";
import {
  type AsvrConfig,
  type AsvrConfigInput,
  type EncoderSlotConfig,
  type LlmSlotConfig,
  parseConfig,
  type ProjectorSlotConfig,
  type VisionEncoderSlotConfig,
} from "./config.ts";

/** Where each part's parameters sit in {@linkcode AsvrModel.params} (the LLM keeps its HF names). */
export const PARAM_PREFIXES: Readonly<{ llm: string; projector: string; encoder: string; head: string }> = {
  llm: "",
  projector: "model.mm_projector.",
  encoder: "model.vision_tower.vision_tower.",
  head: "visual_head.",
};

/** Options of {@linkcode AsvrModel.build}. */
export interface AsvrModelBuildOptions {
  /** Storage dtype of every parameter and activation (default "f32"; "f16" needs `e.hasF16`). */
  dtype?: DecoderDType;
  /** Seed of the random initializations (default 0); each part draws from its own stream. */
  seed?: number;
  /** Re-run each LLM layer's forward in backward instead of keeping its activations (default false). */
  checkpointLayers?: boolean;
  /**
   * Where a randomly initialized LLM draws its weights: "host" (default) or "gpu" (seconds instead of
   * minutes for billion-parameter shapes; other values than "host"). See `DecoderCreateOptions.init`.
   */
  llmInit?: "host" | "gpu";
  /** Called after each tensor of a loaded part ("llm", "encoder") is on the GPU. */
  onLoadProgress?: (part: "llm" | "encoder", p: LoadProgress) => void;
}

/** Which parts train (see {@linkcode AsvrModel.setTrainable}); a part left out keeps its state. */
export interface TrainableParts {
  /** The projector (stage 1 and 2: true). */
  projector?: boolean;
  /** The LLM (stage 1: false, stage 2: true). */
  llm?: boolean;
  /** The visual head (stage 1 and 2: true). */
  head?: boolean;
}

/**
 * One training batch: B rows of T tokens (row-major host arrays), each row with at most one image
 * whose N features go to N contiguous positions.
 */
export interface AsvrBatch {
  /** Token ids i32 [B, T]; the ids at image positions are ignored (any placeholder, e.g. -200). */
  inputIds: Int32Array;
  /**
   * Labels i32 [B, T] as HF takes them (the loss shifts them): -100 where unsupervised, which image
   * positions always are.
   */
  labels: Int32Array;
  /** Per row, the N positions (ascending, contiguous) where its image features go; [] without an image. */
  imagePositions: number[][];
  /** Pixels f32 [B, 3, H, W] (preprocessed; rows without an image read as zeros), or null if none is needed. */
  pixels: Float32Array | null;
  /** Per row, whether it has an image (B entries). */
  hasImage: boolean[];
  /**
   * Precomputed projector inputs f32 [B, N, inDim] (an ONNX encoder's output, see
   * {@linkcode AsvrModel.precompute}, or a feature cache); only with `encoder.input` "continuous".
   */
  features?: Float32Array;
  /** Precomputed codes i32 [B, N, D] by tokenizer name (an ONNX tokenizer's output, or a target cache). */
  codes?: Record<string, Int32Array>;
}

/** The built vision encoder. */
type EncoderPart =
  | { kind: "vision"; cfg: VisionEncoderSlotConfig; enc: VisionEncoder }
  | { kind: "onnx"; enc: OnnxEncoder };

/** A built visual tokenizer. */
type TokenizerPart =
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

/** What the checks of a batch found out. */
interface BatchPlan {
  B: number;
  T: number;
  N: number;
  /** The rows that have an image, ascending. */
  imageRows: number[];
  /** i32 [B_img * N]: flat [B*T] position of image row k's patch i at k*N + i. */
  spliceIdx: Int32Array;
  /** i32 [B * N]: flat [B*T] position of row b's patch i at b*N + i, -1 for a row without an image. */
  hiddenIdx: Int32Array;
}

/** The ASVR vision-language model. Build with {@linkcode AsvrModel.build}. */
export class AsvrModel {
  /** The engine that holds the parameters. */
  readonly engine: Engine;
  /** The parsed config it was built from. */
  readonly cfg: AsvrConfig;
  /** Storage dtype of parameters and activations. */
  readonly dtype: DecoderDType;
  /** The LLM backbone. */
  readonly llm: Decoder;
  /** The projector. */
  readonly projector: Projector;
  /** The visual head (kind "none" for the baseline). */
  readonly head: VisualHead;
  /** The frozen vision encoder: on the GPU (`VisionEncoder`) or ONNX on the CPU. */
  readonly encoder: VisionEncoder | OnnxEncoder;

  #enc: EncoderPart;
  #toks: Map<string, TokenizerPart>;
  /** Tokenizers whose codes the head learns, as its kind declares (none: no visual loss). */
  #targetNames: string[];
  /** Depths D the head expects of each target, where it says (what an onnx tokenizer's codes must have). */
  #headDepths: Map<string, number>;
  /** Head parameters built frozen (e.g. unused biases), which stay frozen. */
  #headFixed: Set<Tensor>;
  #checkpointLayers: boolean;

  private constructor(
    e: Engine,
    cfg: AsvrConfig,
    dtype: DecoderDType,
    parts: {
      enc: EncoderPart;
      llm: Decoder;
      projector: Projector;
      toks: Map<string, TokenizerPart>;
      head: VisualHead;
    },
    checkpointLayers: boolean,
  ) {
    this.engine = e;
    this.cfg = cfg;
    this.dtype = dtype;
    this.#enc = parts.enc;
    this.encoder = parts.enc.enc;
    this.llm = parts.llm;
    this.projector = parts.projector;
    this.#toks = parts.toks;
    this.head = parts.head;
    const targets = headTargets(cfg.head, cfg.visualTokenizers);
    this.#targetNames = [...new Set(targets.map((t) => t.tokenizer))];
    this.#headDepths = new Map(targets.flatMap((t) => t.depths === undefined ? [] : [[t.tokenizer, t.depths]]));
    this.#headFixed = new Set([...parts.head.params().values()].filter((p) => !p.requiresGrad));
    this.#checkpointLayers = checkpointLayers;
  }

  /**
   * Builds the model a config describes (validated again by `parseConfig`, so a hand-written object
   * works): loads the HF folders given as `path`s (else random init from the inline sizes), the
   * codebooks files and ONNX models; freezes the encoders. Errors name the config field, the file
   * and the fix (e.g. codebooks whose width is not the encoder's).
   */
  static async build(e: Engine, cfg: AsvrConfigInput, opts: AsvrModelBuildOptions = {}): Promise<AsvrModel> {
    const c = parseConfig(cfg, "AsvrModel.build");
    const dtype = opts.dtype ?? "f32";
    const seed = opts.seed ?? 0;
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
      return new AsvrModel(e, c, dtype, { enc, llm, projector, toks, head }, opts.checkpointLayers ?? false);
    } catch (err) {
      for (const f of cleanup.reverse()) await f();
      throw err;
    }
  }

  /**
   * Every parameter under LLaVA-style names (see {@linkcode PARAM_PREFIXES}): the LLM's HF names,
   * `model.mm_projector.*`, `model.vision_tower.vision_tower.*` (frozen), `visual_head.*`.
   * The codebooks are buffers, not parameters: see {@linkcode codebooks}.
   */
  params(): Map<string, Tensor> {
    const out = new Map<string, Tensor>();
    const put = (prefix: string, m: Map<string, Tensor>) => {
      for (const [n, t] of m) out.set(prefix + n, t);
    };
    put(PARAM_PREFIXES.llm, this.llm.params());
    if (this.llm.lora) put("", this.llm.lora.params()); // PEFT's names: base_model.model.model.layers.…
    put(PARAM_PREFIXES.projector, this.projector.params());
    if (this.#enc.kind === "vision") put(PARAM_PREFIXES.encoder, this.#enc.enc.params());
    put(PARAM_PREFIXES.head, this.head.params());
    return out;
  }

  /** The parameters that train now (`requiresGrad`), for the optimizer. */
  trainableParams(): Tensor[] {
    return [...this.params().values()].filter((p) => p.requiresGrad);
  }

  /**
   * Chooses which parts train: stage 1 `{ projector: true, llm: false, head: true }`, stage 2 all
   * true. The encoder and codebooks stay frozen; head parameters built frozen (unused biases) too.
   */
  setTrainable(parts: TrainableParts): void {
    const set = (m: Map<string, Tensor>, on: boolean | undefined, fixed?: Set<Tensor>) => {
      if (on === undefined) return;
      for (const p of m.values()) p.requiresGrad = on && !fixed?.has(p);
    };
    set(this.projector.params(), parts.projector);
    // With LoRA the adapters train in the LLM's place; its own weights stay frozen.
    const lora = this.llm.lora;
    set(this.llm.params(), lora && parts.llm !== undefined ? false : parts.llm);
    if (lora) set(lora.params(), parts.llm);
    set(this.head.params(), parts.head, this.#headFixed);
  }

  /**
   * The frozen codebooks of an rq tokenizer, one per depth: f32 [D, K, Dc] (not trained, not in
   * {@linkcode params}). Throws for an unknown name or an onnx tokenizer.
   */
  codebooks(name: string): Tensor {
    const t = this.#toks.get(name);
    if (!t || t.kind !== "rq") {
      const rq = [...this.#toks.values()].filter((x) => x.kind === "rq").map((x) =>
        JSON.stringify(x.cfg.name)
      );
      throw new Error(
        `AsvrModel.codebooks: no rq tokenizer named ${JSON.stringify(name)} (rq tokenizers: ${
          rq.join(", ") || "none"
        })`,
      );
    }
    return t.perDepth;
  }

  /**
   * Runs the ONNX parts on the CPU (an ONNX encoder's features, ONNX tokenizers' codes) for a batch
   * and returns it with `features` / `codes` filled, ready for {@linkcode forward}. A batch that
   * needs nothing is returned as is. Rows without an image see a zero image.
   */
  async precompute(batch: AsvrBatch): Promise<AsvrBatch> {
    const out: AsvrBatch = { ...batch, codes: { ...batch.codes } };
    const B = batch.hasImage.length;
    const onnxToks = this.#targetNames.map((n) => this.#toks.get(n)!).filter((t) => t.kind === "onnx");
    const needEncoder = this.#enc.kind === "onnx" && !batch.features && batch.hasImage.some(Boolean);
    const needToks = onnxToks.filter((t) =>
      !batch.codes?.[t.cfg.name] && (batch.hasImage.some(Boolean) || this.cfg.loss.textOnlyRows === "train")
    );
    if (!needEncoder && needToks.length === 0) return batch;
    if (!batch.pixels) {
      throw new Error(
        `AsvrModel.precompute: batch.pixels is null, but the ONNX ${needEncoder ? "encoder" : "tokenizer"} ` +
          `needs images (rows without an image read as zeros: pass zero pixels)`,
      );
    }
    const pixels = zeroTextOnlyRows(batch.pixels, batch.hasImage);
    const dims = [B, 3, ...squareSide(pixels.length, B, "AsvrModel.precompute")];
    if (needEncoder) out.features = (await (this.#enc.enc as OnnxEncoder).run(pixels, dims)).data;
    for (const t of needToks) {
      if (t.kind !== "onnx") continue;
      out.codes![t.cfg.name] = (await t.tok.encode(pixels, dims)).codes;
    }
    return out;
  }

  /**
   * The loss of a batch: `total` (differentiable: call `backward(total)`) and `terms` (`text`,
   * `visual_<name>` per head term, `total`), all f32 scalars. Records onto the tape; call it inside
   * a tidy scope (with the backward), which frees the intermediates. Frozen work (encoder, RQ) runs
   * without gradients in its own tidy scope; nothing is read back to the host. `weights` overrides the
   * config's loss weights (a stage without the visual loss, say).
   */
  forward(batch: AsvrBatch, weights?: Pick<LossConfig, "textWeight" | "visualWeight">): CombinedLoss {
    const e = this.engine;
    const plan = this.#plan(batch);
    const { B, T, N } = plan;
    const { projIn, targets } = e.tidy(() => e.noGrad(() => this.#frozenInputs(batch, plan, true)));
    const C = this.llm.cfg.hiddenSize;
    const x = this.#splice(batch, plan, projIn); // [B, T, C]
    const hidden = this.llm.forward(x, { checkpointLayers: this.#checkpointLayers }); // [B, T, C]
    const labels = e.tensor(batch.labels, [B, T], "i32");
    const V = this.llm.cfg.vocabSize;
    const text = B * T * V * 4 > CHUNK_LOGITS_BYTES
      ? textLossFromHidden(hidden, this.#lmHead(), labels)
      : textLoss(this.llm.logits(hidden), labels);
    const visual: Record<string, Tensor> = {};
    if (this.#targetNames.length > 0) {
      const idx = e.tensor(plan.hiddenIdx, [B * N], "i32");
      const h = reshape(gatherRows(reshape(hidden, [B * T, C]), idx), [B, N, C]); // zero rows: no image
      const { total, terms } = this.head.loss(h, targets);
      const entries = Object.entries(terms);
      if (entries.length === 0) visual[this.head.kind] = total;
      for (const [name, t] of entries) visual[name.startsWith("visual_") ? name.slice(7) : name] = t;
    }
    return combineLosses({ text, visual }, weights ?? this.cfg.loss);
  }

  /**
   * The LLM's input embeddings of a batch, [B, T, C]: the token embeddings with the projected image
   * features spliced in at each row's image positions. No gradients, nothing read back: what
   * generation prefills the LLM with (labels are not used).
   */
  inputsEmbeds(batch: AsvrBatch): Tensor {
    const e = this.engine;
    return e.noGrad(() =>
      e.tidy(() => {
        const plan = this.#plan(batch);
        return this.#splice(batch, plan, this.#frozenInputs(batch, plan, false).projIn);
      })
    );
  }

  /** Token embeddings [B, T, C] with the projected image rows scattered to their positions. */
  #splice(batch: AsvrBatch, plan: BatchPlan, projIn: Tensor | null): Tensor {
    const e = this.engine;
    const { B, T, N } = plan;
    const Bi = plan.imageRows.length, C = this.llm.cfg.hiddenSize;
    const x = this.llm.embed(e.tensor(batch.inputIds, [B, T], "i32")); // [B, T, C]
    if (Bi === 0) return x;
    const img = this.projector.forward(projIn!); // [B_img, N, C]
    const idx = e.tensor(plan.spliceIdx, [Bi * N], "i32");
    return reshape(scatterRows(reshape(x, [B * T, C]), idx, reshape(img, [Bi * N, C])), [B, T, C]);
  }

  /** Frees every parameter, the codebooks and the tokenizers' own encoders; closes ONNX models. */
  async dispose(): Promise<void> {
    for (const t of this.#toks.values()) await disposeTokenizer(t, this.#enc);
    disposeAll(this.head.params());
    disposeAll(this.projector.params());
    if (this.llm.lora) disposeAll(this.llm.lora.params());
    this.llm.dispose();
    await disposeEncoder(this.#enc);
  }

  /** The LM head weight [V, C] (the embeddings when tied). */
  #lmHead(): Tensor {
    const names = nameTable(this.llm.cfg.arch).model;
    const p = this.llm.params();
    return p.get(this.llm.cfg.tieWordEmbeddings ? names.embed : names.head)!;
  }

  /** Checks a batch against the model and computes the index tables (host only). */
  #plan(batch: AsvrBatch): BatchPlan {
    const where = "AsvrModel.forward";
    const { hasImage, imagePositions, inputIds, labels } = batch;
    const B = hasImage.length;
    if (B === 0) throw new Error(`${where}: batch.hasImage is empty; give one entry per row`);
    if (inputIds.length === 0 || inputIds.length % B !== 0) {
      throw new Error(
        `${where}: batch.inputIds has ${inputIds.length} ids for ${B} rows; it must be [B, T], T >= 1`,
      );
    }
    const T = inputIds.length / B;
    if (labels.length !== B * T) {
      throw new Error(
        `${where}: batch.labels has ${labels.length} entries; it must be [B, T] = [${B}, ${T}]`,
      );
    }
    if (imagePositions.length !== B) {
      throw new Error(
        `${where}: batch.imagePositions has ${imagePositions.length} rows; give one per row (B = ${B})`,
      );
    }
    const N = this.#patches(batch, B);
    const imageRows = hasImage.flatMap((h, b) => (h ? [b] : []));
    const V = this.llm.cfg.vocabSize;
    const spliceIdx = new Int32Array(imageRows.length * N);
    const hiddenIdx = new Int32Array(B * N).fill(-1);
    const isImage = new Uint8Array(B * T);
    for (let b = 0; b < B; b++) {
      const pos = imagePositions[b];
      if (!hasImage[b]) {
        if (pos.length) {
          throw new Error(
            `${where}: batch.imagePositions[${b}] has ${pos.length} positions but row ${b} has no image; give []`,
          );
        }
        continue;
      }
      if (
        pos.length !== N || pos.some((p, i) => !Number.isInteger(p) || p !== pos[0] + i) || pos[0] < 0 ||
        pos[0] + N > T
      ) {
        throw new Error(
          `${where}: batch.imagePositions[${b}] must be ${N} contiguous ascending positions in [0, ${T}) ` +
            `(one per image feature), got ${pos.length} starting at ${pos[0]}`,
        );
      }
      const k = imageRows.indexOf(b);
      for (let i = 0; i < N; i++) {
        spliceIdx[k * N + i] = b * T + pos[i];
        hiddenIdx[b * N + i] = b * T + pos[i];
        isImage[b * T + pos[i]] = 1;
      }
    }
    for (let j = 0; j < B * T; j++) {
      const [b, t] = [Math.floor(j / T), j % T];
      if (isImage[j]) {
        if (labels[j] !== IGNORE_INDEX) {
          throw new Error(
            `${where}: batch.labels[${b}, ${t}] is ${
              labels[j]
            } at an image position; image positions are never ` +
              `supervised: set ${IGNORE_INDEX}`,
          );
        }
        continue;
      }
      if (!(inputIds[j] >= 0 && inputIds[j] < V)) {
        throw new Error(
          `${where}: batch.inputIds[${b}, ${t}] is ${inputIds[j]}, outside the vocabulary [0, ${V})`,
        );
      }
      if (labels[j] !== IGNORE_INDEX && !(labels[j] >= 0 && labels[j] < V)) {
        throw new Error(
          `${where}: batch.labels[${b}, ${t}] is ${
            labels[j]
          }; a label is a token id in [0, ${V}) or ${IGNORE_INDEX}`,
        );
      }
    }
    return { B, T, N, imageRows, spliceIdx, hiddenIdx };
  }

  /** Patches N per image: the encoder's, or from the precomputed features / codes (ONNX). */
  #patches(batch: AsvrBatch, B: number): number {
    const enc = this.#enc;
    switch (enc.kind) {
      case "vision":
        return enc.enc.numPatches + (enc.cfg.kind === "clip" && enc.cfg.keepCls ? 1 : 0);
      case "onnx": {
        const inDim = this.projector.cfg.inDim;
        if (batch.features) return batch.features.length / (B * inDim);
        for (const name of this.#targetNames) {
          const t = this.#toks.get(name)!;
          if (t.kind === "rq") return t.enc.numPatches; // a tokenizer with its own encoder folder
        }
        if (!batch.hasImage.some(Boolean)) return 1; // nothing to splice or supervise
        throw new Error(
          `AsvrModel.forward: the ONNX encoder runs on the CPU: call \`batch = await model.precompute(batch)\` ` +
            `first (or give batch.features [B, N, ${inDim}])`,
        );
      }
      default: {
        const never: never = enc;
        throw new Error(`AsvrModel: unhandled encoder ${never}`);
      }
    }
  }

  /** Projector inputs of the image rows [B_img, N, inDim] and the visual targets (no gradients). */
  #frozenInputs(
    batch: AsvrBatch,
    plan: BatchPlan,
    withTargets: boolean,
  ): { projIn: Tensor | null; targets: VisualTargets } {
    const e = this.engine;
    const { B, N, imageRows } = plan;
    const where = "AsvrModel.forward";
    let pixels: Tensor | null = null;
    const px = (enc: VisionEncoder): Tensor => {
      if (pixels) return pixels;
      const S = enc.cfg.imageSize;
      if (!batch.pixels) {
        if (imageRows.length) {
          throw new Error(`${where}: batch.pixels is null but row ${imageRows[0]} has an image`);
        }
        return pixels = e.zeros([B, 3, S, S]); // a zero image for each text-only row
      }
      if (batch.pixels.length !== B * 3 * S * S) {
        throw new Error(
          `${where}: batch.pixels has ${batch.pixels.length} values; it must be [B, 3, ${S}, ${S}] = ${
            B * 3 * S * S
          }`,
        );
      }
      return pixels = e.tensor(zeroTextOnlyRows(batch.pixels, batch.hasImage), [B, 3, S, S]);
    };
    const feats = new Map<string, Tensor>();
    const features = (enc: VisionEncoder, encId: string, layer: number | "pixels", keepCls: boolean) => {
      const L = enc.cfg.numLayers;
      const key = layer === "pixels"
        ? `${encId}|pixels`
        : `${encId}|${layer < 0 ? L + 1 + layer : layer}|${keepCls}`;
      let f = feats.get(key);
      if (!f) {
        f = layer === "pixels"
          ? patchify(px(enc), enc.cfg.patchSize)
          : enc.forward(px(enc), { layer, keepCls });
        feats.set(key, f);
      }
      return f; // [B, N, width]
    };
    const codesCache = new Map<string, Tensor>();
    const codesOf = (name: string): Tensor => {
      let codes = codesCache.get(name);
      if (codes) return codes;
      const t = this.#toks.get(name)!;
      const given = batch.codes?.[name];
      if (given) {
        const D = t.kind === "rq" ? t.cfg.depths : given.length / (B * N);
        if (!Number.isInteger(D) || given.length !== B * N * D) {
          throw new Error(
            `${where}: batch.codes.${name} has ${given.length} codes; it must be [B, N, D] with B = ${B}, N = ${N}`,
          );
        }
        codes = e.tensor(given, [B, N, D], "i32");
      } else if (t.kind === "rq") {
        codes = rqEncode(features(t.enc, t.encId, t.cfg.layer, false), t.books, { depths: t.cfg.depths });
      } else {
        throw new Error(
          `${where}: tokenizer ${JSON.stringify(name)} is ONNX (runs on the CPU): call ` +
            `\`batch = await model.precompute(batch)\` first, or give batch.codes.${name}`,
        );
      }
      codesCache.set(name, codes);
      return codes;
    };

    // The projector's input, image rows only.
    let projIn: Tensor | null = null;
    if (imageRows.length) {
      let all: Tensor; // [B, N, inDim]
      const inDim = this.projector.cfg.inDim;
      const enc = this.#enc;
      if (batch.features) {
        if (enc.kind === "vision" && enc.cfg.input === "quantized") {
          throw new Error(
            `${where}: batch.features are continuous features, but encoder.input is "quantized"; leave them out`,
          );
        }
        if (batch.features.length !== B * N * inDim) {
          throw new Error(
            `${where}: batch.features has ${batch.features.length} values; it must be [B, N, ${inDim}] = ${
              B * N * inDim
            }`,
          );
        }
        all = e.tensor(batch.features, [B, N, inDim], this.dtype);
      } else if (enc.kind === "onnx") {
        throw new Error(
          `${where}: the ONNX encoder runs on the CPU: call \`batch = await model.precompute(batch)\` first`,
        );
      } else if (enc.cfg.input === "continuous") {
        all = features(enc.enc, "input", enc.cfg.layer, enc.cfg.keepCls);
      } else {
        const tok = this.#toks.get(enc.cfg.inputTokenizer)!;
        if (tok.kind !== "rq") throw new Error(`${where}: encoder.inputTokenizer must name an rq tokenizer`);
        const recon = rqDecode(codesOf(tok.cfg.name), tok.books); // f32 [B, N, Dc]
        all = recon.dtype === this.dtype ? recon : cast(recon, this.dtype);
      }
      if (all.dtype !== this.dtype) all = cast(all, this.dtype);
      if (imageRows.length === B) projIn = all;
      else {
        const rows = e.tensor(imageRows, [imageRows.length], "i32");
        const W = all.shape[2];
        projIn = gatherRows(all.view([B, N * W]), rows).view([imageRows.length, N, W]);
      }
    }

    // The visual targets of the tokenizers the head learns.
    const targets: VisualTargets = {};
    if (withTargets) {
      const noImages = imageRows.length === 0 && this.cfg.loss.textOnlyRows === "mask";
      for (const name of this.#targetNames) {
        const t = this.#toks.get(name)!;
        const D = t.kind === "rq" ? t.cfg.depths : this.#headDepths.get(name);
        const raw = noImages && D !== undefined ? e.full([B, N, D], IGNORE_INDEX, "i32") : codesOf(name);
        const codes = visualTargets(raw, batch.hasImage, this.cfg.loss); // [B, N, D]
        targets[name] = { codes, codebooks: t.kind === "rq" ? t.perDepth : t.placeholder };
      }
    }
    return { projIn, targets };
  }
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

// ------------------------------------------------------------------ helpers

/** A copy of pixels [B, 3, H, W] with the rows without an image zeroed (the same array if none). */
function zeroTextOnlyRows(pixels: Float32Array, hasImage: readonly boolean[]): Float32Array {
  if (hasImage.every(Boolean)) return pixels;
  const per = pixels.length / hasImage.length;
  const out = pixels.slice();
  hasImage.forEach((has, b) => {
    if (!has) out.fill(0, b * per, (b + 1) * per);
  });
  return out;
}

/** [H, W] of square images in B * 3 * H * W values. */
function squareSide(n: number, B: number, where: string): [number, number] {
  const S = Math.round(Math.sqrt(n / (3 * B)));
  if (B * 3 * S * S !== n) {
    throw new Error(`${where}: batch.pixels has ${n} values, not [B, 3, S, S] square images for B = ${B}`);
  }
  return [S, S];
}

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
