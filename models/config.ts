/**
 * The top-level ASVR config: one object composing the slots (vision encoder, projector, LLM, visual
 * tokenizers, visual head, loss), each a discriminated union on `kind` (or, for the loss, plain
 * fields) validated once at the edge by {@linkcode parseConfig}. Each slot's own schema and defaults
 * live in the slot's folder (`heads/config.ts`, `losses/config.ts`, `tokenizers/visual_config.ts`,
 * `encoders/config.ts`, `backbones/config.ts`); this file adds the encoder, projector and LLM slot
 * fields, the top-level defaults and the checks that span slots.
 *
 * Errors name the full path of the bad field (`head.layers`, `visualTokenizers[1].depths`) and what
 * is allowed. A config file is a module: `export default defineConfig({...})`; command-line
 * overrides (`--set head.kind=none`) go through {@linkcode setConfigValue} / {@linkcode applyOverrides}.
 *
 * ```ts ignore
 * const cfg = parseConfig({
 *   encoder: { kind: "siglip", path: "/models/siglip-so400m-patch14-384" },
 *   projector: { kind: "mlp2x_gelu" },
 *   llm: { kind: "llama", path: "/models/vicuna-7b-v1.5" },
 *   visualTokenizers: [{ kind: "rq", name: "semantic", codebooks: "semantic.safetensors" }],
 *   head: { kind: "asvr_depth" }, // depths and codebookSizes follow the "semantic" tokenizer
 * }, "asvr_vicuna7b.ts");
 * const baseline = setConfigValue(cfg, "head.kind", "none");
 * ```
 * @module
 */

import { type LoraConfig, parseLoraConfig } from "../backbones/lora.ts";
import { z } from "zod";
import { parseSchema, type SafeParser } from "../schema/parse.ts";
import { checkLlmConfig, type LlmArch, type LlmConfig, llmConfigFromHf } from "../backbones/config.ts";
import {
  checkVisionConfig,
  type VisionAct,
  type VisionArch,
  type VisionConfig,
  visionConfigFromHf,
} from "../encoders/config.ts";
import {
  checkHeadTargets,
  fillHeadConfig,
  type HeadConfig,
  type HeadConfigInput,
  headTargets,
  NO_HEAD,
  parseHeadConfig,
  type TokenizerSizes,
} from "../heads/mod.ts";
import { type LossConfig, parseLossConfig } from "../losses/config.ts";
import { parseProjectorConfig, PROJECTOR_KINDS, type ProjectorKind } from "../projectors/projector.ts";
import type { OnnxTokenizerConfig } from "../tokenizers/onnx_tokenizer.ts";
import {
  parseVisualTokenizerConfig,
  type RqTokenizerConfig,
  type VisualTokenizerConfig,
} from "../tokenizers/visual_config.ts";

// ------------------------------------------------------------------ types: parsed configs

/**
 * What the LLM sees at the image positions: "continuous", the encoder's features (the recipe);
 * "quantized", their RQ reconstruction sum_d C_d[k_d] by a visual tokenizer (the paper's "discrete
 * input" ablation), through the same projector.
 */
export type EncoderInput = "continuous" | "quantized";

/** Every {@linkcode EncoderInput}. */
export const ENCODER_INPUTS: readonly EncoderInput[] = ["continuous", "quantized"];

/** The sizes of a ViT built for random init: a `VisionConfig` without `arch` (the slot's kind says it). */
export type VisionSizes = Omit<VisionConfig, "arch">;

/** The sizes of an LLM built for random init: an `LlmConfig` without `arch` (the slot's kind says it). */
export type LlmSizes = Omit<LlmConfig, "arch">;

/** A SigLIP or CLIP vision encoder on the GPU (frozen). */
export interface VisionEncoderSlotConfig {
  /** The family. */
  kind: VisionArch;
  /** A Hugging Face folder (config.json + safetensors) to load; absent: random init from `config`. */
  path?: string;
  /** Sizes for a random init (tests, tiny runs); exactly one of `path` and `config` is given. */
  config?: VisionSizes;
  /** The hidden state fed to the projector, HF `hidden_states` indexing (default -2, LLaVA's). */
  layer: number;
  /** CLIP: keep the CLS row in front of the patches (default false, LLaVA's "patch" select). */
  keepCls: boolean;
  /** What the LLM sees: the features or their RQ reconstruction (default "continuous"). */
  input: EncoderInput;
  /** With input "quantized": the rq visual tokenizer whose reconstruction is fed (default "semantic"). */
  inputTokenizer: string;
}

