/**
 * The linear per-depth head, the simplest learned head (an ablation of ASVR's depth transformer):
 * s = gelu(W H + b) projects each patch's hidden state (Linear d_llm -> width, exact GELU), then D
 * independent classifiers `heads.{d}` (width -> V_d) read the same s. No teacher forcing, so the
 * codebooks are not used. Parameters: `proj.{weight,bias}`, `heads.{d}.{weight,bias}`.
 * @module
 */

import { reshape } from "../core/autograd.ts";
import type { DType } from "../core/dtype.ts";
import type { Engine } from "../core/engine.ts";
import { gelu } from "../core/kernels/elementwise/elementwise.ts";
import { matmul } from "../core/kernels/matmul/matmul.ts";
import type { Tensor } from "../core/tensor.ts";
import type { LinearHeadConfig } from "./config.ts";
import { DepthClassifiers, makeDepthClassifiers } from "./depth_classifiers.ts";
import type { HeadContext, HeadLoss, VisualHead, VisualTargets } from "./head.ts";
import { ParamMaker, type ParamSink } from "./param_init.ts";
import { checkVisualInputs } from "./visual_inputs.ts";

/** One classifier per depth on a projected state. Build with {@linkcode LinearHead.create} (or `buildHead`). */
export class LinearHead implements VisualHead {
  /** The config kind. */
  readonly kind = "linear";
  /** The parsed config. */
  readonly cfg: LinearHeadConfig;
  /** The LLM width d_llm of the hidden states it takes. */
  readonly llmWidth: number;
  /** The parameters' storage dtype. */
  readonly dtype: DType;

  #params: Map<string, Tensor>;
  #proj: { weight: Tensor; bias: Tensor };
  #classifiers: DepthClassifiers;
  #chunkRows: number | null;

  private constructor(e: Engine, cfg: LinearHeadConfig, ctx: HeadContext) {
    this.cfg = cfg;
    this.llmWidth = ctx.llmWidth;
    this.dtype = ctx.dtype ?? "f32";
    this.#chunkRows = cfg.chunkRows ?? ctx.chunkRows ?? null;
    const m = new ParamMaker(e, this.dtype, ctx.seed ?? 0);
    const made = LinearHead.makeParams(m, cfg, ctx.llmWidth);
    this.#proj = made.proj;
    this.#classifiers = new DepthClassifiers(made.classifiers);
    this.#params = m.params;
  }

  /**
   * Makes the parameters in `m`: `proj.{weight,bias}` [width, d_llm], [width], then the classifiers.
   * With a `ShapeRecorder`, the shapes `--plan` counts.
   */
  static makeParams<T>(
    m: ParamSink<T>,
    cfg: LinearHeadConfig,
    llmWidth: number,
  ): { proj: { weight: T; bias: T }; classifiers: { weights: T[]; biases: T[] } } {
    return {
      proj: m.linear("proj.", llmWidth, cfg.width),
      classifiers: makeDepthClassifiers(m, cfg.width, cfg.codebookSizes),
    };
  }

  /** A head with nn.Linear's default initialization (`ctx.dtype`, default f32; `ctx.seed`, default 0). */
  static create(e: Engine, cfg: LinearHeadConfig, ctx: HeadContext): LinearHead {
    return new LinearHead(e, cfg, ctx);
  }

  /** Every parameter: `proj.*` and `heads.{d}.*`. */
  params(): Map<string, Tensor> {
    return new Map(this.#params);
  }

  /** The mean over depths of the per-depth mean cross-entropy; term `visual_<target>`. */
  loss(hidden: Tensor, targets: VisualTargets): HeadLoss {
    const c = this.cfg;
    const { B, N, visual } = checkVisualInputs(hidden, targets, {
      head: "LinearHead",
      llmWidth: this.llmWidth,
      target: c.target,
      depths: c.depths,
    });
    if (hidden.dtype !== this.dtype) {
      throw new Error(
        `LinearHead.loss: hidden is ${hidden}, the head's params are ${this.dtype}; cast one of them`,
      );
    }
    const R = B * N;
    const s = gelu(
      matmul(reshape(hidden, [R, this.llmWidth]), this.#proj.weight, {
        transB: true,
        bias: this.#proj.bias,
      }),
      "none",
    ); // [R, width]
    const total = this.#classifiers.loss(() => s, visual.codes, this.#chunkRows);
    return { total, terms: { [`visual_${c.target}`]: total } };
  }
}
