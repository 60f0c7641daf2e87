/**
 * The embedded default: a tiny ASVR study that needs no download and trains on any machine, on a CPU
 * too. `deno task train` (no arguments) runs it:
 *
 * 1. builds what the recipe assumes, each part once (cached under `.cache/asvr_tiny/`, keyed by a hash of
 *    its settings): generated shape scenes with captions, QA conversations and a typed evaluation set
 *    (tiny/shapes.ts); a BPE tokenizer.json trained on their text; a tiny SigLIP-style encoder pretrained
 *    to label each patch's object; a tiny LLaMA pretrained on the text; "semantic" RQ codebooks fitted
 *    on the encoder's features and "pixel" ones on raw patches;
 * 2. trains the paper's two stages on them (captions: projector + head; QA: everything, 10 epochs in
 *    length-grouped batches), with the `asvr_depth` head reconstructing the semantic codes (the visual
 *    term weighs 1 in stage 1 and 0.1 in stage 2, where at this scale it would crowd out the answers);
 * 3. evaluates on held-out scenes: colour, shape, count, relative position, and POPE-style existence.
 *
 * `deno task ablate` trains the same recipe with other heads (none, pixel, dual) and alignments over
 * several seeds. Every setting below is overridable with `--set` (e.g. `--set head.kind=none`).
 * @module
 */

import { join } from "node:path";
import { Engine } from "../core/engine.ts";
import {
  buildShapesDataset,
  parseShapesConfig,
  type ShapesConfig,
  writeShapesDataset,
} from "./tiny/shapes.ts";
import { patchLabels, renderScene } from "./tiny/shapes_render.ts";
import { normalizeImage, SIGLIP_NORM } from "../data/preprocess.ts";
import { TextTokenizer } from "../tokenizers/text_tokenizer.ts";
import { generationPrompt } from "../data/templates.ts";
import { writeBpeTokenizer } from "../tokenizers/train_bpe.ts";
import type { VisionConfig } from "../encoders/config.ts";
import { defineRun, type RunConfigInput } from "../trainers/config.ts";
import type { HeadConfigInput } from "../heads/mod.ts";
import { cachedPart } from "./tiny/cache.ts";
import { fitTinyCodebooks } from "./tiny/codebooks.ts";
import { pretrainEncoder } from "./tiny/pretrain_encoder.ts";
import { pretrainLlm, tinyLlmConfig, VOCAB_MULTIPLE } from "./tiny/pretrain_llm.ts";
import type { PretrainOptions } from "./tiny/pretrain_options.ts";

/** Every setting of the study's parts (a change rebuilds the parts it touches). */
export const TINY_STUDY: TinyStudy = {
  /**
   * The generated data (tiny/shapes.ts): objects on the encoder's 4 x 4 patch grid, so each patch shows
   * whole shapes, and up to 6 questions per stage-2 image.
   */
  shapes: {
    seed: 0,
    imageSize: 32,
    stage1Images: 600,
    stage2Images: 600,
    evalImages: 100,
    maxTurns: 6,
    grid: 4,
  },
  /** The text tokenizer's vocabulary (at most: BPE stops when no pair repeats). */
  tokenizer: { vocabSize: 768 },
  /** The vision encoder (SigLIP layout), pretrained on patch labels. */
  encoder: {
    config: {
      arch: "siglip",
      hiddenSize: 64,
      intermediateSize: 128,
      numLayers: 3,
      numHeads: 4,
      imageSize: 32,
      patchSize: 8,
      layerNormEps: 1e-6,
      act: "gelu_tanh",
    } as VisionConfig,
    pretrain: { steps: 100, batch: 16, lr: 3e-3, seed: 0 },
    /** Patches at least this covered by an object are labelled with it. */
    minCover: 0.25,
  },
  /** The LLM (LLaMA layout), pretrained on the corpus. */
  llm: { pretrain: { steps: 300, batch: 16, lr: 3e-3, seed: 0 } },
  /** The RQ tokenizers: semantic on encoder layer 2 of 3 (the recipe's second-to-last), pixel on patches. */
  codebooks: { layer: 2, depths: 4, codebookSize: 64, iters: 8, seed: 0 },
};

/** The settings of the study's parts: see {@linkcode TINY_STUDY}. */
export interface TinyStudy {
  /** The generated data (tiny/shapes.ts `ShapesConfig` fields). */
  shapes: Pick<
    ShapesConfig,
    "seed" | "imageSize" | "stage1Images" | "stage2Images" | "evalImages" | "maxTurns" | "grid"
  >;
  /** The text tokenizer. */
  tokenizer: { vocabSize: number };
  /** The vision encoder, its pretraining, and the patch-label cover threshold. */
  encoder: { config: VisionConfig; pretrain: PretrainOptions; minCover: number };
  /** The LLM's pretraining. */
  llm: { pretrain: PretrainOptions };
  /** The RQ codebooks. */
  codebooks: { layer: number; depths: number; codebookSize: number; iters: number; seed: number };
}

