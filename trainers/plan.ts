/**
 * `--plan`: what a run will hold, computed from the configs alone (the model folders' config.json, no
 * weights): parameters per component, trainable parameters per stage, and estimated GPU memory per
 * stage (weights, gradients, optimizer state, activations and head logits at the configured micro-batch),
 * beside the adapter's per-tensor limits. Estimates, not measurements: activations are counted per
 * decoder layer from the tensors its forward keeps. A test holds the stage total within 10% of the
 * buffer pool's measured peak over training steps of scaled-down models at `data.maxLength` with
 * checkpointed layers (without checkpointing the estimate is ~14% low). {@linkcode planWorld} gives the
 * memory per GPU of data-parallel training on N GPUs, with the optimizer state whole or sharded.
 * @module
 */

import { basename, join } from "node:path";
import { type LlmConfig, llmConfigFromHf } from "../backbones/config.ts";
import { decoderParamShapes, layerParamShape } from "../backbones/decoder.ts";
import { matmulAttentionWorkspace } from "../core/kernels/attention/attention_matmul.ts";
import { LORA_TARGET_KEYS, LORA_TARGETS, type LoraConfig, parseLoraConfig } from "../backbones/lora.ts";
import { type VisionConfig, visionConfigFromHf } from "../encoders/config.ts";
import { gpuVisionSlot, type VisionEncoderSlotConfig } from "../encoders/slot_config.ts";
import { visionParamShapes } from "../encoders/vit.ts";
import { headParamShapes, headPlanBytes } from "../heads/mod.ts";
import { projectorParamShapes } from "../projectors/projector.ts";
import { rqTokenizers } from "../tokenizers/visual_config.ts";
import type { RunConfig, StageConfig } from "./config.ts";
import { shardLoads } from "./shard_owners.ts";

/** Shapes of public checkpoints, used when a folder is not on disk yet (keyed by folder name). */
export const KNOWN_MODELS: Record<string, { repo: string; llm?: LlmConfig; vision?: VisionConfig }> = {
  "vicuna-7b-v1.5": {
    repo: "lmsys/vicuna-7b-v1.5",
    llm: {
      arch: "llama",
      vocabSize: 32000,
      hiddenSize: 4096,
      intermediateSize: 11008,
      numLayers: 32,
      numHeads: 32,
      numKvHeads: 32,
      headDim: 128,
      rmsNormEps: 1e-5,
      ropeTheta: 10000,
      tieWordEmbeddings: false,
      slidingWindow: null,
      attentionBias: false,
      maxPositions: 4096,
    },
  },
  "siglip-so400m-patch14-384": {
    repo: "google/siglip-so400m-patch14-384",
    vision: {
      arch: "siglip",
      hiddenSize: 1152,
      intermediateSize: 4304,
      numLayers: 27,
      numHeads: 16,
      imageSize: 384,
      patchSize: 14,
      layerNormEps: 1e-6,
      act: "gelu_tanh",
    },
  },
};

/** One component's parameter count. */
export interface ComponentPlan {
  /** encoder, projector, llm, head, or a tokenizer's name. */
  name: string;
  /** Parameters (codebook entries for a tokenizer). */
  params: number;
  /** Of those, the ones a stage that trains the component trains (default: all). */
  trainable?: number;
  /** Where its sizes came from (a config.json, the run file, or a known public checkpoint). */
  source: string;
  /** The largest single tensor, in elements. */
  largest: number;
}

/** One stage's memory estimate, in bytes. */
export interface StagePlan {
  /** The stage's name. */
  name: string;
  /** Trainable parameters. */
  trainable: number;
  /**
   * Elements of each trainable tensor (their sum is `trainable`): what `train.distributed.shardOptimizer`
   * assigns to ranks whole (trainers/shard_owners.ts).
   */
  trainableSizes: number[];
  /** Every parameter and codebook, at its storage dtype. */
  weights: number;
  /** Gradients of the trainable parameters. */
  gradients: number;
  /** AdamW moments (f32), plus f32 master weights when parameters are f16. */
  optimizer: number;
  /** Activations kept for backward over one micro-batch. */
  activations: number;
  /** The visual loss's logits at their peak (one depth, one chunk of rows). */
  headLogits: number;
  /** The sum. */
  total: number;
}

