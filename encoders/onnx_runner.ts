/**
 * Runs one ONNX model with onnxruntime-web's WebAssembly backend: the shared core of `OnnxEncoder`
 * (`encoders/onnx_encoder.ts`) and `OnnxVisualTokenizer` (`tokenizers/onnx_tokenizer.ts`). It loads the model file with clear errors, picks and checks the
 * model's input and output by name, checks the shape fed in against the model's declared input shape,
 * and returns the output as a host typed array.
 *
 * **Lazy loading.** onnxruntime-web is a 33 MB download (145 MB unpacked: four WebAssembly builds),
 * so it stays out of the import graph: it is imported at runtime, by {@linkcode loadOnnxRuntime}, the
 * first time a model is loaded, with a specifier held in a constant ({@linkcode ONNXRUNTIME_WEB}).
 * A string literal in `import("...")` would not do: Deno puts statically analyzable dynamic imports
 * in the module graph and downloads them for every `deno run`, `deno check` and `deno test` whose
 * graph reaches this file, even when no model is ever loaded. The specifier is a full `npm:` one (not
 * the import-map name) so that it also resolves from the published package, where the import map
 * does not apply; `deno publish` reports it as an "unanalyzable dynamic import" warning, which is
 * expected. The version pinned here must equal the `onnxruntime-web` entry of `deno.json` (a test
 * checks it; the tests import the package through the import map for its types).
 *
 * **WebAssembly files, no network.** Under Deno the package resolves through its `node` export
 * condition to `dist/ort.node.min.mjs`, which reads its `.wasm` from the package folder with the file
 * system. {@linkcode loadOnnxRuntime} makes that explicit: it sets `ort.env.wasm.wasmPaths` to the
 * `dist/` folder of the resolved module (`import.meta.resolve(ONNXRUNTIME_WEB)`, a `file:` URL in
 * Deno's npm cache or `node_modules/`), `numThreads = 1` and `proxy = false` (no worker). Nothing is
 * fetched from a CDN; it runs under `--deny-net`. Measured here: 2 threads start no worker and run
 * no faster under Deno, so 1 it is.
 *
 * ```ts ignore
 * const m = await OnnxRunner.load("encoder.onnx", { owner: "OnnxEncoder" });
 * const out = await m.run(pixels, [1, 3, 8, 8]); // { type: "float32", data, dims: [1, 4, 6] }
 * await m.close();
 * ```
 * @module
 */

import { resolve } from "node:path";

/** The npm package this module imports lazily: the same pin as `deno.json`'s `onnxruntime-web`. */
export const ONNXRUNTIME_WEB = "npm:onnxruntime-web@1.30.0";

/** An element type of an ONNX tensor, as onnxruntime-web names it. */
export type OnnxTensorType =
  | "float32"
  | "float16"
  | "float64"
  | "int8"
  | "uint8"
  | "int16"
  | "uint16"
  | "int32"
  | "uint32"
  | "int64"
  | "uint64"
  | "int4"
  | "uint4"
  | "bool"
  | "string";

/** The typed arrays an ONNX output arrives in (bool as Uint8Array; float16 as Uint16Array or Float16Array). */
export type OnnxData =
  | Float32Array
  | Float64Array
  | Int8Array
  | Uint8Array
  | Int16Array
  | Uint16Array
  | Int32Array
  | Uint32Array
  | BigInt64Array
  | BigUint64Array;

/** One output of {@linkcode OnnxRunner.run}: element type, values (row-major) and shape. */
export interface OnnxOutput {
  /** Element type of the output. */
  type: OnnxTensorType;
  /** The values, row-major. */
  data: OnnxData;
  /** The shape. */
  dims: number[];
}

/** Options of {@linkcode OnnxRunner.load}. */
export interface OnnxRunnerOptions {
  /** The model input to feed (default: the only one; required when the model has several). */
  inputName?: string;
  /** The model output to return (default: the only one; required when the model has several). */
  outputName?: string;
  /** Who is loading, to start error messages (e.g. `OnnxEncoder`). Default `OnnxRunner`. */
  owner?: string;
}

