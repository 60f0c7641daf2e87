/**
 * Writing your own visual head, in five steps, without editing the framework.
 *
 * The head here is a **cosine-regression head**: instead of classifying each RQ depth's discrete code,
 * it regresses the tokenizer's quantized feature itself, the reconstruction r = C_0[k_0] + ... +
 * C_{D-1}[k_{D-1}] that the codes stand for, and scores the prediction p = MLP(H) by its cosine
 * with r. A continuous target for the same visual tokens: an ablation next to ASVR's discrete one.
 *
 * This file is also a run file: `deno task train examples/custom_head.ts` trains the embedded tiny
 * study with this head in place of ASVR's, and `deno task eval` / `export` / `train --resume` of that
 * run import this file again (the run folder records it), so the head is a kind like the built-in
 * ones. `deno run -A examples/custom_head.ts` trains the head alone on synthetic codes.
 * @module
 */

import { z } from "zod";
import {
  AdamW,
  add,
  backward,
  cast,
  embedding,
  Engine,
  gelu,
  matmul,
  mul,
  randInt,
  randn,
  reshape,
  rmsNorm,
  scale,
  slice,
  sub,
  sum,
  type Tensor,
  zeroGrad,
} from "@asvr/asvr/core";
import {
  buildHead,
  checkVisualInputs,
  type HeadContext,
  type HeadLoss,
  ParamMaker,
  type ParamSink,
  parseHeadConfig,
  registerHead,
  ShapeRecorder,
  type VisualHead,
  type VisualTargetCodes,
  type VisualTargets,
} from "@asvr/asvr/heads";
import { defineRun, type RunConfigInput } from "@asvr/asvr/trainers";
import { buildTinyParts, tinyRun } from "./asvr_tiny.ts";

// ---------------------------------------------------------------- 1. the config, as data
//
// A kind name and the head's own fields. The zod schema validates a config once, at the edge, and
// holds the defaults; `parseHeadConfig` reports its issues under the config's path (`head.width`).
// The config's type is the schema's output: one definition.

const cosineHeadSchema = z.strictObject({
  kind: z.literal("cosine_recon"),
  /** Hidden width of the MLP (default 512). */
  width: z.number().int().positive().default(512),
  /** Width Dc of the codebook vectors, the regression target's width (default 1152). */
  codebookDim: z.number().int().positive().default(1152),
  /** Which tokenizer's codes it reconstructs (default "semantic"). */
  target: z.string().default("semantic"),
});

/** The config of the cosine-regression head. */
export type CosineHeadConfig = z.output<typeof cosineHeadSchema>;

// ---------------------------------------------------------------- 2. the head
//
// A head is any object with `kind`, `params()` and `loss(hidden, targets)` (the `VisualHead`
// interface). `hidden` is H [B, N, d_llm], the LLM's hidden states at the image positions; the model
// has already aligned the codes with the patches and written -100 where a patch is not supervised.

/** Regresses the RQ reconstruction of each patch's codes from H, scored by cosine similarity. */
export class CosineHead implements VisualHead {
  /** The registered kind. */
  readonly kind = "cosine_recon";
  /** The parsed config. */
  readonly cfg: CosineHeadConfig;
  readonly #llmWidth: number;
  readonly #params: Map<string, Tensor>;
  readonly #ones: Tensor; // [Dc]: RMSNorm without a learned scale