/** The whole plan. */
export interface RunPlan {
  /** Per component. */
  components: ComponentPlan[];
  /** Per stage. */
  stages: StagePlan[];
  /** Bytes of the largest single tensor (parameters over `maxStorageBufferBindingSize` are split by rows). */
  largestTensorBytes: number;
  /** Image positions per row (the encoder's patches). */
  imageTokens: number;
}

const GiB = 2 ** 30;

/** The plan of a parsed run config; reads only the model folders' config.json. */
export async function planRun(cfg: RunConfig): Promise<RunPlan> {
  const bytes = cfg.train.dtype === "f16" ? 2 : 4;
  const llm = await llmSizes(cfg);
  const visionSlot = gpuVisionSlot(cfg.encoder); // null: an ONNX encoder, whose sizes are unknown
  const vision = visionSlot ? await visionSizes(visionSlot) : null;
  const components: ComponentPlan[] = [];
  // Elements of each tensor a stage that trains the component trains, by component name.
  const tensors = new Map<string, number[]>();
  const llmShapes = decoderParamShapes(llm.cfg);
  components.push({
    name: "llm",
    params: sumShapes(llmShapes.values()),
    source: llm.source,
    largest: Math.max(...[...llmShapes.values()].map(numel)),
  });
  tensors.set("llm", [...llmShapes.values()].map(numel));
  if (vision) {
    const shapes = visionParamShapes(vision.cfg);
    components.push({
      name: "encoder",
      params: sumShapes(shapes.values()),
      source: vision.source,
      largest: Math.max(...[...shapes.values()].map(numel)),
    });
  } else components.push({ name: "encoder", params: 0, source: "ONNX (runs on the CPU)", largest: 0 });
  const inDim = cfg.projector.inDim ?? vision?.cfg.hiddenSize ?? llm.cfg.hiddenSize;
  const C = llm.cfg.hiddenSize;
  const projShapes = [...projectorParamShapes({ kind: cfg.projector.kind, inDim, outDim: C }).values()];
  components.push({
    name: "projector",
    params: sumShapes(projShapes),
    source: "run file",
    largest: Math.max(0, ...projShapes.map(numel)),
  });
  tensors.set("projector", projShapes.map(numel));
  if (cfg.llm.lora) {
    const l = cfg.llm.lora;
    const shapes = l.targets.map((t) => layerParamShape(llm.cfg, LORA_TARGET_KEYS[t])); // [out, in] each
    components.push({
      name: "lora",
      params: llm.cfg.numLayers * shapes.reduce((n, [out, inDim]) => n + l.rank * (out + inDim), 0),
      source: `rank ${l.rank} on ${l.targets.join(", ")}`,
      largest: Math.max(...shapes.map(([out, inDim]) => l.rank * Math.max(out, inDim))),
    });
    // Per layer and target: A [r, in] and B [out, r].
    const pair = shapes.flatMap(([out, inDim]) => [l.rank * inDim, out * l.rank]);
    tensors.set("lora", Array.from({ length: llm.cfg.numLayers }, () => pair).flat());
  }
  const headShapes = [...headParamShapes(cfg.head, C) ?? []].map(([, p]) => p);
  components.push({
    name: "head",
    params: sumShapes(headShapes.map((p) => p.shape)),
    trainable: sumShapes(headShapes.filter((p) => !p.frozen).map((p) => p.shape)),
    source: headParamShapes(cfg.head, C)
      ? "run file"
      : `run file; kind "${cfg.head.kind}" declares no paramShapes, not counted`,
    largest: Math.max(0, ...headShapes.map((p) => numel(p.shape))),
  });
  tensors.set("head", headShapes.filter((p) => !p.frozen).map((p) => numel(p.shape)));
  for (const t of rqTokenizers(cfg.visualTokenizers)) {
    const dim = t.layer === "pixels" ? 3 * (vision?.cfg.patchSize ?? 14) ** 2 : vision?.cfg.hiddenSize ?? 0;
    const books = t.sharedCodebook ? 1 : t.depths;
    components.push({
      name: `tokenizer ${t.name}`,
      params: books * t.codebookSize * dim,
      source: t.codebooks,
      largest: books * t.codebookSize * dim,
    });
  }
  const N = vision ? Math.floor(vision.cfg.imageSize / vision.cfg.patchSize) ** 2 : 0;
  const total = components.reduce((s, c) => s + c.params, 0);
  const stages = cfg.train.stages.map((s) =>
    stagePlan(cfg, s, components, tensors, total, llm.cfg, N, bytes)
  );
  const largestTensorBytes = Math.max(...components.map((c) => c.largest)) * bytes;
  return { components, stages, largestTensorBytes, imageTokens: N };
}

