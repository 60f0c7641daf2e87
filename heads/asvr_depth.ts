/**
 * ASVR's visual head, the "RQ depth transformer" (ASVR_SPEC section 3; the reference's
 * `RQTransformer` and `CasualDepthTransformerLayer` in modeling_rqtransformer.py, with the input
 * projector `projector` of asvr_llama.py). Per patch, with H [B, N, d_llm] the LLM's hidden states
 * at the image positions, R = B * N rows, C = width, D depths, Dc = codebookDim:
 *
 * 1. o = W2 gelu(W1 H) (`projector.0`, exact GELU, `projector.2`): [R, C].
 * 2. Teacher forcing: e_d = C_d[k_d] (frozen codebook rows), running sums c_d = e_0 + ... + e_d,
 *    mapped by `in_mlp_1` (Dc -> C).
 * 3. The depth sequence x [R, D, C]: slot 0 = o, slot d = in_mlp_1(c_{d-1}).
 * 4. `layers` causal layers over the D slots: h = RMSNorm1(x); a = MHA(h) (biases, causal over
 *    depth); s = RMSNorm2(a + x); x = s + W2[l] gelu(W1[l] s_l) with separate weights per slot l
 *    (stored flattened, as the reference: linear1.weight [2C, D*C] is (2C, D, C) and linear2.weight
 *    [C, D*2C] is (C, D, 2C); their biases exist in the state dict but the reference never adds them:
 *    kept here as zeros with `requiresGrad` false, so they load and save but never train).
 * 5. `headnorm` (RMSNorm, eps 1e-6, f32 math), then `heads.{d}` (C -> V_d) on slot d; the loss is the
 *    mean over depths of each depth's mean cross-entropy (`classifierCrossEntropy`, in row chunks).
 *
 * Parameter names are the reference's: `projector.{0,2}.{weight,bias}` (a module of the language
 * model there) and, under the head's own prefix there (`...rqtransformer_semantic.`), `in_mlp_1.*`,
 * `head_transformer.{i}.self_attention.{in_proj_weight,in_proj_bias,out_proj.weight,out_proj.bias}`,
 * `head_transformer.{i}.{layernorm1,layernorm2}.weight`, `head_transformer.{i}.{linear1,linear2}.{weight,bias}`,
 * `headnorm.weight`, `heads.{d}.{weight,bias}`.
 * @module
 */

import { checkpoint, reshape } from "../core/autograd.ts";
import type { DType } from "../core/dtype.ts";
import type { Engine } from "../core/engine.ts";
import { attention } from "../core/kernels/attention/attention.ts";
import { add, cast, gelu } from "../core/kernels/elementwise/elementwise.ts";
import { embedding } from "../core/kernels/embedding/embedding.ts";
import { matmul } from "../core/kernels/matmul/matmul.ts";
import { permute } from "../core/kernels/permute/permute.ts";
import { rmsNorm } from "../core/kernels/rmsnorm/rmsnorm.ts";
import { concat, slice } from "../core/kernels/rows/rows.ts";
import type { Tensor } from "../core/tensor.ts";
import type { AsvrDepthHeadConfig } from "./config.ts";
import { DepthClassifiers, makeDepthClassifiers } from "./depth_classifiers.ts";
import type { HeadContext, HeadLoss, VisualHead, VisualTargetCodes, VisualTargets } from "./head.ts";
import { ParamMaker, type ParamSink } from "./param_init.ts";
import { checkVisualInputs } from "./visual_inputs.ts";
import { depthTargets } from "../losses/targets.ts";

/** The epsilon of every RMSNorm of the head (the reference's RMSNorm default). */
export const ASVR_RMS_EPS = 1e-6;

/** The parameters of one causal depth layer (tensors, or their shapes when recorded). */
export interface DepthLayer<T = Tensor> {
  ln1: T; // [C]
  inProjW: T; // [3C, C]: rows [0, C) q, [C, 2C) k, [2C, 3C) v
  inProjB: T; // [3C]
  outProjW: T; // [C, C]
  outProjB: T; // [C]
  ln2: T; // [C]
  w1: T; // [2C, D*C], viewed (2C, D, C)
  w2: T; // [C, D*2C], viewed (C, D, 2C)
}

/** The parameters of the head (tensors, or their shapes when recorded), by role. */
export interface DepthHeadParams<T> {
  /** The input projector: `projector.0` [C, d_llm], [C] and `projector.2` [C, C], [C]. */
  proj: { w1: T; b1: T; w2: T; b2: T };
  /** `in_mlp_1` [C, Dc], [C]. */
  inMlp: { weight: T; bias: T };
  /** One entry per causal depth layer. */
  layers: DepthLayer<T>[];
  /** `headnorm.weight` [C]. */
  headnorm: T;
  /** The per-depth classifiers. */
  classifiers: { weights: T[]; biases: T[] };
}

/** The RQ depth transformer head. Build with {@linkcode AsvrDepthHead.create} (or `buildHead`). */
export class AsvrDepthHead implements VisualHead {
  /** The config kind. */
  readonly kind = "asvr_depth";
  /** The parsed config. */
  readonly cfg: AsvrDepthHeadConfig;
  /** The LLM width d_llm of the hidden states it takes. */
  readonly llmWidth: number;
  /** The parameters' storage dtype. */
  readonly dtype: DType;

