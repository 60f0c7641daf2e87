/**
 * A tiny causal transformer language model trained end to end on the engine: embedding, RMSNorm,
 * grouped-query attention with RoPE, SwiGLU, cross-entropy, AdamW with clipping, and (optionally)
 * gradient checkpointing per block. The data is a rule that needs attention: each token is the sum
 * of the two before it, modulo V. Run it: `deno run -A examples/tiny_lm.ts`.
 * @module
 */

import { Engine } from "../core/engine.ts";
import type { Tensor } from "../core/tensor.ts";
import { backward, checkpoint, reshape, zeroGrad } from "../core/autograd.ts";
import { randn, rng } from "../core/random.ts";
import { add } from "../core/kernels/elementwise/elementwise.ts";
import { swiglu } from "../core/kernels/elementwise/elementwise.ts";
import { matmul } from "../core/kernels/matmul/matmul.ts";
import { rmsNorm } from "../core/kernels/rmsnorm/rmsnorm.ts";
import { attention } from "../core/kernels/attention/attention.ts";
import { rope } from "../core/kernels/rope/rope.ts";
import { permute } from "../core/kernels/permute/permute.ts";
import { embedding } from "../core/kernels/embedding/embedding.ts";
import { crossEntropy } from "../core/kernels/cross_entropy/cross_entropy.ts";
import { AdamW } from "../core/kernels/adamw/adamw.ts";
import { clipGradNorm } from "../core/kernels/clip/clip.ts";

/** Sizes of the tiny model. */
export interface TinyLMConfig {
  /** Vocabulary size V. */
  vocab: number;
  /** Width C. */
  width: number;
  /** Query heads NH and key/value heads NKV (NH % NKV == 0). */
  heads: number;
  kvHeads: number;
  /** Hidden width of the SwiGLU MLP. */
  ffn: number;
  /** Number of transformer blocks. */
  layers: number;
  /** Re-run each block's forward in backward instead of keeping its activations. */
  checkpointBlocks: boolean;
}

/** The default tiny configuration. */
export const TINY_LM: TinyLMConfig = {
  vocab: 16,
  width: 64,
  heads: 4,
  kvHeads: 2,
  ffn: 128,
  layers: 1,
  checkpointBlocks: false,
};

interface Block {
  norm1: Tensor;
  wq: Tensor; // [C, C]
  wk: Tensor; // [NKV*HS, C]
  wv: Tensor; // [NKV*HS, C]
  wo: Tensor; // [C, C]
  norm2: Tensor;
  wGate: Tensor; // [F, C]
  wUp: Tensor; // [F, C]
  wDown: Tensor; // [C, F]
}

/** A tiny LLaMA-style decoder. */
export class TinyLM {
  readonly cfg: TinyLMConfig;
  readonly wte: Tensor; // [V, C]
  readonly blocks: Block[];
  readonly normF: Tensor; // [C]
  readonly head: Tensor; // [V, C]

  constructor(e: Engine, cfg: TinyLMConfig, seed = 0) {
    this.cfg = cfg;
    const { vocab: V, width: C, ffn: F } = cfg;
    const kvw = (C / cfg.heads) * cfg.kvHeads;
    let s = seed * 1000;
    const w = (rows: number, cols: number, name: string) =>
      e.param(randn(rows * cols, ++s, 1 / Math.sqrt(cols)), [rows, cols], { name });
    const ones = (n: number, name: string) => e.param(new Float32Array(n).fill(1), [n], { name });
    this.wte = w(V, C, "embed_tokens.weight");
    this.blocks = [];
    for (let l = 0; l < cfg.layers; l++) {
      this.blocks.push({
        norm1: ones(C, `layers.${l}.input_layernorm.weight`),
        wq: w(C, C, `layers.${l}.self_attn.q_proj.weight`),
        wk: w(kvw, C, `layers.${l}.self_attn.k_proj.weight`),
        wv: w(kvw, C, `layers.${l}.self_attn.v_proj.weight`),
        wo: w(C, C, `layers.${l}.self_attn.o_proj.weight`),
        norm2: ones(C, `layers.${l}.post_attention_layernorm.weight`),
        wGate: w(F, C, `layers.${l}.mlp.gate_proj.weight`),
        wUp: w(F, C, `layers.${l}.mlp.up_proj.weight`),
        wDown: w(C, F, `layers.${l}.mlp.down_proj.weight`),
      });
    }
    this.normF = ones(C, "norm.weight");
    this.head = w(V, C, "lm_head.weight");
  }

  /** Every parameter. */
  params(): Tensor[] {
    return [this.wte, ...this.blocks.flatMap((b) => Object.values(b)), this.normF, this.head];
  }