function stagePlan(
  cfg: RunConfig,
  s: StageConfig,
  components: ComponentPlan[],
  tensors: Map<string, number[]>,
  total: number,
  llm: LlmConfig,
  N: number,
  bytes: number,
): StagePlan {
  const count = (name: string) => {
    const c = components.find((c) => c.name === name);
    return c?.trainable ?? c?.params ?? 0;
  };
  // With LoRA a stage that trains the LLM trains its adapters instead.
  const llmTrains = s.trainable.llm ? (cfg.llm.lora ? count("lora") : count("llm")) : 0;
  const trainable = llmTrains + (s.trainable.projector ? count("projector") : 0) +
    (s.trainable.head ? count("head") : 0);
  const trainableSizes = [
    ...(s.trainable.llm ? tensors.get(cfg.llm.lora ? "lora" : "llm")! : []),
    ...(s.trainable.projector ? tensors.get("projector")! : []),
    ...(s.trainable.head ? tensors.get("head")! : []),
  ];
  const tokenizers = components.filter((c) => c.name.startsWith("tokenizer ")).reduce(
    (a, c) => a + c.params,
    0,
  );
  const weights = (total - tokenizers) * bytes + tokenizers * 4;
  const gradients = trainable * bytes;
  const optimizer = trainable * optimizerBytesPerElement(bytes);
  const B = s.batchSize, T = cfg.data.maxLength;
  const llmActs = llmActivationBytes(llm, {
    B,
    T,
    bytes,
    lora: cfg.llm.lora,
    checkpointLayers: cfg.train.checkpointLayers,
  });
  // The head's activations over the B x N image rows and its peak logits, as its kind declares them.
  const head = headPlanBytes(cfg.head, {
    rows: B * N,
    bytes,
    llmWidth: llm.hiddenSize,
    ...(cfg.loss.chunkRows !== undefined ? { chunkRows: cfg.loss.chunkRows } : {}),
  });
  const headLogits = head.logits;
  const activations = llmActs + head.activations;
  return {
    name: s.name,
    trainable,
    trainableSizes,
    weights,
    gradients,
    optimizer,
    activations,
    headLogits,
    total: weights + gradients + optimizer + activations + headLogits,
  };
}

/** Optimizer-state bytes per trainable element: AdamW's two f32 moments, plus an f32 master of an f16 weight. */
function optimizerBytesPerElement(bytes: number): number {
  return 8 + (bytes === 2 ? 4 : 0);
}

/** What {@linkcode llmActivationBytes} needs besides the decoder's config. */
export interface LlmStepShape {
  /** Rows per micro-batch. */
  B: number;
  /** Positions per row. */
  T: number;
  /** Bytes per activation element (4: f32, 2: f16). */
  bytes: number;
  /** The LoRA adapters, when the decoder has them. */
  lora?: LoraConfig | null;
  /** Whether each decoder layer is recomputed in backward (only its input kept). */
  checkpointLayers: boolean;
}

/**
 * Peak bytes of a decoder's activations in a training step: the layers' kept tensors, one layer's
 * gradients in backward, the attention's score workspace and the text loss's logits. Part of every
 * stage's plan; bench/gpu_step.ts states it beside the measured peak of the LLM alone.
 */