/** A vision encoder exported to ONNX, run on the CPU (see `AsvrModel.precompute`). */
export interface OnnxEncoderSlotConfig {
  /** The kind. */
  kind: "onnx";
  /** The `.onnx` file. */
  path: string;
  /** The model input that takes the pixels (default: its only input). */
  inputName?: string;
  /** The model output holding the features (default: its only output). */
  outputName?: string;
}

/** The vision encoder slot, by `kind`. */
export type EncoderSlotConfig = VisionEncoderSlotConfig | OnnxEncoderSlotConfig;

/** The projector slot: a projector kind; the widths follow the encoder and the LLM. */
export interface ProjectorSlotConfig {
  /** Which projector (LLaVA's `mm_projector_type`). */
  kind: ProjectorKind;
  /**
   * Width of its input. Default: the encoder's width (or the input tokenizer's codebook width with
   * quantized input); required with an ONNX encoder, whose width is only known when it runs.
   */
  inDim?: number;
  /** Width of its output; default (and it must be) the LLM's width. */
  outDim?: number;
}

/** The LLM slot. */
export interface LlmSlotConfig {
  /** The architecture (HF `model_type`; Vicuna is "llama"). */
  kind: LlmArch;
  /** A Hugging Face folder to load; absent: random init from `config`. */
  path?: string;
  /** Sizes for a random init; exactly one of `path` and `config` is given. */
  config?: LlmSizes;
  /**
   * LoRA adapters on the LLM's projections (backbones/lora.ts): where a stage trains the LLM, the
   * adapters train and its own weights stay frozen. Absent: the LLM trains in full.
   */
  lora?: LoraConfig;
}

/** A parsed ASVR config: every slot validated, every default filled. */
export interface AsvrConfig {
  /** The frozen vision encoder. */
  encoder: EncoderSlotConfig;
  /** The vision-to-LLM projector. */
  projector: ProjectorSlotConfig;
  /** The LLM backbone. */
  llm: LlmSlotConfig;
  /** The frozen visual tokenizers whose codes are the visual targets (names unique). */
  visualTokenizers: VisualTokenizerConfig[];
  /** The visual head ("none": the LLaVA baseline). */
  head: HeadConfig;
  /** Loss weights, alignment and text-only rows. */
  loss: LossConfig;
}

// ------------------------------------------------------------------ types: configs as written

/** A vision encoder slot as written: the fields with defaults may be left out. */
export interface VisionEncoderSlotInput {
  /** The family. */
  kind: VisionArch;
  /** A Hugging Face folder to load. */
  path?: string;
  /** Sizes for a random init; the ones left out take transformers' defaults for the family. */
  config?: Partial<VisionSizes>;
  /** Default -2. */
  layer?: number;
  /** Default false. */
  keepCls?: boolean;
  /** Default "continuous". */
  input?: EncoderInput;
  /** Default "semantic". */
  inputTokenizer?: string;
}

/** The encoder slot as written. */
export type EncoderSlotInput = VisionEncoderSlotInput | OnnxEncoderSlotConfig;

/** LLM sizes as written: the five sizes are required, the rest take Hugging Face's defaults. */
export type LlmSizesInput =
  & Pick<LlmSizes, "vocabSize" | "hiddenSize" | "intermediateSize" | "numLayers" | "numHeads">
  & Partial<LlmSizes>;

/** The LLM slot as written. */
export interface LlmSlotInput {
  /** The architecture. */
  kind: LlmArch;
  /** A Hugging Face folder to load. */
  path?: string;
  /** Sizes for a random init. */
  config?: LlmSizesInput;
  /** LoRA adapters (`parseLoraConfig`'s fields; each has a default). */
  lora?: Partial<LoraConfig>;
}

