/**
 * A visual tokenizer exported to ONNX (kind `"onnx"` of the visual tokenizer config): pixels in,
 * integer codes out, run on the CPU by onnxruntime-web (WebAssembly). The model does the whole
 * tokenization (encoder, then e.g. residual quantization's per-depth argmin) and outputs codes
 * [B, N, D] (N patches, D depths); int64 codes become an Int32Array after a range check.
 *
 * onnxruntime-web is imported on the first {@linkcode OnnxVisualTokenizer.load}, never by importing
 * this module; see `encoders/onnx_runner.ts` for how it is loaded and pointed at its `.wasm` files.
 *
 * ```ts ignore
 * import { OnnxVisualTokenizer, parseOnnxTokenizerConfig } from "@asvr/asvr/tokenizers";
 * const cfg = parseOnnxTokenizerConfig({ kind: "onnx", name: "rq8", model: "rq8.onnx" }, "tokenizer");
 * const tok = await OnnxVisualTokenizer.load(cfg);
 * const { codes, dims } = await tok.encode(pixels, [1, 3, 384, 384]); // dims [1, 729, 8]
 * await tok.close();
 * ```
 * @module
 */

import { z } from "zod";
import { parseSchema } from "../schema/parse.ts";
import { formatShape, type OnnxData, type OnnxOutput, OnnxRunner } from "../encoders/onnx_runner.ts";

/** The config of an ONNX visual tokenizer (kind `"onnx"` of the visual tokenizer configs). */
export interface OnnxTokenizerConfig {
  /** The kind. */
  kind: "onnx";
  /** A name for logs and errors (e.g. `rq_siglip_8x16384`). */
  name: string;
  /** Path of the `.onnx` file (relative paths start at the working directory). */
  model: string;
  /** The model input that takes the pixels [B, 3, H, W] (default: the model's only input). */
  inputName?: string;
  /** The model output holding the codes [B, N, D] (default: the model's only output). */
  outputName?: string;
}

/** Codes of {@linkcode OnnxVisualTokenizer.encode}: B images, N patches, D depths, row-major. */
export interface VisualCodes {
  /** The codes, row-major [B, N, D]. */
  codes: Int32Array;
  /** [B, N, D]. */
  dims: [number, number, number];
}

const nonEmpty = z.string().min(1);
const ONNX_FILE = "expected the path of an .onnx file";

/** An ONNX tokenizer config's rules (it has no defaults). */
const onnxTokenizerSchema: z.ZodType<OnnxTokenizerConfig> = z.strictObject({
  kind: z.literal("onnx"),
  name: nonEmpty,
  model: z.string({ error: ONNX_FILE }).min(1, { error: ONNX_FILE }),
  inputName: nonEmpty.optional(),
  outputName: nonEmpty.optional(),
});

/**
 * Validates an ONNX visual tokenizer config given as data; `path` names where it sits (e.g.
 * `visualTokenizers[0]`). Errors name the field under it, its value and what it must be; unknown
 * fields are errors too (they list the known ones).
 */
export function parseOnnxTokenizerConfig(value: unknown, path: string): OnnxTokenizerConfig {
  const v = parseSchema(onnxTokenizerSchema, value, path, { hints: { kind: '"onnx"' } });
  return {
    kind: v.kind,
    name: v.name,
    model: v.model,
    ...(v.inputName !== undefined ? { inputName: v.inputName } : {}),
    ...(v.outputName !== undefined ? { outputName: v.outputName } : {}),
  };
}

/** The largest code an Int32Array holds. */
const I32_MAX = 2 ** 31 - 1;

/**
 * Converts integer codes to an Int32Array, checking each is in [0, 2^31 - 1] (a codebook index);
 * `where` starts the error, which names the first bad value and its flat index.
 */
export function codesToInt32(data: OnnxData, where: string): Int32Array {
  const out = new Int32Array(data.length);
  const fail = (i: number, v: number | bigint): never => {
    throw new Error(
      `${where}: code ${v} at flat index ${i} is outside [0, ${I32_MAX}]; codes are codebook indices, ` +
        `so the model's output is not codes (or its codebook is larger than 2^31)`,
    );
  };
  if (data instanceof BigInt64Array || data instanceof BigUint64Array) {
    for (let i = 0; i < data.length; i++) {
      const v = data[i];
      if (v < 0n || v > BigInt(I32_MAX)) fail(i, v);
      out[i] = Number(v);
    }
  } else {
    for (let i = 0; i < data.length; i++) {
      const v = data[i];
      if (!Number.isInteger(v) || v < 0 || v > I32_MAX) fail(i, v);
      out[i] = v;
    }
  }
  return out;
}