  #params: Map<string, Tensor>;
  #proj: { w1: Tensor; b1: Tensor; w2: Tensor; b2: Tensor };
  #inMlp: { weight: Tensor; bias: Tensor };
  #layers: DepthLayer[];
  #headnorm: Tensor;
  #classifiers: DepthClassifiers;
  #chunkRows: number | null;

  private constructor(e: Engine, cfg: AsvrDepthHeadConfig, ctx: HeadContext) {
    this.cfg = cfg;
    this.llmWidth = ctx.llmWidth;
    this.dtype = ctx.dtype ?? "f32";
    this.#chunkRows = cfg.chunkRows ?? ctx.chunkRows ?? null;
    const m = new ParamMaker(e, this.dtype, ctx.seed ?? 0);
    const made = AsvrDepthHead.makeParams(m, cfg, ctx.llmWidth);
    this.#proj = made.proj;
    this.#inMlp = made.inMlp;
    this.#layers = made.layers;
    this.#headnorm = made.headnorm;
    this.#classifiers = new DepthClassifiers(made.classifiers);
    this.#params = m.params;
  }

  /**
   * Makes the parameters in `m`, in the reference's order and init (see the module doc). With a
   * `ShapeRecorder`, the shapes `--plan` counts.
   */
  static makeParams<T>(m: ParamSink<T>, cfg: AsvrDepthHeadConfig, llmWidth: number): DepthHeadParams<T> {
    const { width: C, depths: D, codebookDim: Dc } = cfg;
    // The projector is a module of the reference's language model, whose post_init draws Linear
    // weights from N(0, 0.02) with zero biases; the head's modules keep PyTorch's defaults.
    const proj = {
      w1: m.normal("projector.0.weight", [C, llmWidth], 0.02),
      b1: m.fill("projector.0.bias", [C], 0),
      w2: m.normal("projector.2.weight", [C, C], 0.02),
      b2: m.fill("projector.2.bias", [C], 0),
    };
    const inMlp = m.linear("in_mlp_1.", Dc, C);
    const layers: DepthLayer<T>[] = [];
    for (let i = 0; i < cfg.layers; i++) {
      const pre = `head_transformer.${i}.`;
      const attn = `${pre}self_attention.`;
      layers.push({
        // nn.MultiheadAttention: xavier-uniform in_proj_weight, zero biases, out_proj as nn.Linear.
        inProjW: m.uniform(`${attn}in_proj_weight`, [3 * C, C], Math.sqrt(6 / (4 * C))),
        inProjB: m.fill(`${attn}in_proj_bias`, [3 * C], 0),
        outProjW: m.uniform(`${attn}out_proj.weight`, [C, C], 1 / Math.sqrt(C)),
        outProjB: m.fill(`${attn}out_proj.bias`, [C], 0),
        ln1: m.fill(`${pre}layernorm1.weight`, [C], 1),
        ln2: m.fill(`${pre}layernorm2.weight`, [C], 1),
        w1: m.uniform(`${pre}linear1.weight`, [2 * C, D * C], 1 / Math.sqrt(D * C)),
        w2: m.uniform(`${pre}linear2.weight`, [C, D * 2 * C], 1 / Math.sqrt(D * 2 * C)),
      });
      // In the state dict, never used by the forward: zeros, not trained.
      m.fill(`${pre}linear1.bias`, [2 * C], 0, { frozen: true });
      m.fill(`${pre}linear2.bias`, [C], 0, { frozen: true });
    }
    const headnorm = m.fill("headnorm.weight", [C], 1);
    const classifiers = makeDepthClassifiers(m, C, cfg.codebookSizes);
    return { proj, inMlp, layers, headnorm, classifiers };
  }

  /**
   * A head with freshly initialized parameters (`ctx.dtype`, default f32; `ctx.seed`, default 0).
   * Load trained weights into {@linkcode params} with `loadParams`.
   */
  static create(e: Engine, cfg: AsvrDepthHeadConfig, ctx: HeadContext): AsvrDepthHead {
    return new AsvrDepthHead(e, cfg, ctx);
  }