/** An rq visual tokenizer as written: `name` and `codebooks` are required, the rest have defaults. */
export interface RqTokenizerConfigInput extends Partial<RqTokenizerConfig> {
  /** The kind. */
  kind: "rq";
  /** What the targets are called ("semantic", "pixel"). */
  name: string;
  /** The codebooks file. */
  codebooks: string;
}

/** A visual tokenizer as written. */
export type VisualTokenizerConfigInput = RqTokenizerConfigInput | OnnxTokenizerConfig;

/** An ASVR config as written in a config file (a parsed {@linkcode AsvrConfig} is one too). */
export interface AsvrConfigInput {
  /** The frozen vision encoder. */
  encoder: EncoderSlotInput;
  /** The projector. */
  projector: ProjectorSlotConfig;
  /** The LLM backbone. */
  llm: LlmSlotInput;
  /** The visual tokenizers (default: none). */
  visualTokenizers?: VisualTokenizerConfigInput[];
  /**
   * The visual head (default `{ kind: "none" }`). A linear or asvr_depth head's `depths` and
   * `codebookSizes`, when left out, are those of its target rq tokenizer.
   */
  head?: HeadConfigInput;
  /** The loss (default: every field's default). */
  loss?: Partial<LossConfig>;
}

// ------------------------------------------------------------------ schemas (the slot fields defined here)

const posInt = z.number().int().positive();
const posNum = z.number().positive();
const nonEmpty = z.string().min(1);

/** Exhaustive lists of the encoder folder's string unions (a missing member is a compile error). */
const VISION_ARCH_SET: Record<VisionArch, true> = { siglip: true, clip: true };
const VISION_ACT_SET: Record<VisionAct, true> = { gelu_tanh: true, quick_gelu: true, gelu: true };
const VISION_ARCHS = Object.keys(VISION_ARCH_SET) as [VisionArch, ...VisionArch[]];
const VISION_ACTS = Object.keys(VISION_ACT_SET) as [VisionAct, ...VisionAct[]];
const LLM_KIND_SET: Record<LlmArch, true> = { llama: true, mistral: true, qwen2: true };
const LLM_KINDS = Object.keys(LLM_KIND_SET) as [LlmArch, ...LlmArch[]];

const visionSizesSchema = z.strictObject({
  hiddenSize: posInt.optional(),
  intermediateSize: posInt.optional(),
  numLayers: posInt.optional(),
  numHeads: posInt.optional(),
  imageSize: posInt.optional(),
  patchSize: posInt.optional(),
  layerNormEps: posNum.optional(),
  act: z.enum(VISION_ACTS).optional(),
});

const visionEncoderSchema = z.strictObject({
  kind: z.enum(VISION_ARCHS),
  path: nonEmpty.optional(),
  config: visionSizesSchema.optional(),
  layer: z.number().int().default(-2),
  keepCls: z.boolean().default(false),
  input: z.enum(ENCODER_INPUTS as [EncoderInput, ...EncoderInput[]]).default("continuous"),
  inputTokenizer: nonEmpty.default("semantic"),
});

const onnxEncoderSchema = z.strictObject({
  kind: z.literal("onnx"),
  path: nonEmpty,
  inputName: nonEmpty.optional(),
  outputName: nonEmpty.optional(),
});

const encoderSchema = z.discriminatedUnion("kind", [visionEncoderSchema, onnxEncoderSchema]);

const projectorSchema = z.strictObject({
  kind: z.enum(PROJECTOR_KINDS as [ProjectorKind, ...ProjectorKind[]]),
  inDim: posInt.optional(),
  outDim: posInt.optional(),
});

const llmSizesSchema = z.strictObject({
  vocabSize: posInt,
  hiddenSize: posInt,
  intermediateSize: posInt,
  numLayers: posInt,
  numHeads: posInt,
  numKvHeads: posInt.optional(),
  headDim: posInt.optional(),
  rmsNormEps: posNum.optional(),
  ropeTheta: posNum.optional(),
  tieWordEmbeddings: z.boolean().optional(),
  slidingWindow: posInt.nullable().optional(),
  attentionBias: z.boolean().optional(),
  maxPositions: posInt.optional(),
});