  /** One block: x [B, T, C] -> [B, T, C]. */
  block(b: Block, x: Tensor): Tensor {
    const [B, T, C] = x.shape;
    const NH = this.cfg.heads, NKV = this.cfg.kvHeads, HS = C / NH;
    const heads = (t: Tensor, n: number) => permute(reshape(t, [B, T, n, HS]), [0, 2, 1, 3]); // [B, n, T, HS]
    const h = rmsNorm(x, b.norm1);
    const q = rope(heads(matmul(h, b.wq, { transB: true }), NH));
    const k = rope(heads(matmul(h, b.wk, { transB: true }), NKV));
    const v = heads(matmul(h, b.wv, { transB: true }), NKV);
    const a = reshape(permute(attention(q, k, v), [0, 2, 1, 3]), [B, T, C]); // [B, T, C]
    x = add(x, matmul(a, b.wo, { transB: true }));
    const h2 = rmsNorm(x, b.norm2);
    const f = swiglu(matmul(h2, b.wGate, { transB: true }), matmul(h2, b.wUp, { transB: true })); // [B, T, F]
    return add(x, matmul(f, b.wDown, { transB: true }));
  }

  /** Mean next-token loss of ids [B, T] against targets [B*T] (-100: not supervised). */
  loss(ids: Tensor, targets: Tensor): Tensor {
    let x = embedding(this.wte, ids); // [B, T, C]
    for (const b of this.blocks) {
      x = this.cfg.checkpointBlocks ? checkpoint((y) => this.block(b, y), x) : this.block(b, x);
    }
    const logits = matmul(rmsNorm(x, this.normF), this.head, { transB: true }); // [B, T, V]
    return crossEntropy(reshape(logits, [x.shape[0] * x.shape[1], this.cfg.vocab]), targets);
  }
}

/**
 * A batch of the "sum of the two previous tokens mod V" rule: ids [B, T] and targets [B*T], the
 * first target of each row unsupervised (-100) since it needs two tokens of context.
 */
export function sumRuleBatch(
  B: number,
  T: number,
  V: number,
  seed: number,
): { ids: Int32Array; targets: Int32Array } {
  const r = rng(seed);
  const ids = new Int32Array(B * T), targets = new Int32Array(B * T);
  for (let b = 0; b < B; b++) {
    const seq = [Math.floor(r() * V), Math.floor(r() * V)];
    while (seq.length < T + 1) seq.push((seq.at(-1)! + seq.at(-2)!) % V);
    for (let t = 0; t < T; t++) {
      ids[b * T + t] = seq[t];
      targets[b * T + t] = t === 0 ? -100 : seq[t + 1];
    }
  }
  return { ids, targets };
}

/** Options of {@linkcode trainTinyLM}. */
export interface TrainTinyOptions {
  steps: number;
  batch: number;
  seqLen: number;
  lr: number;
  seed: number;
  /** Called after each step with the step's loss (reading the loss waits for the GPU). */
  onStep?: (step: number, loss: number) => void;
}

/** Trains a {@linkcode TinyLM} on the sum rule; returns the model and the loss of every step. */
export async function trainTinyLM(
  e: Engine,
  cfg: TinyLMConfig = TINY_LM,
  opts: TrainTinyOptions = { steps: 300, batch: 16, seqLen: 12, lr: 1e-2, seed: 1 },
): Promise<{ model: TinyLM; losses: number[] }> {
  const model = new TinyLM(e, cfg, opts.seed);
  const optim = new AdamW(model.params(), { lr: opts.lr, weightDecay: 0.01 });
  const losses: number[] = [];
  for (let step = 0; step < opts.steps; step++) {
    const { ids, targets } = sumRuleBatch(opts.batch, opts.seqLen, cfg.vocab, opts.seed * 100003 + step);
    const loss = e.tidy(() => {
      const l = model.loss(
        e.tensor(ids, [opts.batch, opts.seqLen], "i32"),
        e.tensor(targets, [targets.length], "i32"),
      );
      backward(l);
      clipGradNorm(model.params(), 1.0);
      optim.step();
      zeroGrad(model.params());
      return l;
    });
    const value = (await loss.read())[0];
    loss.dispose();
    losses.push(value);
    opts.onStep?.(step, value);
  }
  return { model, losses };
}

if (import.meta.main) {
  const e = await Engine.create();
  const { losses } = await trainTinyLM(e, TINY_LM, {
    steps: 300,
    batch: 16,
    seqLen: 12,
    lr: 1e-2,
    seed: 1,
    onStep: (s, l) => s % 20 === 0 && console.log(`step ${s}  loss ${l.toFixed(4)}`),
  });
  console.log(`loss ${losses[0].toFixed(3)} -> ${losses.at(-1)!.toFixed(3)}`);
}
