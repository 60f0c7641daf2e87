/**
 * The VLM that composes the slots of an {@linkcode AsvrConfig}: a frozen vision encoder, the
 * projector, the LLM, the frozen visual tokenizers (RQ codebooks), the visual head and the loss
 * (ASVR_SPEC sections 2-5). One training step's loss, for a batch of B rows of T tokens whose image
 * takes N contiguous positions:
 *
 * 0. the batch is checked against the model on the host, which gives B, T, N and the index tables of
 *    the image positions (`batch_plan.ts`);
 * 1. without gradients (`frozen_inputs.ts`): the encoder's features of the images [B, N, Cv] (rows
 *    without an image see a zero image), or with `encoder.input: "quantized"` their RQ reconstruction
 *    sum_d C_d[k_d] by the input tokenizer; the visual targets: each needed tokenizer's codes
 *    [B, N, D], with the text-only rows and the alignment handled as `loss` says (`losses/targets.ts`);
 * 2. the projector maps the image rows' features to the LLM width [B_img, N, C], spliced into the
 *    token embeddings [B*T, C] at the image positions (`scatterRows`);
 * 3. the LLM's final hidden states [B, T, C] give the text loss (shifted next-token CE; from the
 *    hidden states in row chunks when the logits would pass 64 MiB);
 * 4. the hidden states at the image positions [B, N, C] (`gatherRows`; zero rows for text-only
 *    rows, as the reference) go to the head, whose loss terms join the text loss (`combineLosses`).
 *
 * The parts are built from the parsed config, checked against each other and disposed by
 * `parts.ts`.
 *
 * Parameter names (LLaVA's layout): the LLM's own HF names (`model.…`, `lm_head.weight`), the
 * projector under `model.mm_projector.`, the vision encoder under `model.vision_tower.vision_tower.`
 * (LLaVA's tower wraps the HF model), the visual head under `visual_head.` (the reference keeps the
 * head's input MLP at the top level as `projector.*` and the depth transformer under
 * `model.vision_tokenizer.vision_tower.rqtransformer_semantic.`; map them when converting its checkpoints).
 * @module
 */

import { gatherRows, scatterRows } from "../core/kernels/rows/rows.ts";
import { reshape } from "../core/autograd.ts";
import type { Engine } from "../core/engine.ts";
import type { Tensor } from "../core/tensor.ts";
import type { Decoder, DecoderDType } from "../backbones/decoder.ts";
import { nameTable } from "../backbones/names.ts";
import type { OnnxEncoder } from "../encoders/onnx_encoder.ts";
import { isGpuEncoderPart } from "../encoders/slot.ts";
import type { VisionEncoder } from "../encoders/vit.ts";
import type { VisualHead } from "../heads/mod.ts";
import type { LossConfig } from "../losses/config.ts";
import { type CombinedLoss, combineLosses } from "../losses/composite.ts";
import { textLoss, textLossFromHidden } from "../losses/text_ce.ts";
import { CHUNK_LOGITS_BYTES } from "../losses/visual_ce.ts";
import type { Projector } from "../projectors/projector.ts";
import { isRqTokenizerPart } from "../tokenizers/slot.ts";
import type { LoadProgress } from "../io/params.ts";
import { type AsvrConfig, type AsvrConfigInput, parseConfig } from "./config.ts";
import { type AsvrBatch, type BatchPlan, planBatch } from "./batch_plan.ts";
import { FrozenInputs } from "./frozen_inputs.ts";
import { buildParts, disposeParts, type ModelParts } from "./parts.ts";

export type { AsvrBatch } from "./batch_plan.ts";

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

  #parts: ModelParts;
  /** The frozen encoder and tokenizers: the projector's inputs and the visual targets of a batch. */
  #frozen: FrozenInputs;
  /** Head parameters built frozen (e.g. unused biases), which stay frozen. */
  #headFixed: Set<Tensor>;
  #checkpointLayers: boolean;

  private constructor(
    e: Engine,
    cfg: AsvrConfig,
    dtype: DecoderDType,
    parts: ModelParts,
    checkpointLayers: boolean,
  ) {
    this.engine = e;
    this.cfg = cfg;
    this.dtype = dtype;
    this.#parts = parts;
    this.encoder = parts.enc.enc;
    this.llm = parts.llm;
    this.projector = parts.projector;
    this.head = parts.head;
    this.#frozen = new FrozenInputs(e, cfg, dtype, parts.enc, parts.toks, parts.projector.cfg.inDim);
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
    const parts = await buildParts(e, c, {
      dtype,
      seed: opts.seed ?? 0,
      llmInit: opts.llmInit,
      onLoadProgress: opts.onLoadProgress,
    });
    try {
      return new AsvrModel(e, c, dtype, parts, opts.checkpointLayers ?? false);
    } catch (err) {
      await disposeParts(parts);
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
    const enc = this.#parts.enc;
    if (isGpuEncoderPart(enc)) put(PARAM_PREFIXES.encoder, enc.enc.params());
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
    const t = this.#parts.toks.get(name);
    if (!t || !isRqTokenizerPart(t)) {
      const rq = [...this.#parts.toks.values()].filter(isRqTokenizerPart).map((x) =>
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
    return await this.#frozen.precompute(batch);
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
    const { projIn, targets } = e.tidy(() => e.noGrad(() => this.#frozen.compute(batch, plan, true)));
    const C = this.llm.cfg.hiddenSize;
    const x = this.#splice(batch, plan, projIn); // [B, T, C]
    const hidden = this.llm.forward(x, { checkpointLayers: this.#checkpointLayers }); // [B, T, C]
    const labels = e.tensor(batch.labels, [B, T], "i32");
    const V = this.llm.cfg.vocabSize;
    const text = B * T * V * 4 > CHUNK_LOGITS_BYTES
      ? textLossFromHidden(hidden, this.#lmHead(), labels)
      : textLoss(this.llm.logits(hidden), labels);
    const visual: Record<string, Tensor> = {};
    if (this.#frozen.targetNames.length > 0) {
      const idx = e.tensor(plan.hiddenIdx, [B * N], "i32");
      const h = reshape(gatherRows(reshape(hidden, [B * T, C]), idx), [B, N, C]); // zero rows: no image
      const { total, terms } = this.head.loss(h, targets);
      // The head's term names go through unchanged; a head that names no term reports its total.
      Object.assign(visual, Object.keys(terms).length > 0 ? terms : { [`visual_${this.head.kind}`]: total });
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
        return this.#splice(batch, plan, this.#frozen.compute(batch, plan, false).projIn);
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
    await disposeParts(this.#parts);
  }

  /** The LM head weight [V, C] (the embeddings when tied). */
  #lmHead(): Tensor {
    const names = nameTable(this.llm.cfg.arch).model;
    const p = this.llm.params();
    return p.get(this.llm.cfg.tieWordEmbeddings ? names.embed : names.head)!;
  }

  /** Checks a batch against the model and computes the index tables (host only). */
  #plan(batch: AsvrBatch): BatchPlan {
    return planBatch(batch, this.llm.cfg.vocabSize, (B) => this.#frozen.patches(batch, B));
  }
}