const llmSchema = z.strictObject({
  kind: z.enum(LLM_KINDS),
  path: nonEmpty.optional(),
  config: llmSizesSchema.optional(),
  lora: z.unknown().optional(), // checked by parseLoraConfig
});

/** The top-level fields, in order, and what each holds (for errors). */
/** The top-level fields of an ASVR config, each with what it takes. */
export const TOP_FIELDS: Record<keyof AsvrConfig, string> = {
  encoder: `an encoder object, e.g. { kind: "siglip", path: "/models/siglip" }`,
  projector: `a projector object, e.g. { kind: "mlp2x_gelu" }`,
  llm: `an LLM object, e.g. { kind: "llama", path: "/models/vicuna-7b-v1.5" }`,
  visualTokenizers: "an array of visual tokenizer objects (default: none)",
  head: `a head object (default { kind: "none" })`,
  loss: "a loss object (default: every field's default)",
};

// ------------------------------------------------------------------ parsing

/**
 * Validates an ASVR config given as data (e.g. a config module's default export) and fills every
 * default. `source` (the file) starts each error; then comes the full path of the bad field and what
 * it must be, e.g. `my.ts: head.layers: Too small: expected number to be >0 (got 0)`.
 *
 * Besides each slot's own rules, it checks across slots: tokenizer names are unique; a head's
 * `target` names a visual tokenizer, and its depths and codebook sizes equal that (rq) tokenizer's
 * (left out, they are taken from it); an asvr_depth head's target is an rq tokenizer (it
 * teacher-forces with the codebooks); `encoder.input: "quantized"` names an rq tokenizer in
 * `encoder.inputTokenizer`; a tokenizer on `encoder: "input"` needs a GPU encoder and a layer it has;
 * widths known from inline sizes agree (projector, encoder layer range). Parsing a parsed config
 * returns an equal config.
 */