/**
 * The heads the study compares: the depth transformer on semantic codes (ASVR), on pixel codes, both, none.
 * Code widths: the encoder's 64 features (semantic), a patch's 3 x 8 x 8 pixels (pixel).
 */
export const TINY_HEADS: Record<"none" | "pixel" | "semantic" | "dual", HeadConfigInput> = {
  none: { kind: "none" },
  semantic: { kind: "asvr_depth", target: "semantic", width: 64, layers: 1, heads: 2, codebookDim: 64 },
  pixel: { kind: "asvr_depth", target: "pixel", width: 64, layers: 1, heads: 2, codebookDim: 3 * 8 * 8 },
  dual: {
    kind: "dual",
    appearance: {
      kind: "asvr_depth",
      target: "pixel",
      width: 64,
      layers: 1,
      heads: 2,
      codebookDim: 3 * 8 * 8,
    },
    semantic: { kind: "asvr_depth", target: "semantic", width: 64, layers: 1, heads: 2, codebookDim: 64 },
  },
};

/** Where the parts are cached. */
export const TINY_CACHE = ".cache/asvr_tiny";

/** The built parts' folders and files. */
export interface TinyParts {
  /** The generated data set's files. */
  data: { stage1: string; stage2: string; eval: string };
  /** The pretrained encoder's HF folder. */
  encoder: string;
  /** The pretrained LLM's HF folder (with the tokenizer's files). */
  llm: string;
  /** The semantic codebooks file. */
  semantic: string;
  /** The pixel codebooks file. */
  pixel: string;
}

/** Builds (or finds) every part, printing what it does; returns where they are. */
export async function buildTinyParts(
  root: string = TINY_CACHE,
  S: TinyStudy = TINY_STUDY,
  print: (l: string) => void = console.log,
  engine?: Engine,
): Promise<TinyParts> {
  const t0 = performance.now();
  const log = (l: string) => print(`[${((performance.now() - t0) / 1000).toFixed(0).padStart(4)} s] ${l}`);
  const shapes = parseShapesConfig(S.shapes, "TINY_STUDY.shapes");
  const data = await cachedPart(root, "data", shapes, async (dir) => {
    log("building the data: generated shape scenes, captions, conversations, evaluation questions");
    const files = await writeShapesDataset(dir, shapes);
    log(`  ${files.images} images`);
  });
  const tok = await cachedPart(
    root,
    "tokenizer",
    { data: data.hash, ...S.tokenizer, template: 1 },
    async (dir) => {
      log("training the text tokenizer (BPE) on the corpus and the chat template's words");
      const lines = (await Deno.readTextFile(join(data.dir, "corpus.txt"))).split("\n").filter((l) => l);
      // The template's system prompt and roles occur in every stage-2 row: let them be whole tokens.
      const template = generationPrompt("", false, "vicuna_v1");
      await writeBpeTokenizer(dir, [...lines, ...new Array(200).fill(template)], S.tokenizer);
    },
  );
  let own: Engine | null = null;
  const e = async () => engine ?? (own ??= await Engine.create());
  const dataset = buildShapesDataset(shapes);
  const trainImages = dataset.images.filter((im) => !im.image.includes("/ev_"));
  const side = S.encoder.config.imageSize, patch = S.encoder.config.patchSize;
  const pixels = () => {
    const out = new Float32Array(trainImages.length * 3 * side * side);
    trainImages.forEach((im, i) => {
      const { rgb } = renderScene(im.scene, side);
      out.set(normalizeImage({ width: side, height: side, data: rgb }, SIGLIP_NORM), i * 3 * side * side);
    });
    return out;
  };
  const enc = await cachedPart(root, "encoder", { data: data.hash, ...S.encoder }, async (dir) => {
    const N = (side / patch) ** 2;
    const labels = new Int32Array(trainImages.length * N);
    trainImages.forEach((im, i) => labels.set(patchLabels(im.scene, side, patch, S.encoder.minCover), i * N));
    const numClasses = 1 + shapes.colours.length * shapes.shapes.length;
    log(`pretraining the vision encoder: ${trainImages.length} images, ${numClasses} patch classes`);
    const r = await pretrainEncoder(await e(), { pixels: pixels(), patchLabels: labels, numClasses }, {
      config: S.encoder.config,
      ...S.encoder.pretrain,
      holdout: Math.min(100, Math.floor(trainImages.length / 5)),
      onStep: (s, loss) => {
        if ((s + 1) % 100 === 0) {
          log(`  step ${s + 1}/${S.encoder.pretrain.steps ?? 300} loss ${loss.toFixed(3)}`);
        }
      },
    });
    log(
      `  patch accuracy on held-out images ${(100 * r.accuracy).toFixed(1)}% (objects ${
        (100 * r.foregroundAccuracy).toFixed(1)
      }%, background share ${(100 * r.backgroundShare).toFixed(1)}%)`,
    );
    await r.encoder.save(dir);
    for (const t of r.encoder.params().values()) t.dispose();
  });
  const llmKey = { data: data.hash, tok: tok.hash, ...S.llm, vocabMultiple: VOCAB_MULTIPLE };
  const llm = await cachedPart(root, "llm", llmKey, async (dir) => {
    const tokenizer = await TextTokenizer.load(tok.dir);
    const lines = (await Deno.readTextFile(join(data.dir, "corpus.txt"))).split("\n").filter((l) => l);
    const seqs = lines.map((l) => tokenizer.encode(l, { addBos: true, addEos: true }));
    log(`pretraining the LLM on ${seqs.length} lines (vocabulary ${tokenizer.vocabSize})`);
    const r = await pretrainLlm(await e(), seqs, {
      config: tinyLlmConfig(tokenizer.vocabSize),
      ...S.llm.pretrain,
      onStep: (s, loss) => {
        if ((s + 1) % 100 === 0) {
          log(`  step ${s + 1}/${S.llm.pretrain.steps ?? 300} loss ${loss.toFixed(3)}`);
        }
      },
    });
    await r.model.save(dir);
    r.model.dispose();
    for (const f of ["tokenizer.json", "tokenizer_config.json"]) {
      await Deno.copyFile(join(tok.dir, f), join(dir, f));
    }
  });
  const books = await cachedPart(root, "codebooks", { enc: enc.hash, ...S.codebooks }, async (dir) => {
    log(`fitting RQ codebooks (${S.codebooks.depths} x ${S.codebooks.codebookSize}): semantic and pixel`);
    await fitTinyCodebooks(await e(), enc.dir, pixels(), {
      semantic: join(dir, "semantic.safetensors"),
      pixel: join(dir, "pixel.safetensors"),
    }, { ...S.codebooks, encoderId: `asvr_tiny-encoder-${enc.hash}` });
  });
  await (own as Engine | null)?.close();
  log(`parts ready in ${root}`);
  return {
    data: {
      stage1: join(data.dir, "stage1.json"),
      stage2: join(data.dir, "stage2.json"),
      eval: join(data.dir, "eval.json"),
    },
    encoder: enc.dir,
    llm: llm.dir,
    semantic: join(books.dir, "semantic.safetensors"),
    pixel: join(books.dir, "pixel.safetensors"),
  };
}

