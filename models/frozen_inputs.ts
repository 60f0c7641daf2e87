/**
 * The frozen vision side of the model, per batch and without gradients: what the projector takes and
 * what the head learns.
 *
 * - The projector's input [B_img, N, inDim] for the rows with an image: the encoder's features of the
 *   images [B, N, Cv] (rows without an image see a zero image; the layer and CLS token as
 *   `encoder.layer` / `encoder.keepCls` say), or with `encoder.input: "quantized"` their RQ
 *   reconstruction sum_d C_d[k_d] [B, N, Dc] by the input tokenizer, or `batch.features` as given
 *   (an ONNX encoder's output, a feature cache).
 * - The visual targets: each tokenizer the head learns gives its codes [B, N, D] (`rqEncode` of its
 *   encoder's features at its layer, or `batch.codes` as given), with the text-only rows and the
 *   alignment handled as `loss` says (`losses/targets.ts`), and the codebooks [D, K, Dc] the head
 *   teacher-forces with.
 *
 * Within one batch each encoder runs once per (layer, CLS) pair and each tokenizer encodes once (the
 * per-batch feature cache), so an rq tokenizer on the VLM's own encoder at the input layer reuses the
 * projector's features. ONNX parts run on the CPU, before the forward: {@linkcode FrozenInputs.precompute}.
 * @module
 */

import { gatherRows } from "../core/kernels/rows/rows.ts";
import type { Engine } from "../core/engine.ts";
import { cast } from "../core/kernels/elementwise/elementwise.ts";
import type { Tensor } from "../core/tensor.ts";
import type { DecoderDType } from "../backbones/decoder.ts";
import { patchify } from "../encoders/patch_embed.ts";
import { type EncoderPart, encoderPositions, isGpuEncoderPart } from "../encoders/slot.ts";
import type { VisionEncoder } from "../encoders/vit.ts";
import { headTargets, type VisualTargets } from "../heads/mod.ts";
import { visualTargets } from "../losses/targets.ts";
import { IGNORE_INDEX } from "../core/labels.ts";
import { rqDecode, rqEncode } from "../tokenizers/rq.ts";
import { isOnnxTokenizerPart, isRqTokenizerPart, type TokenizerPart } from "../tokenizers/slot.ts";
import type { AsvrConfig } from "./config.ts";
import type { AsvrBatch, BatchPlan } from "./batch_plan.ts";

/** The frozen encoder and visual tokenizers of a model, and what they compute for a batch. */
export class FrozenInputs {
  /** Tokenizers whose codes the head learns, as its kind declares (none: no visual loss). */
  readonly targetNames: string[];

  #e: Engine;
  #cfg: AsvrConfig;
  #dtype: DecoderDType;
  #enc: EncoderPart;
  #toks: Map<string, TokenizerPart>;
  /** Depths D the head expects of each target, where it says (what an onnx tokenizer's codes must have). */
  #headDepths: Map<string, number>;
  /** The projector's input width. */
  #inDim: number;