export function parseConfig(value: unknown, source: string): AsvrConfig {
  try {
    return parseAll(value);
  } catch (err) {
    throw new Error(`${source}: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/**
 * The identity, typed: a config file writes `export default defineConfig({ ... })` to get
 * completion and type checks; validation and defaults come later, from {@linkcode parseConfig}.
 */
export function defineConfig(cfg: AsvrConfigInput): AsvrConfigInput {
  return cfg;
}

function parseAll(value: unknown): AsvrConfig {
  if (!isRecord(value)) {
    throw new Error(
      `the config must be an object with fields ${Object.keys(TOP_FIELDS).join(", ")}, got ${
        describe(value)
      }`,
    );
  }
  for (const k of Object.keys(value)) {
    if (!(k in TOP_FIELDS)) {
      throw new Error(`${k}: unknown field; the fields are ${Object.keys(TOP_FIELDS).join(", ")}`);
    }
  }
  for (const k of ["encoder", "projector", "llm"] as const) {
    if (value[k] === undefined) throw new Error(`${k}: missing; give ${TOP_FIELDS[k]}`);
  }
  const encoder = parseEncoderSlot(value.encoder, "encoder");
  const llm = parseLlmSlot(value.llm, "llm");
  const visualTokenizers = parseTokenizers(value.visualTokenizers ?? [], "visualTokenizers");
  const projector = parseProjectorSlot(value.projector, "projector");
  const head = parseHeadSlot(value.head ?? NO_HEAD, visualTokenizers, "head");
  const loss = parseLossConfig(value.loss ?? {}, "loss");
  const cfg: AsvrConfig = { encoder, projector, llm, visualTokenizers, head, loss };
  checkAcrossSlots(cfg);
  return cfg;
}

/** The encoder slot alone (no cross-slot checks). */
function parseEncoderSlot(value: unknown, path: string): EncoderSlotConfig {
  const v = parseZod(encoderSchema, value, path, { kind: quoted([...VISION_ARCHS, "onnx"]) });
  const kind = v.kind;
  switch (kind) {
    case "onnx":
      return stripUndefined(v) as OnnxEncoderSlotConfig;
    case "siglip":
    case "clip": {
      const vv = v as z.infer<typeof visionEncoderSchema>;
      const source = pathOrConfig(vv.path, vv.config, path, "a Hugging Face vision folder");
      const out: VisionEncoderSlotConfig = {
        kind,
        ...(vv.path !== undefined ? { path: vv.path } : {}),
        layer: vv.layer,
        keepCls: vv.keepCls,
        input: vv.input,
        inputTokenizer: vv.inputTokenizer,
      };
      if (source === "config") out.config = visionSizes(kind, stripUndefined(vv.config!), `${path}.config`);
      if (out.config) {
        const L = out.config.numLayers;
        if (out.layer < -(L + 1) || out.layer > L) {
          throw new Error(
            `${path}.layer is ${out.layer}, out of range for ${L} layers; use 0..${L} or -1..-${L + 1} ` +
              `(HF hidden_states indexing)`,
          );
        }
      }
      return out;
    }
    default: {
      const never: never = kind;
      throw new Error(`${path}.kind: unhandled kind ${never}`);
    }
  }
}

/** The family's defaults (transformers'), overridden by the given sizes, then checked. */
function visionSizes(kind: VisionArch, given: Partial<VisionSizes>, path: string): VisionSizes {
  const modelType = `${kind}_vision_model`;
  const base = visionConfigFromHf({ model_type: modelType }, path);
  const cfg: VisionConfig = { ...base, ...given, arch: kind };
  checkVisionConfig(cfg, path);
  const { arch: _arch, ...sizes } = cfg;
  return sizes;
}

function parseLlmSlot(value: unknown, path: string): LlmSlotConfig {
  const v = parseZod(llmSchema, value, path, { kind: quoted(LLM_KINDS) });
  const source = pathOrConfig(v.path, v.config, path, "a Hugging Face model folder");
  const out: LlmSlotConfig = { kind: v.kind, ...(v.path !== undefined ? { path: v.path } : {}) };
  if (source === "config") out.config = llmSizes(v.kind, stripUndefined(v.config!), `${path}.config`);
  if (v.lora !== undefined) out.lora = parseLoraConfig(v.lora, `${path}.lora`);
  return out;
}

/** HF's defaults for the architecture (through its config.json reader), overridden by the given sizes. */
function llmSizes(kind: LlmArch, given: LlmSizesInput, path: string): LlmSizes {
  const hf: Record<string, unknown> = {
    model_type: kind,
    vocab_size: given.vocabSize,
    hidden_size: given.hiddenSize,
    intermediate_size: given.intermediateSize,
    num_hidden_layers: given.numLayers,
    num_attention_heads: given.numHeads,
  };
  if (given.headDim !== undefined && kind !== "qwen2") hf.head_dim = given.headDim;
  const base = llmConfigFromHf(hf, path);
  const cfg: LlmConfig = { ...base, ...given, arch: kind };
  checkLlmConfig(cfg, path);
  const { arch: _arch, ...sizes } = cfg;
  return sizes;
}

function parseProjectorSlot(value: unknown, path: string): ProjectorSlotConfig {
  return stripUndefined(parseZod(projectorSchema, value, path, { kind: quoted(PROJECTOR_KINDS) }));
}

function parseTokenizers(value: unknown, path: string): VisualTokenizerConfig[] {
  if (!Array.isArray(value)) {
    throw new Error(`${path}: expected an array of visual tokenizer configs, got ${describe(value)}`);
  }
  const out = value.map((v, i) => parseVisualTokenizerConfig(v, `${path}[${i}]`));
  out.forEach((t, i) => {
    const j = out.findIndex((u) => u.name === t.name);
    if (j < i) {
      throw new Error(
        `${path}[${i}].name is ${JSON.stringify(t.name)}, already the name of ${path}[${j}]; ` +
          `give each visual tokenizer its own name`,
      );
    }
  });
  return out;
}

/**
 * The head, by its kind's descriptor: the fields it fills from the tokenizers (a classifier head's
 * `depths` and `codebookSizes`), parsed, then its targets checked against the tokenizers.
 */
function parseHeadSlot(value: unknown, toks: VisualTokenizerConfig[], path: string): HeadConfig {
  const sizes = tokenizerSizes(toks);
  const head = parseHeadConfig(fillHeadConfig(value, sizes), path);
  checkHeadTargets(head, sizes, path);
  return head;
}

/** What a head may be filled and checked against, of each visual tokenizer. */
export function tokenizerSizes(toks: readonly VisualTokenizerConfig[]): TokenizerSizes[] {
  return toks.map((t) => {
    const kind = t.kind;
    switch (kind) {
      case "rq":
        return { name: t.name, depths: t.depths, codebookSize: t.codebookSize, hasCodebooks: true };
      case "onnx":
        return { name: t.name, hasCodebooks: false };
      default: {
        const never: never = kind;
        throw new Error(`unhandled visual tokenizer kind ${never}`);
      }
    }
  });
}

/** The checks between encoder, projector, LLM and tokenizers. */
function checkAcrossSlots(cfg: AsvrConfig): void {
  const { encoder, projector, llm, visualTokenizers: toks } = cfg;
  const vision = encoder.kind === "onnx" ? null : encoder;
  // Tokenizers on the VLM's own encoder.
  toks.forEach((t, i) => {
    if (t.kind !== "rq" || t.encoder !== "input") return;
    const at = `visualTokenizers[${i}]`;
    if (!vision) {
      throw new Error(
        `${at}.encoder is "input" (the VLM's own encoder), but encoder.kind is "onnx", whose hidden ` +
          `layers the GPU cannot run; give the tokenizer its own encoder folder`,
      );
    }
    const L = vision.config?.numLayers;
    if (typeof t.layer === "number" && L !== undefined && t.layer > L) {
      throw new Error(`${at}.layer is ${t.layer} but the encoder has ${L} layers; use 0..${L} or "pixels"`);
    }
  });
  // The discrete-input ablation.
  if (vision && vision.input === "quantized") {
    const tok = toks.find((t) => t.name === vision.inputTokenizer);
    if (!tok || tok.kind !== "rq") {
      const rq = toks.filter((t) => t.kind === "rq").map((t) => JSON.stringify(t.name));
      throw new Error(
        `encoder.inputTokenizer is ${JSON.stringify(vision.inputTokenizer)}, but encoder.input "quantized" ` +
          `needs an rq visual tokenizer of that name (rq tokenizers: ${rq.join(", ") || "none"}); add one ` +
          `to visualTokenizers, name one of them, or set encoder.input to "continuous"`,
      );
    }
  }
  // CLIP's CLS row has no visual target.
  if (vision && vision.kind === "clip" && vision.keepCls && headTargets(cfg.head, toks).length > 0) {
    throw new Error(
      `encoder.keepCls is true: CLIP's CLS row would take an image position that has no visual target; ` +
        `set it to false, or use a head that learns no codes (kind "${NO_HEAD.kind}")`,
    );
  }
  // Widths, where the inline sizes say them.
  const outDim = llm.config?.hiddenSize;
  if (projector.outDim !== undefined && outDim !== undefined && projector.outDim !== outDim) {
    throw new Error(
      `projector.outDim is ${projector.outDim} but the LLM's width (llm.config.hiddenSize) is ${outDim}; ` +
        `they must be equal (or leave projector.outDim out)`,
    );
  }
  if (!vision && projector.inDim === undefined) {
    throw new Error(
      `projector.inDim: required with encoder kind "onnx" (its feature width is only known when it ` +
        `runs); set it to the width of the encoder's features`,
    );
  }
  const inDim = vision ? projectorInputWidth(vision, toks) : undefined;
  if (projector.inDim !== undefined && inDim !== undefined && projector.inDim !== inDim) {
    throw new Error(
      `projector.inDim is ${projector.inDim} but the ${
        vision!.input === "quantized" ? "input tokenizer's codebook vectors" : "encoder's features"
      } are ${inDim} wide; they must be equal (or leave projector.inDim out)`,
    );
  }
  const a = projector.inDim ?? inDim, b = projector.outDim ?? outDim;
  if (a !== undefined && b !== undefined) {
    parseProjectorConfig({ kind: projector.kind, inDim: a, outDim: b }, "projector");
  }
}