export function llmActivationBytes(llm: LlmConfig, o: LlmStepShape): number {
  const { B, T, bytes } = o, C = llm.hiddenSize, I = llm.intermediateSize;
  const qkv = (llm.numHeads + 2 * llm.numKvHeads) * llm.headDim;
  // One decoder layer keeps: 2 norms' inputs and outputs, q/k/v, the attention output and its
  // statistics, the output projection, gate/up/SwiGLU, the residual sums.
  // LoRA adds per adapted projection x A^T and its scaled copy [r], the low-rank output and the sum [out].
  const lora = o.lora;
  const loraWidths = lora
    ? lora.targets.reduce((n, t) => n + 2 * layerParamShape(llm, LORA_TARGET_KEYS[t])[0] + 2 * lora.rank, 0)
    : 0;
  const base = B * T * (6 * C + qkv + llm.numHeads * llm.headDim + 3 * I) * bytes;
  const perLayer = base + B * T * loraWidths * bytes;
  // Kept for backward: every layer's input with checkpointing (one layer recomputed at a time), else
  // every layer's tensors; then the gradients of one layer's tensors while its backward runs (the LoRA
  // path counted once: what the plan's test measures).
  const layers =
    (o.checkpointLayers ? B * T * C * bytes * llm.numLayers + perLayer : perLayer * llm.numLayers) +
    base;
  // The text logits (f32), held once; or, past 64 MiB, one chunk of them recomputed in backward beside
  // its gradient (losses/text_ce.ts). Both measured by the plan's test.
  const fullLogits = B * T * llm.vocabSize * 4, chunk = 64 * 2 ** 20;
  const logits = fullLogits <= chunk ? fullLogits : 2 * chunk;
  // The attention's score workspace while one layer's backward runs (its matmul path: two score
  // buffers of a chunk of heads, at most 2 x 128 MiB).
  const scores = matmulAttentionWorkspace(
    { B, NH: llm.numHeads, NKV: llm.numKvHeads, T, HS: llm.headDim },
    bytes === 2 ? "f16" : "f32",
  );
  return layers + logits + scores;
}

/** The number of elements of each shape, summed. */
function sumShapes(shapes: Iterable<readonly number[]>): number {
  let n = 0;
  for (const s of shapes) n += numel(s);
  return n;
}

function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

async function llmSizes(cfg: RunConfig): Promise<{ cfg: LlmConfig; source: string }> {
  const slot = cfg.llm;
  if (slot.config) return { cfg: { arch: slot.kind, ...slot.config }, source: "run file (random init)" };
  const path = slot.path!;
  const json = await readConfigJson(path);
  if (json) {
    return { cfg: llmConfigFromHf(json, join(path, "config.json")), source: join(path, "config.json") };
  }
  const known = KNOWN_MODELS[basename(path)]?.llm;
  if (known) {
    return { cfg: known, source: `shapes of ${KNOWN_MODELS[basename(path)].repo} (folder not found)` };
  }
  throw new Error(
    `llm.path: ${path}/config.json not found, and "${basename(path)}" is not a known checkpoint; ` +
      `download the model folder or give llm.config sizes`,
  );
}

async function visionSizes(slot: VisionEncoderSlotConfig): Promise<{ cfg: VisionConfig; source: string }> {
  if (slot.config) return { cfg: { arch: slot.kind, ...slot.config }, source: "run file (random init)" };
  const path = slot.path!;
  const json = await readConfigJson(path);
  if (json) {
    return { cfg: visionConfigFromHf(json, join(path, "config.json")), source: join(path, "config.json") };
  }
  const known = KNOWN_MODELS[basename(path)]?.vision;
  if (known) {
    return { cfg: known, source: `shapes of ${KNOWN_MODELS[basename(path)].repo} (folder not found)` };
  }
  throw new Error(
    `encoder.path: ${path}/config.json not found, and "${basename(path)}" is not a known checkpoint; ` +
      `download the model folder or give encoder.config sizes`,
  );
}

async function readConfigJson(dir: string): Promise<unknown | null> {
  try {
    return JSON.parse(await Deno.readTextFile(join(dir, "config.json")));
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return null;
    throw new Error(`${join(dir, "config.json")}: ${(err as Error).message}`);
  }
}