  /**
   * The frozen side of a model built from `cfg`, whose activations are `dtype` and whose projector
   * takes `inDim`-wide features.
   */
  constructor(
    e: Engine,
    cfg: AsvrConfig,
    dtype: DecoderDType,
    enc: EncoderPart,
    toks: Map<string, TokenizerPart>,
    inDim: number,
  ) {
    this.#e = e;
    this.#cfg = cfg;
    this.#dtype = dtype;
    this.#enc = enc;
    this.#toks = toks;
    this.#inDim = inDim;
    const targets = headTargets(cfg.head, cfg.visualTokenizers);
    this.targetNames = [...new Set(targets.map((t) => t.tokenizer))];
    this.#headDepths = new Map(
      targets.flatMap((t) => t.depths === undefined ? [] : [[t.tokenizer, t.depths]]),
    );
  }

  /**
   * Runs the ONNX parts on the CPU (an ONNX encoder's features, ONNX tokenizers' codes) for a batch
   * and returns it with `features` / `codes` filled (see `AsvrModel.precompute`). A batch that needs
   * nothing is returned as is. Rows without an image see a zero image.
   */
  async precompute(batch: AsvrBatch): Promise<AsvrBatch> {
    const out: AsvrBatch = { ...batch, codes: { ...batch.codes } };
    const B = batch.hasImage.length;
    const onnxToks = this.targetNames.map((n) => this.#toks.get(n)!).filter(isOnnxTokenizerPart);
    const onnxEnc = isGpuEncoderPart(this.#enc) ? null : this.#enc.enc;
    const needEncoder = onnxEnc !== null && !batch.features && batch.hasImage.some(Boolean);
    const needToks = onnxToks.filter((t) =>
      !batch.codes?.[t.cfg.name] && (batch.hasImage.some(Boolean) || this.#cfg.loss.textOnlyRows === "train")
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
    if (needEncoder) out.features = (await onnxEnc.run(pixels, dims)).data;
    for (const t of needToks) out.codes![t.cfg.name] = (await t.tok.encode(pixels, dims)).codes;
    return out;
  }

  /** Patches N per image: the encoder's, or from the precomputed features / codes (ONNX). */
  patches(batch: AsvrBatch, B: number): number {
    const N = encoderPositions(this.#enc);
    if (N !== null) return N;
    // An ONNX encoder: N from its output, or from a tokenizer's encoder.
    const inDim = this.#inDim;
    if (batch.features) return batch.features.length / (B * inDim);
    for (const name of this.targetNames) {
      const t = this.#toks.get(name)!;
      if (isRqTokenizerPart(t)) return t.enc.numPatches; // a tokenizer with its own encoder folder
    }
    if (!batch.hasImage.some(Boolean)) return 1; // nothing to splice or supervise
    throw new Error(
      `AsvrModel.forward: the ONNX encoder runs on the CPU: call \`batch = await model.precompute(batch)\` ` +
        `first (or give batch.features [B, N, ${inDim}])`,
    );
  }

  /** Projector inputs of the image rows [B_img, N, inDim] and the visual targets (no gradients). */
  compute(
    batch: AsvrBatch,
    plan: BatchPlan,
    withTargets: boolean,
  ): { projIn: Tensor | null; targets: VisualTargets } {
    const e = this.#e;
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
        const D = isRqTokenizerPart(t) ? t.cfg.depths : given.length / (B * N);
        if (!Number.isInteger(D) || given.length !== B * N * D) {
          throw new Error(
            `${where}: batch.codes.${name} has ${given.length} codes; it must be [B, N, D] with B = ${B}, N = ${N}`,
          );
        }
        codes = e.tensor(given, [B, N, D], "i32");
      } else if (isRqTokenizerPart(t)) {
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
      const inDim = this.#inDim;
      const enc = isGpuEncoderPart(this.#enc) ? this.#enc : null; // null: ONNX
      if (batch.features) {
        if (enc?.cfg.input === "quantized") {
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
        all = e.tensor(batch.features, [B, N, inDim], this.#dtype);
      } else if (!enc) {
        throw new Error(
          `${where}: the ONNX encoder runs on the CPU: call \`batch = await model.precompute(batch)\` first`,
        );
      } else if (enc.cfg.input === "continuous") {
        all = features(enc.enc, "input", enc.cfg.layer, enc.cfg.keepCls);
      } else {
        const tok = this.#toks.get(enc.cfg.inputTokenizer)!;
        if (!isRqTokenizerPart(tok)) {
          throw new Error(`${where}: encoder.inputTokenizer must name an rq tokenizer`);
        }
        const recon = rqDecode(codesOf(tok.cfg.name), tok.books); // f32 [B, N, Dc]
        all = recon.dtype === this.#dtype ? recon : cast(recon, this.#dtype);
      }
      if (all.dtype !== this.#dtype) all = cast(all, this.#dtype);
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
      const noImages = imageRows.length === 0 && this.#cfg.loss.textOnlyRows === "mask";
      for (const name of this.targetNames) {
        const t = this.#toks.get(name)!;
        const D = isRqTokenizerPart(t) ? t.cfg.depths : this.#headDepths.get(name);
        const raw = noImages && D !== undefined ? e.full([B, N, D], IGNORE_INDEX, "i32") : codesOf(name);
        const codes = visualTargets(raw, batch.hasImage, this.#cfg.loss); // [B, N, D]
        targets[name] = { codes, codebooks: isRqTokenizerPart(t) ? t.perDepth : t.placeholder };
      }
    }
    return { projIn, targets };
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