/** The projector's input width when the inline sizes say it (null/undefined: only known at build). */
function projectorInputWidth(
  enc: VisionEncoderSlotConfig,
  toks: VisualTokenizerConfig[],
): number | undefined {
  if (!enc.config) return undefined;
  switch (enc.input) {
    case "continuous":
      return enc.config.hiddenSize;
    case "quantized": {
      const tok = toks.find((t) => t.name === enc.inputTokenizer) as RqTokenizerConfig;
      if (tok.encoder !== "input") return undefined;
      return tok.layer === "pixels" ? 3 * enc.config.patchSize ** 2 : enc.config.hiddenSize;
    }
    default: {
      const never: never = enc.input;
      throw new Error(`encoder.input: unhandled ${never}`);
    }
  }
}

/** "path" or "config": exactly one is given. */
function pathOrConfig(p: unknown, c: unknown, path: string, what: string): "path" | "config" {
  if (p !== undefined && c !== undefined) {
    throw new Error(
      `${path}: give either path (${what} to load) or config (sizes for a random init), not both`,
    );
  }
  if (p === undefined && c === undefined) {
    throw new Error(`${path}: give path (${what} to load) or config (sizes for a random init)`);
  }
  return p !== undefined ? "path" : "config";
}

// ------------------------------------------------------------------ overrides