/**
 * Checks the output type: integer codes pass; float features and other types throw, saying what
 * the output is and what to do.
 */
function checkCodesType(type: OnnxOutput["type"], where: string): void {
  switch (type) {
    case "int64":
    case "uint64":
    case "int32":
    case "uint32":
    case "int16":
    case "uint16":
    case "int8":
    case "uint8":
      return;
    case "float32":
    case "float16":
    case "float64":
      throw new Error(
        `${where} is ${type}: it outputs float features, not integer codes. A visual tokenizer's ONNX ` +
          `model must end in the codebook lookup (argmin, int64 codes [B, N, D]); to run an encoder ` +
          `that outputs features, use OnnxEncoder (encoders/onnx_encoder.ts), or set outputName to the ` +
          `codes output`,
      );
    case "int4":
    case "uint4":
    case "bool":
    case "string":
      throw new Error(`${where} is ${type}; a visual tokenizer must output integer codes (int64 or int32)`);
    default: {
      const never: never = type;
      throw new Error(`${where} has unknown element type ${never}`);
    }
  }
}

/** An ONNX visual tokenizer: pixels [B, 3, H, W] to codes [B, N, D]. Build with {@linkcode OnnxVisualTokenizer.load}. */
export class OnnxVisualTokenizer {
  /** The configuration. */
  readonly cfg: OnnxTokenizerConfig;
  #runner: OnnxRunner;

  private constructor(cfg: OnnxTokenizerConfig, runner: OnnxRunner) {
    this.cfg = cfg;
    this.#runner = runner;
  }

  /**
   * Loads the tokenizer's model (`cfg.model`). Throws, naming the file and the fix, when the file is
   * missing or not ONNX, when an input/output name does not exist (or is needed), or when the output
   * is not integer codes (float features: say so and point to OnnxEncoder).
   */
  static async load(cfg: OnnxTokenizerConfig): Promise<OnnxVisualTokenizer> {
    const owner = `OnnxVisualTokenizer ${JSON.stringify(cfg.name)}`;
    const runner = await OnnxRunner.load(cfg.model, {
      inputName: cfg.inputName,
      outputName: cfg.outputName,
      owner,
    });
    try {
      checkCodesType(
        runner.outputType,
        `${owner}: ${cfg.model}: output ${JSON.stringify(runner.outputName)}`,
      );
    } catch (err) {
      await runner.close();
      throw err;
    }
    return new OnnxVisualTokenizer(cfg, runner);
  }

  /** All inputs of the model, in order. */
  get inputNames(): readonly string[] {
    return this.#runner.inputNames;
  }

  /** All outputs of the model, in order. */
  get outputNames(): readonly string[] {
    return this.#runner.outputNames;
  }

  /** The declared input shape, e.g. `["B", 3, 384, 384]` (names are free dims). */
  get inputShape(): ReadonlyArray<number | string> {
    return this.#runner.inputShape;
  }

  /**
   * Tokenizes host pixels [B, 3, H, W] (row-major, preprocessed as the model expects) to codes
   * [B, N, D]. Throws when `dims` does not match the model's input (naming the expected shape), when
   * the output is not [B, N, D] integer codes, or when a code is out of int32 range.
   */
  async encode(pixels: Float32Array, dims: number[]): Promise<VisualCodes> {
    const owner = this.#runner.owner;
    if (dims.length !== 4 || dims[1] !== 3) {
      throw new Error(`${owner}: pixels must be [B, 3, H, W]; got ${formatShape(dims)}`);
    }
    const out = await this.#runner.run(pixels, dims);
    const where = `${owner}: ${this.cfg.model}: output ${JSON.stringify(this.#runner.outputName)}`;
    checkCodesType(out.type, where);
    if (out.dims.length !== 3 || out.dims[0] !== dims[0]) {
      throw new Error(
        `${where} has shape ${formatShape(out.dims)}; codes must be [B, N, D] with B = ${dims[0]} ` +
          `(for a single codebook, export them unsqueezed to [B, N, 1])`,
      );
    }
    const codes = codesToInt32(out.data, where);
    return { codes, dims: [out.dims[0], out.dims[1], out.dims[2]] };
  }

  /** Frees the model; later calls to {@linkcode OnnxVisualTokenizer.encode} throw. */
  close(): Promise<void> {
    return this.#runner.close();
  }
}