// The part of onnxruntime-web's API this module uses, declared here so that the package's types do
// not pull it into the type-check graph either. onnx_runner_test.ts checks that the real module type
// is assignable to it.

/** A tensor of onnxruntime-web (the fields used here). */
export interface OrtTensorLike {
  /** Element type. */
  readonly type: string;
  /** Values. */
  readonly data: unknown;
  /** Shape. */
  readonly dims: readonly number[];
}

/** Metadata of one model input or output (onnxruntime-web's `InferenceSession.ValueMetadata`). */
export interface OrtValueMetadataLike {
  /** Name. */
  readonly name: string;
  /** Whether it is a tensor (else a sequence or map). */
  readonly isTensor: boolean;
  /** Element type, for tensors. */
  readonly type?: string;
  /** Shape, for tensors: numbers, symbolic names (strings), or empty when undeclared. */
  readonly shape?: ReadonlyArray<number | string>;
}

/** An inference session of onnxruntime-web (the members used here). */
export interface OrtSessionLike {
  /** Input names, in model order. */
  readonly inputNames: readonly string[];
  /** Output names, in model order. */
  readonly outputNames: readonly string[];
  /** Input metadata, in model order. */
  readonly inputMetadata: readonly OrtValueMetadataLike[];
  /** Output metadata, in model order. */
  readonly outputMetadata: readonly OrtValueMetadataLike[];
  /** Runs the model. */
  run(feeds: Record<string, OrtTensorLike>): Promise<Record<string, OrtTensorLike>>;
  /** Frees the session. */
  release(): Promise<void>;
}

/** The module `onnxruntime-web` (the members used here). */
export interface OrtModuleLike {
  /** Global settings. */
  readonly env: {
    logLevel?: "verbose" | "info" | "warning" | "error" | "fatal";
    readonly wasm: { numThreads?: number; proxy?: boolean; wasmPaths?: unknown };
  };
  /** Session factory. */
  readonly InferenceSession: {
    create(
      model: Uint8Array,
      options?: { executionProviders?: string[]; logSeverityLevel?: 0 | 1 | 2 | 3 | 4 },
    ): Promise<OrtSessionLike>;
  };
  /** Tensor constructor. */
  readonly Tensor: new (type: "float32", data: Float32Array, dims: readonly number[]) => OrtTensorLike;
}

let ortPromise: Promise<OrtModuleLike> | null = null;
let ortLoaded = false;

/** Whether onnxruntime-web has been imported in this process (it is, on the first model load). */
export function onnxRuntimeLoaded(): boolean {
  return ortLoaded;
}

/**
 * Imports onnxruntime-web (once per process) and configures its WebAssembly backend for Deno without
 * network: `wasmPaths` = the package's `dist/` folder, one thread, no proxy worker. See the module doc.
 */
export function loadOnnxRuntime(): Promise<OrtModuleLike> {
  ortPromise ??= importOnnxRuntime().catch((err) => {
    ortPromise = null;
    throw err;
  });
  return ortPromise;
}