/**
 * One typed override from strings, as `--set key=value` gives it: `key` is a path into the config
 * (`head.kind`, `loss.visualWeight`, `visualTokenizers[1].depths`, `llm.config.numLayers`); `value` is
 * read as JSON when it parses (`2`, `true`, `null`, `[512, 512]`, `"x"`), else taken as the string.
 * The result is validated by {@linkcode parseConfig}, so an unknown key or a wrong type is an error
 * naming the path. Setting a `kind` to another kind keeps the object's other fields when they are
 * valid for the new kind, else starts the object afresh as `{ kind }` (so `head.kind=none` works
 * from any head). `cfg` is not modified. Returns the parsed config.
 */
export function setConfigValue(
  cfg: AsvrConfigInput,
  key: string,
  value: string,
  source = "--set",
): AsvrConfig {
  return applyOverrides(cfg, [`${key}=${value}`], source);
}

/**
 * Several overrides `key=value` (see {@linkcode setConfigValue}), applied in order to a copy of `cfg`,
 * then validated once by {@linkcode parseConfig}. Returns the parsed config.
 */
export function applyOverrides(cfg: AsvrConfigInput, sets: readonly string[], source = "--set"): AsvrConfig {
  const root = overrideFields(cfg as unknown as Record<string, unknown>, sets, source);
  return parseConfig(root, `${source} (${sets.join(" ")})`);
}

/**
 * The overrides `key=value` applied in order to a copy of any config object, unvalidated (a config
 * that embeds the ASVR fields, like a training run's, validates the result itself). Key syntax,
 * value reading and `kind` changes as in {@linkcode setConfigValue}.
 */
export function overrideFields(
  cfg: Record<string, unknown>,
  sets: readonly string[],
  source = "--set",
): Record<string, unknown> {
  const root = structuredClone(cfg);
  for (const set of sets) {
    const eq = set.indexOf("=");
    if (eq <= 0) {
      throw new Error(`${source}: ${JSON.stringify(set)} is not key=value; write it like head.kind=none`);
    }
    const key = set.slice(0, eq), text = set.slice(eq + 1);
    setPath(root, parseKey(key, source), readValue(text), key, source);
  }
  return root;
}

/** `head.codebookSizes[1]` / `visualTokenizers.1.depths` -> ["head", "codebookSizes", 1]. */
function parseKey(key: string, source: string): (string | number)[] {
  if (!/^[A-Za-z_]\w*(\.\w+|\[\d+\])*$/.test(key)) {
    throw new Error(
      `${source}: key ${JSON.stringify(key)} is not a config path; write it like head.kind, ` +
        `loss.visualWeight or visualTokenizers[1].depths`,
    );
  }
  const segs: (string | number)[] = [];
  for (const m of key.matchAll(/([^.[\]]+)|\[(\d+)\]/g)) {
    if (m[2] !== undefined) segs.push(Number(m[2]));
    else segs.push(/^\d+$/.test(m[1]) ? Number(m[1]) : m[1]);
  }
  return segs;
}