/** The plan as text: components, then one row per stage, then the adapter's limits when known. */
export function formatPlan(
  plan: RunPlan,
  limits?: { maxStorageBufferBindingSize: number; maxBufferSize: number },
): string {
  const M = (n: number) =>
    n >= 1e9 ? `${(n / 1e9).toFixed(2)} B` : n >= 1e6 ? `${(n / 1e6).toFixed(1)} M` : `${n}`;
  const G = (b: number) => `${(b / GiB).toFixed(2)} GiB`;
  const lines = ["parameters:"];
  for (const c of plan.components) {
    lines.push(`  ${c.name.padEnd(20)} ${M(c.params).padStart(10)}  (${c.source})`);
  }
  lines.push(`image positions per row: ${plan.imageTokens}`);
  lines.push("estimated GPU memory per stage (one micro-batch):");
  lines.push(
    `  ${"stage".padEnd(12)} ${"trainable".padStart(10)} ${"weights".padStart(10)} ${"grads".padStart(10)} ` +
      `${"optimizer".padStart(10)} ${"activations".padStart(11)} ${"head logits".padStart(11)} ${
        "total".padStart(10)
      }`,
  );
  for (const s of plan.stages) {
    lines.push(
      `  ${s.name.padEnd(12)} ${M(s.trainable).padStart(10)} ${G(s.weights).padStart(10)} ${
        G(s.gradients).padStart(10)
      } ` +
        `${G(s.optimizer).padStart(10)} ${G(s.activations).padStart(11)} ${G(s.headLogits).padStart(11)} ${
          G(s.total).padStart(10)
        }`,
    );
  }
  const big = `largest tensor: ${G(plan.largestTensorBytes)}`;
  if (limits) {
    const fits = plan.largestTensorBytes <= limits.maxStorageBufferBindingSize;
    lines.push(
      `${big}; adapter maxStorageBufferBindingSize ${G(limits.maxStorageBufferBindingSize)}, maxBufferSize ` +
        `${G(limits.maxBufferSize)}: ${
          fits ? "fits" : "over one binding: such parameters are split by rows over several buffers"
        }`,
    );
  } else lines.push(big);
  return lines.join("\n");
}

/** LLaVA's LoRA setting (rank 128, alpha 256, every projection): the mode {@linkcode planFits} offers. */
export const LLAVA_LORA = { rank: 128, alpha: 256, targets: [...LORA_TARGETS] };

/**
 * Which modes fit a GPU of `memoryBytes` (null: unknown): one line per stage of `cfg`'s plan, and for a
 * stage that fine-tunes the whole LLM and does not fit, the same stage with {@linkcode LLAVA_LORA}.
 */
export async function planFits(cfg: RunConfig, plan: RunPlan, memoryBytes: number | null): Promise<string[]> {
  const G = (b: number) => `${(b / GiB).toFixed(2)} GiB`;
  const fits = (b: number) => memoryBytes === null ? "" : b <= memoryBytes ? " fits" : " does not fit";
  const lines = [
    memoryBytes === null
      ? "GPU memory unknown (WebGPU does not report it): pass --gpu-memory-gb to see which modes fit"
      : `on a GPU with ${G(memoryBytes)}:`,
  ];
  const lora = cfg.llm.lora
    ? null
    : await planRun({ ...cfg, llm: { ...cfg.llm, lora: parseLoraConfig(LLAVA_LORA) } });
  plan.stages.forEach((s, i) => {
    const full = cfg.train.stages[i].trainable.llm && !cfg.llm.lora;
    let line = `  ${s.name.padEnd(12)} ${full ? "full fine-tuning " : ""}${G(s.total)}${fits(s.total)}`;
    if (full && lora && (memoryBytes === null || s.total > memoryBytes)) {
      const t = lora.stages[i].total;
      line += `; with LoRA (--set 'llm.lora=${JSON.stringify(LLAVA_LORA)}') ${G(t)}${fits(t)}`;
    }
    lines.push(line);
  });
  return lines;
}

/** One stage's memory per GPU in data-parallel training on several GPUs, in bytes. */
export interface WorldStagePlan {
  /** The stage's name. */
  name: string;
  /** Weights, whole on every rank. */
  weights: number;
  /** Gradients of the trainable parameters, whole on every rank (averaged, not sharded). */
  gradients: number;
  /** Optimizer state with every rank keeping all of it: the single-GPU figure. */
  optimizer: number;
  /**
   * Optimizer state with `train.distributed.shardOptimizer`: the largest rank's share of the trainable
   * tensors ({@linkcode shardLoads}, whole tensors) at the same bytes per element.
   */
  shardedOptimizer: number;
  /** Activations and head logits of one micro-batch (the micro-batch does not change with the world size). */
  activations: number;
  /** Staging of the gradient buckets read back to the host: 2 x `train.distributed.bucketMiB` (0 on one GPU). */
  communication: number;
  /** Per GPU with the whole optimizer state on every rank ("data parallel"). */
  replicated: number;
  /** Per GPU with the optimizer state sharded. */
  sharded: number;
  /** Rows per optimizer step over all ranks. */
  globalBatch: number;
  /** Micro-batches of `batchSize` rows each rank runs per step (rounded up where `error` is set). */
  microBatches: number;
  /** Why the stage cannot run on this many GPUs as configured (`gradAccum` not a multiple of it); else null. */
  error: string | null;
}