  /** A head for an LLM of width `ctx.llmWidth`, initialized from `ctx.seed`. */
  constructor(e: Engine, cfg: CosineHeadConfig, ctx: HeadContext) {
    this.cfg = cfg;
    this.#llmWidth = ctx.llmWidth;
    const m = new ParamMaker(e, ctx.dtype ?? "f32", ctx.seed ?? 0);
    CosineHead.makeParams(m, cfg, ctx.llmWidth);
    this.#params = m.params;
    this.#ones = e.tensor(new Float32Array(cfg.codebookDim).fill(1), [cfg.codebookDim], ctx.dtype ?? "f32");
    e.untrack(this.#ones); // lives as long as the head, like a parameter, but is not trained
  }

  /**
   * Makes the parameters in `m`. Names are yours to choose: they are what checkpoints store. The
   * same code with a `ShapeRecorder` gives the shapes `--plan` counts.
   */
  static makeParams<T>(m: ParamSink<T>, cfg: CosineHeadConfig, llmWidth: number): void {
    m.linear("mlp.0.", llmWidth, cfg.width); // Linear d_llm -> width
    m.linear("mlp.2.", cfg.width, cfg.codebookDim); // Linear width -> Dc
  }

  /** `mlp.0.{weight,bias}` and `mlp.2.{weight,bias}`. */
  params(): Map<string, Tensor> {
    return new Map(this.#params);
  }

  /**
   * The mean over all B*N patches of (1 - cos(p, r)) for supervised patches; a fully masked patch
   * (codes -100) reconstructs to r = 0 and adds nothing. Term: `visual_cosine`.
   */
  loss(hidden: Tensor, targets: VisualTargets): HeadLoss {
    // The framework's input checks give clear errors for wrong shapes or a missing tokenizer.
    const depths = targets[this.cfg.target]?.codes.shape[2] ?? 0;
    const { B, N, visual } = checkVisualInputs(hidden, targets, {
      head: "CosineHead",
      llmWidth: this.#llmWidth,
      target: this.cfg.target,
      depths,
      codebookDim: this.cfg.codebookDim,
    });
    const R = B * N, Dc = this.cfg.codebookDim;
    const p = this.#params;
    const lin = (x: Tensor, pre: string) =>
      matmul(x, p.get(`${pre}weight`)!, { transB: true, bias: p.get(`${pre}bias`)! });
    const pred = lin(gelu(lin(reshape(hidden, [R, this.#llmWidth]), "mlp.0."), "none"), "mlp.2."); // [R, Dc]
    const recon = cast(reconstruct(visual, R), pred.dtype); // [R, Dc], no gradient (frozen codebooks)
    // cos(p, r) * Dc = rmsnorm(p) . rmsnorm(r); |rmsnorm(r)|^2 = Dc for r != 0 and 0 for r = 0.
    const pn = rmsNorm(pred, this.#ones), rn = rmsNorm(recon, this.#ones);
    const cosDc = sum(mul(pn, rn), -1); // [R]
    const supervisedDc = sum(mul(rn, rn), -1); // [R]: Dc or 0
    const total = cast(scale(sum(sub(supervisedDc, cosDc)), 1 / (R * Dc)), "f32"); // f32 []
    return { total, terms: { visual_cosine: total } };
  }
}

/** r [R, Dc] = sum over depths d of codebook d's row k_d (a zero row where k_d is -100). */
function reconstruct(visual: VisualTargetCodes, R: number): Tensor {
  const [D, K, Dc] = visual.codebooks.shape;
  const codes = visual.codes.view([R, D]);
  let r: Tensor | null = null;
  for (let d = 0; d < D; d++) {
    const book = reshape(slice(visual.codebooks, 0, d, d + 1), [K, Dc]); // codebook d [K, Dc]
    const rows = cast(embedding(book, slice(codes, 1, d, d + 1).view([R])), "f32"); // [R, Dc]
    r = r ? add(r, rows) : rows;
  }
  return r!;
}

// ---------------------------------------------------------------- 3. register the kind
//
// From here on `{ kind: "cosine_recon" }` parses (with the schema's defaults and errors), builds,
// plans and feeds the head like the built-in kinds. `targets` tells the model which tokenizer's codes
// the head learns (and that it reads their codebooks, so the widths are checked before training);
// `paramShapes` lets `--plan` count it.

registerHead({
  kind: "cosine_recon",
  schema: cosineHeadSchema,
  build: (e, cfg, ctx) => new CosineHead(e, cfg, ctx),
  targets: (cfg) => [{ tokenizer: cfg.target, at: "", codebookDim: cfg.codebookDim }],
  paramShapes: (cfg, llmWidth) => {
    const m = new ShapeRecorder();
    CosineHead.makeParams(m, cfg, llmWidth);
    return m.shapes;
  },
});

// ---------------------------------------------------------------- 4. use it in a run file
//
// The embedded tiny study with this head: its semantic codebooks are 64 wide. Every other part of
// the run is the study's; `--set head.width=32` and the like work as for any kind.

/** The run: the tiny study (its parts built unless planning) with the cosine head. */
export default async function cosineRun(opts: { build: boolean }): Promise<RunConfigInput> {
  const study = tinyRun(opts.build ? await buildTinyParts() : null);
  return defineRun({
    ...study,
    name: "asvr_tiny_cosine",
    head: { kind: "cosine_recon", target: "semantic", width: 64, codebookDim: 64 },
  });
}

// ---------------------------------------------------------------- 5. train it alone (synthetic data)

/**
 * Trains a small cosine head on fixed synthetic inputs, `steps` AdamW steps; returns the loss of each
 * step. The hidden states carry the reconstruction through a fixed random map, so the loss can fall.
 */
export async function trainCosineHead(
  e: Engine,
  steps = 30,
  log?: (step: number, loss: number) => void,
): Promise<
  number[]
> {
  const B = 2, N = 6, DL = 16, D = 3, K = 8, Dc = 6;
  const cfg = parseHeadConfig({ kind: "cosine_recon", width: 32, codebookDim: Dc }, "head");
  const head = buildHead(e, cfg, { llmWidth: DL, seed: 1 });
  const codes = randInt(B * N * D, K, 2);
  const books = randn(D * K * Dc, 3);
  // hidden = A r + noise, with r the reconstruction of each patch's codes.
  const A = randn(DL * Dc, 4, 0.5), noise = randn(B * N * DL, 5, 0.1);
  const hidden = new Float32Array(B * N * DL);
  for (let i = 0; i < B * N; i++) {
    for (let o = 0; o < DL; o++) {
      let acc = noise[i * DL + o];
      for (let d = 0; d < D; d++) {
        for (let j = 0; j < Dc; j++) acc += A[o * Dc + j] * books[(d * K + codes[i * D + d]) * Dc + j];
      }
      hidden[i * DL + o] = acc;
    }
  }
  const h = e.tensor(hidden, [B, N, DL]);
  const targets = {
    semantic: { codes: e.tensor(codes, [B, N, D], "i32"), codebooks: e.tensor(books, [D, K, Dc]) },
  };
  const params = [...head.params().values()];
  const opt = new AdamW(params, { lr: 1e-2 });
  const losses: number[] = [];
  for (let step = 0; step < steps; step++) {
    const loss = e.tidy(() => {
      const { total } = head.loss(h, targets);
      backward(total);
      opt.step();
      zeroGrad(params);
      return total;
    });
    losses.push((await loss.read())[0]);
    loss.dispose();
    log?.(step, losses[step]);
  }
  for (const t of [h, targets.semantic.codes, targets.semantic.codebooks, ...params]) t.dispose();
  return losses;
}

if (import.meta.main) {
  const e = await Engine.create();
  const losses = await trainCosineHead(
    e,
    60,
    (s, l) => s % 10 === 0 && console.log(`step ${s}  loss ${l.toFixed(4)}`),
  );
  console.log(`cosine loss ${losses[0].toFixed(3)} -> ${losses.at(-1)!.toFixed(3)}`);
}