/** JSON when it parses, else the string itself. */
function readValue(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

function setPath(
  root: Record<string, unknown>,
  segs: (string | number)[],
  value: unknown,
  key: string,
  source: string,
): void {
  let node: unknown = root;
  for (let i = 0; i < segs.length - 1; i++) {
    const seg = segs[i];
    const at = formatPath(segs.slice(0, i + 1));
    const container = node as Record<string | number, unknown>;
    let next = container[seg];
    if (next === undefined) {
      if (Array.isArray(container) && (typeof seg !== "number" || seg > container.length)) {
        throw new Error(`${source}: ${key}: ${at} is past the end of an array of ${container.length}`);
      }
      next = typeof segs[i + 1] === "number" ? [] : {};
      container[seg] = next;
    }
    if (typeof next !== "object" || next === null) {
      throw new Error(
        `${source}: ${key}: ${at} is ${describe(next)}, not an object, so it has no fields to set`,
      );
    }
    node = next;
  }
  const last = segs[segs.length - 1];
  const parent = node as Record<string | number, unknown>;
  if (Array.isArray(parent) && (typeof last !== "number" || last > parent.length)) {
    throw new Error(
      `${source}: ${key}: index ${String(last)} is out of range for an array of ${parent.length} ` +
        `(use 0..${parent.length}, where ${parent.length} appends)`,
    );
  }
  if (last === "kind" && segs.length >= 2 && parent.kind !== value) {
    const kept = { ...parent, kind: value };
    const fresh = slotAccepts(segs.slice(0, -1), kept) ? kept : { kind: value };
    for (const k of Object.keys(parent)) delete parent[k];
    Object.assign(parent, fresh);
    return;
  }
  parent[last] = value;
}

/** Whether the slot at `segs` takes `obj` with its fields (a kind change that keeps them). */
function slotAccepts(segs: (string | number)[], obj: unknown): boolean {
  const at = formatPath(segs);
  const tryParse = (fn: () => unknown) => {
    try {
      fn();
      return true;
    } catch {
      return false;
    }
  };
  if (segs.length === 1) {
    switch (segs[0]) {
      case "encoder":
        return tryParse(() => parseEncoderSlot(obj, at));
      case "llm":
        return tryParse(() => parseLlmSlot(obj, at));
      case "projector":
        return tryParse(() => parseProjectorSlot(obj, at));
      case "head":
        return tryParse(() => parseHeadConfig(obj, at));
    }
  }
  if (segs.length === 2 && segs[0] === "visualTokenizers") {
    return tryParse(() => parseVisualTokenizerConfig(obj, at));
  }
  if (segs.length === 2 && segs[0] === "head" && (segs[1] === "appearance" || segs[1] === "semantic")) {
    return tryParse(() => parseHeadConfig(obj, at));
  }
  return true;
}

function formatPath(segs: (string | number)[]): string {
  return segs.map((s, i) => (typeof s === "number" ? `[${s}]` : i === 0 ? s : `.${s}`)).join("");
}

// ------------------------------------------------------------------ helpers

/** Parses an object slot with its zod schema (errors: see `parseSchema`), `hints` naming the kinds. */
function parseZod<T>(schema: SafeParser<T>, value: unknown, path: string, hints: Record<string, string>): T {
  if (!isRecord(value)) {
    throw new Error(`${path}: expected an object with a "kind" field, got ${describe(value)}`);
  }
  return parseSchema(schema, value, path, { hints });
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** A copy without the keys whose value is undefined (a spread of it never overwrites a default). */
function stripUndefined<T extends object>(v: T): T {
  return Object.fromEntries(Object.entries(v).filter(([, x]) => x !== undefined)) as T;
}

function quoted(xs: readonly string[]): string {
  return xs.map((x) => JSON.stringify(x)).join(", ");
}

function describe(v: unknown): string {
  if (v === undefined) return "undefined";
  const s = JSON.stringify(v);
  return s.length > 60 ? s.slice(0, 57) + "..." : s;
}
