/**
 * A vision encoder exported to ONNX, run on the CPU by onnxruntime-web (WebAssembly): pixels in,
 * float features out, on the host. For encoders the framework does not implement natively, or to
 * compute a feature cache; the native SigLIP / CLIP encoders are `VisionEncoder` (`vit.ts`).
 *
 * onnxruntime-web is imported on the first {@linkcode OnnxEncoder.load}, never by importing this
 * module; see `onnx_runner.ts` for how it is loaded and pointed at its bundled `.wasm` files.
 *
 * ```ts ignore
 * import { OnnxEncoder } from "@asvr/asvr/encoders";
 * const enc = await OnnxEncoder.load("siglip_so400m.onnx", { outputName: "last_hidden_state" });
 * const { data, dims } = await enc.run(pixels, [1, 3, 384, 384]); // dims [1, 729, 1152]
 * await enc.close();
 * ```
 * @module
 */

import { formatShape, OnnxRunner } from "./onnx_runner.ts";

/** Options of {@linkcode OnnxEncoder.load}. */
export interface OnnxEncoderOptions {
  /** The model input that takes the pixels (default: the model's only input). */
  inputName?: string;
  /** The model output holding the features (default: the model's only output). */
  outputName?: string;
}

/** An ONNX vision encoder: float32 pixels in, float32 features out. Build with {@linkcode OnnxEncoder.load}. */
export class OnnxEncoder {
  #runner: OnnxRunner;

  private constructor(runner: OnnxRunner) {
    this.#runner = runner;
  }

  /**
   * Loads an encoder from an `.onnx` file. Throws, naming the file and the fix, when the file is
   * missing or not an ONNX model, when `inputName` / `outputName` is not one of the model's (or is
   * needed because there are several), or when the chosen output is not float32 (integer codes mean
   * a visual tokenizer: use `OnnxVisualTokenizer`).
   */
  static async load(path: string, opts: OnnxEncoderOptions = {}): Promise<OnnxEncoder> {
    const runner = await OnnxRunner.load(path, { ...opts, owner: "OnnxEncoder" });
    if (runner.outputType !== "float32") {
      await runner.close();
      const hint = runner.outputType.includes("int")
        ? "integer outputs are visual-tokenizer codes: load this model with OnnxVisualTokenizer " +
          '(tokenizer kind "onnx")'
        : "export the model with a float32 output";
      throw new Error(
        `OnnxEncoder: ${path}: output ${JSON.stringify(runner.outputName)} is ${runner.outputType}, ` +
          `not float32 features; ${hint}`,
      );
    }
    return new OnnxEncoder(runner);
  }

  /** The model file, as given to {@linkcode OnnxEncoder.load}. */
  get path(): string {
    return this.#runner.path;
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
   * Runs the encoder on host pixels of shape `dims` (e.g. [B, 3, H, W], row-major) and returns the
   * features (e.g. [B, N, C]). Throws naming the expected shape when `dims` does not match the model.
   */
  async run(pixels: Float32Array, dims: number[]): Promise<{ data: Float32Array; dims: number[] }> {
    const out = await this.#runner.run(pixels, dims);
    if (!(out.data instanceof Float32Array)) {
      throw new Error(
        `OnnxEncoder: ${this.path}: output ${JSON.stringify(this.#runner.outputName)} ${
          formatShape(out.dims)
        } ` +
          `came back as ${out.type}, not float32`,
      );
    }
    return { data: out.data, dims: out.dims };
  }

  /** Frees the model; later runs throw. */
  close(): Promise<void> {
    return this.#runner.close();
  }
}