/** A run's plan on `worldSize` GPUs. */
export interface WorldPlan {
  /** GPUs (MPI ranks). */
  worldSize: number;
  /** Whether the run shards its optimizer state (`train.distributed.shardOptimizer`). */
  shardOptimizer: boolean;
  /** Per stage, as {@linkcode RunPlan.stages}. */
  stages: WorldStagePlan[];
}

/**
 * The memory per GPU and the batches of `cfg`'s stages when trained data-parallel on `worldSize` GPUs
 * (`mpirun -np N`), from its single-GPU `plan`: every rank keeps the whole weights and gradients; the
 * optimizer state is whole ("replicated") or, with `train.distributed.shardOptimizer`, the largest rank's
 * share; both add the gradient buckets' staging. On one GPU both equal the plan's stage totals.
 */
export function planWorld(cfg: RunConfig, plan: RunPlan, worldSize: number): WorldPlan {
  if (!Number.isInteger(worldSize) || worldSize < 1) {
    throw new RangeError(`world size ${worldSize} is not >= 1`);
  }
  const N = worldSize, bytes = cfg.train.dtype === "f16" ? 2 : 4;
  const dist = cfg.train.distributed;
  const communication = N > 1 ? 2 * dist.bucketMiB * 2 ** 20 : 0;
  const stages = plan.stages.map((s, i): WorldStagePlan => {
    const { batchSize, gradAccum } = cfg.train.stages[i];
    const share = s.trainableSizes.length ? Math.max(...shardLoads(s.trainableSizes, N)) : 0;
    const shardedOptimizer = share * optimizerBytesPerElement(bytes);
    const activations = s.activations + s.headLogits;
    const base = s.weights + s.gradients + activations + communication;
    const divides = gradAccum % N === 0;
    return {
      name: s.name,
      weights: s.weights,
      gradients: s.gradients,
      optimizer: s.optimizer,
      shardedOptimizer,
      activations,
      communication,
      replicated: base + s.optimizer,
      sharded: base + shardedOptimizer,
      globalBatch: batchSize * gradAccum * (dist.keepGlobalBatch ? 1 : N),
      microBatches: dist.keepGlobalBatch ? Math.ceil(gradAccum / N) : gradAccum,
      error: !dist.keepGlobalBatch || divides
        ? null
        : `${s.name}: train.stages[${i}].gradAccum ${gradAccum} ` +
          `does not divide by ${N} GPUs (train.distributed.keepGlobalBatch keeps ${batchSize} x ${gradAccum} ` +
          `rows per step); set gradAccum to a multiple of ${N}, or train.distributed.keepGlobalBatch false`,
    };
  });
  return { worldSize: N, shardOptimizer: dist.shardOptimizer, stages };
}

/**
 * {@linkcode planWorld} as text: per stage the memory per GPU of both modes, and whether each fits a GPU of
 * `memoryBytes` (null: unknown, as {@linkcode planFits}), then each stage's batch per step; an error line
 * for a stage whose `gradAccum` does not divide by the world size.
 */
export function formatWorld(world: WorldPlan, memoryBytes: number | null): string[] {
  const G = (b: number) => `${(b / GiB).toFixed(2)} GiB`;
  const fits = (b: number) => memoryBytes === null ? "" : b <= memoryBytes ? " fits" : " does not fit";
  const N = world.worldSize;
  const mark = (on: boolean) => on ? " (this run)" : "";
  const lines = [`on ${N} GPU${N === 1 ? "" : "s"} (data parallel, per GPU):`];
  for (const s of world.stages) {
    const replicated = `replicated${mark(!world.shardOptimizer)} ${G(s.replicated)}${fits(s.replicated)}`;
    const sharded = `sharded optimizer (train.distributed.shardOptimizer)${mark(world.shardOptimizer)} ` +
      `${G(s.sharded)}${fits(s.sharded)}`;
    lines.push(`  ${s.name.padEnd(12)} ${replicated}; ${sharded}`);
  }
  for (const s of world.stages) {
    const rows = s.globalBatch / (s.microBatches * N); // batchSize
    lines.push(
      s.error
        ? `  error: ${s.error}`
        : `  ${s.name.padEnd(12)} global batch ${s.globalBatch} rows per step: ` +
          `${s.microBatches} micro-batches of ${rows} rows per GPU`,
    );
  }
  return lines;
}