async function importOnnxRuntime(): Promise<OrtModuleLike> {
  const specifier: string = ONNXRUNTIME_WEB; // not a literal: keeps it out of Deno's module graph
  let ort: OrtModuleLike;
  try {
    ort = await import(specifier);
  } catch (err) {
    throw new Error(
      `could not import ${ONNXRUNTIME_WEB} (${errorText(err)}); it is downloaded from the npm registry ` +
        `on first use: run \`deno install\` (or \`deno cache\` a file that imports it) with network ` +
        `access once, or vendor it with "nodeModulesDir": "auto"`,
    );
  }
  const entry = import.meta.resolve(specifier); // .../onnxruntime-web/<version>/dist/ort.node.min.mjs
  if (entry.startsWith("file:")) ort.env.wasm.wasmPaths = new URL("./", entry).href;
  ort.env.wasm.numThreads = 1;
  ort.env.wasm.proxy = false;
  ort.env.logLevel = "error";
  ortLoaded = true;
  return ort;
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Formats a declared or actual shape: `[B, 3, 8, 8]`. */
export function formatShape(shape: ReadonlyArray<number | string>): string {
  return `[${shape.join(", ")}]`;
}

/** Reads a model file, with errors that name the path and the fix. */
async function readModel(path: string, owner: string): Promise<Uint8Array> {
  const abs = resolve(path);
  try {
    const info = await Deno.stat(abs);
    if (info.isDirectory) {
      throw new Error(`${owner}: ${path} is a folder; pass the path of the .onnx file inside it`);
    }
    return await Deno.readFile(abs);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      throw new Error(
        `${owner}: model file not found: ${path} (looked at ${abs}); check the path (relative paths ` +
          `start at the working directory) or export the model to ONNX first, e.g. with ` +
          `torch.onnx.export as tests/fixtures/onnx/make_onnx.py does`,
      );
    }
    if (err instanceof Deno.errors.NotCapable || err instanceof Deno.errors.PermissionDenied) {
      throw new Error(`${owner}: no permission to read ${path}; run deno with --allow-read`);
    }
    throw err;
  }
}

/** Picks the input or output named `wanted`, or the only one; errors list the model's names. */
function pickName(
  names: readonly string[],
  wanted: string | undefined,
  what: "input" | "output",
  owner: string,
  path: string,
): string {
  const listed = names.map((n) => JSON.stringify(n)).join(", ");
  const option = `${what}Name`;
  if (wanted !== undefined) {
    if (names.includes(wanted)) return wanted;
    throw new Error(
      `${owner}: ${path} has no ${what} named ${JSON.stringify(wanted)}; its ${what}s are ${listed}: ` +
        `set ${option} to one of them`,
    );
  }
  if (names.length === 1) return names[0];
  throw new Error(
    `${owner}: ${path} has ${names.length} ${what}s (${listed}); set ${option} to the one to use`,
  );
}

/**
 * One loaded ONNX model, fed one float32 input and read at one output. Build with
 * {@linkcode OnnxRunner.load}; free with {@linkcode OnnxRunner.close}.
 */
export class OnnxRunner {
  /** The model file, as given. */
  readonly path: string;
  /** Who loaded it (starts error messages). */
  readonly owner: string;
  /** All inputs of the model, in order. */
  readonly inputNames: readonly string[];
  /** All outputs of the model, in order. */
  readonly outputNames: readonly string[];
  /** The input this runner feeds. */
  readonly inputName: string;
  /** The output this runner returns. */
  readonly outputName: string;
  /** The declared shape of the input: numbers for fixed dims, names for symbolic ones (e.g. `B`); empty if undeclared. */
  readonly inputShape: ReadonlyArray<number | string>;
  /** The declared element type of the output (e.g. `float32`, `int64`). */
  readonly outputType: OnnxTensorType;
  #ort: OrtModuleLike;
  #session: OrtSessionLike | null;

  private constructor(
    ort: OrtModuleLike,
    session: OrtSessionLike,
    path: string,
    owner: string,
    opts: OnnxRunnerOptions,
  ) {
    this.#ort = ort;
    this.#session = session;
    this.path = path;
    this.owner = owner;
    this.inputNames = [...session.inputNames];
    this.outputNames = [...session.outputNames];
    this.inputName = pickName(this.inputNames, opts.inputName, "input", owner, path);
    this.outputName = pickName(this.outputNames, opts.outputName, "output", owner, path);
    const inMeta = session.inputMetadata.find((m) => m.name === this.inputName);
    const outMeta = session.outputMetadata.find((m) => m.name === this.outputName);
    if (!inMeta?.isTensor || inMeta.type !== "float32") {
      throw new Error(
        `${owner}: ${path}: input ${JSON.stringify(this.inputName)} is ${describe(inMeta)}; ` +
          `this runner feeds float32 tensors: export the model with a float32 input`,
      );
    }
    if (!outMeta?.isTensor) {
      throw new Error(
        `${owner}: ${path}: output ${JSON.stringify(this.outputName)} is ${describe(outMeta)}; ` +
          `export the model so that this output is a tensor`,
      );
    }
    this.inputShape = [...(inMeta.shape ?? [])];
    this.outputType = outMeta.type as OnnxTensorType;
  }