  /** Every parameter under the reference's names (see the module doc), the unused FFN biases included. */
  params(): Map<string, Tensor> {
    return new Map(this.#params);
  }

  /**
   * The head's loss: the mean over depths of the per-depth mean cross-entropy against
   * `targets[cfg.target].codes` (teacher-forced with the same codes). Term: `visual_<target>`.
   */
  loss(hidden: Tensor, targets: VisualTargets): HeadLoss {
    const { visual } = checkVisualInputs(hidden, targets, this.#spec());
    const y = this.#states(hidden, visual); // [R, D, C]
    const [R, , C] = y.shape;
    const total = this.#classifiers.loss(
      (d) => reshape(slice(y, 1, d, d + 1), [R, C]),
      visual.codes,
      this.#chunkRows,
    );
    return { total, terms: { [`visual_${this.cfg.target}`]: total } };
  }

  /**
   * The classifiers' inputs: the depth transformer's output after `headnorm`, [B*N, D, C] (row
   * b * N + n, slot d predicts code d of patch n of image b), from hidden [B, N, d_llm] and the
   * teacher-forcing codes of `targets[cfg.target]`. Differentiable.
   */
  states(hidden: Tensor, targets: VisualTargets): Tensor {
    const { visual } = checkVisualInputs(hidden, targets, this.#spec());
    return this.#states(hidden, visual);
  }

  #spec() {
    const c = this.cfg;
    return {
      head: "AsvrDepthHead",
      llmWidth: this.llmWidth,
      target: c.target,
      depths: c.depths,
      codebookDim: c.codebookDim,
    };
  }

  #states(hidden: Tensor, visual: VisualTargetCodes): Tensor {
    if (hidden.dtype !== this.dtype) {
      throw new Error(
        `AsvrDepthHead.loss: hidden is ${hidden}, the head's params are ${this.dtype}; cast one of them`,
      );
    }
    const [B, N] = hidden.shape;
    const R = B * N, C = this.cfg.width, D = this.cfg.depths;
    const p = this.#proj;
    const o = matmul(gelu(matmul(hidden, p.w1, { transB: true, bias: p.b1 }), "none"), p.w2, {
      transB: true,
      bias: p.b2,
    }); // [B, N, C]
    let x = reshape(o, [R, 1, C]);
    if (D > 1) x = concat([x, this.#teacherForcing(visual, R)], 1); // [R, D, C]
    for (const layer of this.#layers) {
      x = this.cfg.checkpointLayers ? checkpoint((t) => this.#layer(layer, t), x) : this.#layer(layer, x);
    }
    return rmsNorm(x, this.#headnorm, ASVR_RMS_EPS);
  }

  /**
   * Slots 1..D-1 of the depth sequence: in_mlp_1(c_d) for d = 0..D-2, c_d = sum of the codebook rows
   * e_0..e_d of each patch's codes: [R, D-1, C]. A -100 code (out of range) gathers a zero row; such
   * rows only feed slots whose targets are masked too when the caller masks whole patches.
   */
  #teacherForcing(visual: VisualTargetCodes, R: number): Tensor {
    const D = this.cfg.depths, Dc = this.cfg.codebookDim;
    const { codebooks } = visual;
    const K = codebooks.shape[1];
    const sums: Tensor[] = [];
    let c: Tensor | null = null;
    for (let d = 0; d < D - 1; d++) {
      const ids = depthTargets(visual.codes, d); // i32 [R]
      const book = slice(codebooks, 0, d, d + 1); // [1, K, Dc]
      const rows = cast(embedding(reshape(book, [K, Dc]), ids), "f32"); // e_d [R, Dc], sums in f32
      if (!codebooks.requiresGrad) book.dispose(); // a frozen codebook's copy is not needed for backward
      c = c ? add(c, rows) : rows;
      sums.push(reshape(c, [R, 1, Dc]));
    }
    const cs = cast(concat(sums, 1), this.dtype); // [R, D-1, Dc]
    return matmul(cs, this.#inMlp.weight, { transB: true, bias: this.#inMlp.bias }); // [R, D-1, C]
  }

  /** One causal depth layer on x [R, D, C]. */
  #layer(l: DepthLayer, x: Tensor): Tensor {
    const [R, D, C] = x.shape;
    const NH = this.cfg.heads, HS = C / NH;
    const h = rmsNorm(x, l.ln1, ASVR_RMS_EPS);
    const qkv = matmul(h, l.inProjW, { transB: true, bias: l.inProjB }); // [R, D, 3C]
    const split = permute(reshape(qkv, [R, D, 3, NH, HS]), [2, 0, 3, 1, 4]); // [3, R, NH, D, HS]
    const part = (j: number) => reshape(slice(split, 0, j, j + 1), [R, NH, D, HS]);
    const a = attention(part(0), part(1), part(2), { causal: true }); // [R, NH, D, HS], scale 1/sqrt(HS)
    const merged = reshape(permute(a, [0, 2, 1, 3]), [R, D, C]); // heads concatenated per slot
    const s = rmsNorm(
      add(matmul(merged, l.outProjW, { transB: true, bias: l.outProjB }), x),
      l.ln2,
      ASVR_RMS_EPS,
    );
    // Per-slot FFN as one batched matmul over the D slots: [D, R, C] x [D, 2C, C]^T -> [D, R, 2C].
    const sd = permute(s, [1, 0, 2]); // [D, R, C]
    const w1 = permute(reshape(l.w1, [2 * C, D, C]), [1, 0, 2]); // [D, 2C, C]
    const w2 = permute(reshape(l.w2, [C, D, 2 * C]), [1, 0, 2]); // [D, C, 2C]
    const u = gelu(matmul(sd, w1, { transB: true }), "none"); // [D, R, 2C]
    const f = permute(matmul(u, w2, { transB: true }), [1, 0, 2]); // [R, D, C]
    return add(s, f);
  }
}