/** The run config on built parts (or, for `--plan`, on random-init sizes and placeholder paths). */
export function tinyRun(parts: TinyParts | null, S: TinyStudy = TINY_STUDY): RunConfigInput {
  const { arch: _a, ...vision } = S.encoder.config;
  const p = parts ?? {
    data: { stage1: "stage1.json", stage2: "stage2.json", eval: "eval.json" },
    encoder: "",
    llm: "",
    semantic: "semantic.safetensors",
    pixel: "pixel.safetensors",
  };
  const rq = {
    kind: "rq" as const,
    encoder: "input",
    depths: S.codebooks.depths,
    codebookSize: S.codebooks.codebookSize,
  };
  return defineRun({
    name: "asvr_tiny",
    encoder: { kind: "siglip", ...(parts ? { path: p.encoder } : { config: vision }), layer: -2 },
    projector: { kind: "mlp2x_gelu" },
    llm: parts ? { kind: "llama", path: p.llm } : { kind: "llama", config: llmSizes(S.tokenizer.vocabSize) },
    visualTokenizers: [
      { ...rq, name: "semantic", layer: S.codebooks.layer, codebooks: p.semantic },
      { ...rq, name: "pixel", layer: "pixels", codebooks: p.pixel },
    ],
    head: TINY_HEADS.semantic,
    loss: { textWeight: 1, visualWeight: 1 },
    data: { maxLength: 256, prefetch: 2, groupByLength: true },
    train: {
      seed: 0,
      evalData: p.data.eval,
      evalMaxNewTokens: 4,
      keepLast: 1,
      out: "runs",
      stages: [
        { name: "pretrain", data: p.data.stage1, template: "plain", batchSize: 16, lr: 2e-3, epochs: 2 },
        {
          name: "finetune",
          data: p.data.stage2,
          template: "vicuna_v1",
          imageMode: "pad",
          trainable: { projector: true, llm: true, head: true },
          batchSize: 16,
          lr: 3e-3,
          epochs: 10,
          // At this scale the visual term (3-4x the text term at 1:1) crowds out the answers' signal.
          visualWeight: 0.1,
        },
      ],
    },
  });
}

/** The tiny LLM's sizes without `arch` (a slot's `config`). */
function llmSizes(vocabSize: number): Omit<ReturnType<typeof tinyLlmConfig>, "arch"> {
  const { arch: _arch, ...sizes } = tinyLlmConfig(vocabSize);
  return sizes;
}

/** The run file's builder: builds the parts (unless planning) and returns the run config. */
export default async function asvrTiny(opts: { build: boolean }): Promise<RunConfigInput> {
  return tinyRun(opts.build ? await buildTinyParts() : null);
}
