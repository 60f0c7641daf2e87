/**
 * The top-level ASVR config: one object composing the slots (vision encoder, projector, LLM, visual
 * tokenizers, visual head, loss), each a discriminated union on `kind` (or, for the loss, plain
 * fields) validated once at the edge by {@linkcode parseConfig}. Each slot's own schema, defaults and
 * parsing live in the slot's folder (`encoders/slot_config.ts`, `projectors/slot_config.ts`,
 * `backbones/slot_config.ts`, `tokenizers/visual_config.ts`, `heads/config.ts`, `losses/config.ts`);
 * this file composes them, adds the top-level defaults and the checks that span slots, which ask
 * the slots' own helpers what a slot is (`gpuVisionSlot`, `isRqTokenizer`, ...) rather than name
 * another slot's kinds.
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

import { describeValue, joinPath } from "../schema/parse.ts";
import { type LlmSlotConfig, type LlmSlotInput, parseLlmSlot } from "../backbones/slot_config.ts";
import {
  type EncoderSlotConfig,
  type EncoderSlotInput,
  gpuVisionSlot,
  keepsClsRow,
  parseEncoderSlot,
  type VisionEncoderSlotConfig,
} from "../encoders/slot_config.ts";
import {
  checkHeadTargets,
  fillHeadConfig,
  type HeadConfig,
  type HeadConfigInput,
  headTargets,
  NO_HEAD,
  parseHeadConfig,
} from "../heads/mod.ts";
import { type LossConfig, parseLossConfig } from "../losses/config.ts";
import { parseProjectorConfig } from "../projectors/projector.ts";
import { parseProjectorSlot, type ProjectorSlotConfig } from "../projectors/slot_config.ts";
import {
  isRqTokenizer,
  parseVisualTokenizerConfig,
  type RqTokenizerConfig,
  rqTokenizers,
  tokenizerSizes,
  type VisualTokenizerConfig,
  type VisualTokenizerConfigInput,
} from "../tokenizers/visual_config.ts";

// The slots' configs, also importable from here with the composed config.
export {
  ENCODER_INPUTS,
  type EncoderInput,
  type EncoderSlotConfig,
  type EncoderSlotInput,
  type OnnxEncoderSlotConfig,
  type VisionEncoderSlotConfig,
  type VisionEncoderSlotInput,
  type VisionSizes,
} from "../encoders/slot_config.ts";
export {
  type LlmSizes,
  type LlmSizesInput,
  type LlmSlotConfig,
  type LlmSlotInput,
} from "../backbones/slot_config.ts";
export { type ProjectorSlotConfig } from "../projectors/slot_config.ts";
export {
  type RqTokenizerConfigInput,
  tokenizerSizes,
  type VisualTokenizerConfigInput,
} from "../tokenizers/visual_config.ts";
import { isRecord } from "../schema/fields.ts";

// ------------------------------------------------------------------ the composed config

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
        describeValue(value)
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

/** The visual tokenizers, each by its kind, with names unique. */
function parseTokenizers(value: unknown, path: string): VisualTokenizerConfig[] {
  if (!Array.isArray(value)) {
    throw new Error(`${path}: expected an array of visual tokenizer configs, got ${describeValue(value)}`);
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

/** The checks between encoder, projector, LLM and tokenizers. */
function checkAcrossSlots(cfg: AsvrConfig): void {
  const { encoder, projector, llm, visualTokenizers: toks } = cfg;
  const vision = gpuVisionSlot(encoder);
  // Tokenizers on the VLM's own encoder.
  toks.forEach((t, i) => {
    if (!isRqTokenizer(t) || t.encoder !== "input") return;
    const at = `visualTokenizers[${i}]`;
    if (!vision) {
      throw new Error(
        `${at}.encoder is "input" (the VLM's own encoder), but encoder.kind is ${
          JSON.stringify(encoder.kind)
        }, whose hidden layers the GPU cannot run; give the tokenizer its own encoder folder`,
      );
    }
    const L = vision.config?.numLayers;
    if (typeof t.layer === "number" && L !== undefined && t.layer > L) {
      throw new Error(`${at}.layer is ${t.layer} but the encoder has ${L} layers; use 0..${L} or "pixels"`);
    }
  });
  // The discrete-input ablation.
  if (vision && vision.input === "quantized" && !inputTokenizer(vision, toks)) {
    const rq = rqTokenizers(toks).map((t) => JSON.stringify(t.name));
    throw new Error(
      `encoder.inputTokenizer is ${JSON.stringify(vision.inputTokenizer)}, but encoder.input "quantized" ` +
        `needs an rq visual tokenizer of that name (rq tokenizers: ${rq.join(", ") || "none"}); add one ` +
        `to visualTokenizers, name one of them, or set encoder.input to "continuous"`,
    );
  }
  // A CLS row has no visual target.
  if (keepsClsRow(encoder) && headTargets(cfg.head, toks).length > 0) {
    throw new Error(
      `encoder.keepCls is true: the ${encoder.kind} encoder's CLS row would take an image position ` +
        `that has no visual target; set it to false, or use a head that learns no codes ` +
        `(kind "${NO_HEAD.kind}")`,
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
      `projector.inDim: required with encoder kind ${JSON.stringify(encoder.kind)} (its feature width ` +
        `is only known when it runs); set it to the width of the encoder's features`,
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

/** The rq tokenizer whose reconstruction a quantized-input encoder feeds, if the tokenizers have it. */
function inputTokenizer(
  enc: VisionEncoderSlotConfig,
  toks: readonly VisualTokenizerConfig[],
): RqTokenizerConfig | undefined {
  return rqTokenizers(toks).find((t) => t.name === enc.inputTokenizer);
}

/** The projector's input width when the inline sizes say it (undefined: only known at build). */
function projectorInputWidth(
  enc: VisionEncoderSlotConfig,
  toks: VisualTokenizerConfig[],
): number | undefined {
  if (!enc.config) return undefined;
  switch (enc.input) {
    case "continuous":
      return enc.config.hiddenSize;
    case "quantized": {
      const tok = inputTokenizer(enc, toks)!;
      if (tok.encoder !== "input") return undefined;
      return tok.layer === "pixels" ? 3 * enc.config.patchSize ** 2 : enc.config.hiddenSize;
    }
    default: {
      const never: never = enc.input;
      throw new Error(`encoder.input: unhandled ${never}`);
    }
  }
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
    setPath(root, parseKey(key, source), readValue(text, key, source), key, source);
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
  const proto = segs.find((s) => typeof s === "string" && PROTOTYPE_KEYS.has(s));
  if (proto !== undefined) {
    throw new Error(`${source}: key ${JSON.stringify(key)}: ${String(proto)} is not a config field`);
  }
  return segs;
}

/** Keys that reach an object's prototype rather than a field of its own. */
const PROTOTYPE_KEYS = new Set(["__proto__", "constructor", "prototype"]);

/**
 * The value of `key=text`: JSON when it parses; else, when it starts like a JSON array, object or
 * string (`[`, `{`, `"`), an error saying where the JSON is invalid; else the text itself
 * (`head.kind=none`, `name=7b-run`).
 */
function readValue(text: string, key: string, source: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    if (!/^\s*[[{"]/.test(text)) return text;
    throw new Error(
      `${source}: ${key}=${text}: invalid JSON (${(err as Error).message}); write arrays like [512,512], ` +
        `strings like '"x"' or plain words, and quote the whole argument in the shell`,
    );
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
        `${source}: ${key}: ${at} is ${describeValue(next)}, not an object, so it has no fields to set`,
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
  return joinPath(String(segs[0]), segs.slice(1));
}