  /**
   * Loads an ONNX model file (importing onnxruntime-web on first use). Errors name the file and the
   * fix: missing file, not an ONNX model, unknown or ambiguous input/output name, non-float32 input.
   */
  static async load(path: string, opts: OnnxRunnerOptions = {}): Promise<OnnxRunner> {
    const owner = opts.owner ?? "OnnxRunner";
    const bytes = await readModel(path, owner);
    const ort = await loadOnnxRuntime();
    let session: OrtSessionLike;
    try {
      session = await ort.InferenceSession.create(bytes, {
        executionProviders: ["wasm"],
        logSeverityLevel: 3,
      });
    } catch (err) {
      throw new Error(
        `${owner}: ${path} could not be loaded as an ONNX model (${errorText(err)}); ` +
          `check that it is an .onnx file written by an ONNX exporter (e.g. torch.onnx.export, opset >= 7)`,
      );
    }
    try {
      return new OnnxRunner(ort, session, path, owner, opts);
    } catch (err) {
      await session.release();
      throw err;
    }
  }

  /** Checks `dims` against the data length and the model's declared input shape; throws naming both. */
  checkInput(data: Float32Array, dims: readonly number[]): void {
    const where = `${this.owner}: ${this.path}: input ${JSON.stringify(this.inputName)}`;
    if (!dims.every((d) => Number.isInteger(d) && d > 0)) {
      throw new Error(`${where}: dims ${formatShape(dims)} must be positive integers`);
    }
    const n = dims.reduce((a, b) => a * b, 1);
    if (data.length !== n) {
      throw new Error(`${where}: dims ${formatShape(dims)} hold ${n} values but the data has ${data.length}`);
    }
    const want = this.inputShape;
    if (want.length === 0) return; // the model declares no shape
    const bad = want.length !== dims.length ||
      want.some((w, i) => typeof w === "number" && w > 0 && w !== dims[i]);
    if (bad) {
      throw new Error(
        `${where} expects shape ${formatShape(want)} (names are free dims); got ${formatShape(dims)}: ` +
          `resize or reshape the input to match`,
      );
    }
  }

  /** Runs the model on one float32 input `[dims]` and returns the chosen output. */
  async run(data: Float32Array, dims: readonly number[]): Promise<OnnxOutput> {
    const session = this.#session;
    if (session === null) throw new Error(`${this.owner}: ${this.path} is closed; load it again`);
    this.checkInput(data, dims);
    const feed = new this.#ort.Tensor("float32", data, [...dims]);
    let out: Record<string, OrtTensorLike>;
    try {
      out = await session.run({ [this.inputName]: feed });
    } catch (err) {
      throw new Error(
        `${this.owner}: ${this.path}: onnxruntime failed on input ${formatShape(dims)}: ${errorText(err)}`,
      );
    }
    const t = out[this.outputName];
    if (!ArrayBuffer.isView(t?.data)) {
      throw new Error(
        `${this.owner}: ${this.path}: output ${
          JSON.stringify(this.outputName)
        } came back without tensor data`,
      );
    }
    return { type: t.type as OnnxTensorType, data: t.data as OnnxData, dims: [...t.dims] };
  }

  /** Frees the session; later calls to {@linkcode OnnxRunner.run} throw. Safe to call twice. */
  async close(): Promise<void> {
    const session = this.#session;
    this.#session = null;
    if (session !== null) await session.release();
  }
}

function describe(meta: OrtValueMetadataLike | undefined): string {
  if (meta === undefined) return "missing from the model's metadata";
  if (!meta.isTensor) return "not a tensor (a sequence or map)";
  return `a ${meta.type} tensor`;
}
