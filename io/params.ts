/**
 * The bridge between checkpoints and the engine: loading safetensors weights into existing
 * parameter tensors, saving parameters, and writing Hugging Face model folders.
 *
 * ```ts ignore
 * const ckpt = await Checkpoint.open("models/vicuna-7b");
 * await loadParams(llm.params, ckpt, { allowMissing: ["lm_head.weight"] });
 * ckpt.close();
 * await saveParams("runs/step100.safetensors", llm.params, { dtype: "BF16" });
 * ```
 * @module
 */

import type { Tensor } from "../core/tensor.ts";
import {
  type Checkpoint,
  closeNames,
  isSafeFloat,
  type SafeData,
  type SafeDType,
  type SafeTensorInput,
  writeSafetensors,
  writeShardedSafetensors,
  writeTextAtomic,
} from "./safetensors.ts";
import { assertFinite } from "./finite.ts";

/** Options of {@linkcode loadParams}. */
export interface LoadParamsOptions {
  /** Prepended to each param name to give its checkpoint name (e.g. "language_model."). */
  prefix?: string;
  /** Param names (with or without the prefix; `*` matches any run of characters) that may be absent. */
  allowMissing?: string[];
  /** `true` ignores checkpoint tensors under the prefix that no param takes; a list ignores those names/globs. */
  ignoreUnexpected?: boolean | string[];
  /** Called after each tensor is on the GPU (for a progress line while a large model loads). */
  onProgress?: (p: LoadProgress) => void;
  /** Load float tensors holding NaN or infinities (default false: such a tensor stops the load). */
  allowNonFinite?: boolean;
}

/** How far a load (or a save) has come: tensors and stored bytes done, of the total. */
export interface LoadProgress {
  /** The tensor just loaded (its checkpoint name). */
  name: string;
  /** Tensors loaded so far. */
  tensors: number;
  /** Tensors to load. */
  totalTensors: number;
  /** Stored bytes read so far. */
  bytes: number;
  /** Stored bytes to read. */
  totalBytes: number;
}

/**
 * Loads checkpoint tensors into existing params: param `n` takes tensor `prefix + n`, after its
 * shape is checked, converted to the param's dtype (bf16/f16/f64 widen to f32; f16 params round).
 * Names, shapes and dtypes are checked before anything is written, so such a failed load leaves the
 * params untouched: missing tensors (not allowed) give ONE error listing them, so do unexpected
 * checkpoint tensors under the prefix (unless ignored) and shape mismatches. Tensors are read and
 * uploaded one at a time, so host memory holds one tensor; `onProgress` hears of each. Each float
 * tensor's values are checked for NaN and infinities as it is read (one pass): the first one found
 * stops the load before that tensor is written (earlier tensors are), naming the tensor and the
 * index, unless `allowNonFinite`.
 */
export async function loadParams(
  params: Map<string, Tensor>,
  ckpt: Checkpoint,
  opts: LoadParamsOptions = {},
): Promise<void> {
  const prefix = opts.prefix ?? "";
  const allowMissing = globMatcher(opts.allowMissing ?? [], "allowMissing");
  const ignored = opts.ignoreUnexpected === true
    ? () => true
    : globMatcher(opts.ignoreUnexpected || [], "ignoreUnexpected");
  const stripped = (full: string) => full.slice(prefix.length);

  const missing: string[] = [];
  const problems: string[] = [];
  const plan: [string, Tensor][] = [];
  for (const [name, t] of params) {
    const key = prefix + name;
    if (!ckpt.has(key)) {
      if (!allowMissing(name) && !allowMissing(key)) missing.push(key);
      continue;
    }
    const info = ckpt.info(key);
    if (!sameShape(info.shape, t.shape)) {
      problems.push(
        `"${key}" in ${info.file} has shape [${info.shape}], the param "${name}" expects [${t.shape}]`,
      );
    } else if (isSafeFloat(info.dtype) && !(t.dtype === "f32" || t.dtype === "f16")) {
      problems.push(
        `"${key}" in ${info.file} holds floats (${info.dtype}), the param "${name}" is ${t.dtype}`,
      );
    } else {
      plan.push([key, t]);
    }
  }
  const unexpected: string[] = [];
  for (const key of ckpt.names()) {
    if (!key.startsWith(prefix) || params.has(stripped(key))) continue;
    if (!ignored(key) && !ignored(stripped(key))) unexpected.push(key);
  }
  const errors: string[] = [];
  if (missing.length) {
    const near = closeNames(missing[0], ckpt.names(), 1)[0];
    errors.push(
      `${missing.length} param(s) missing from the checkpoint: ${listSome(missing)}` +
        (near ? `\n  the checkpoint name closest to "${missing[0]}" is "${near}";` : "\n ") +
        ` fix the prefix ("${prefix}") or the name mapping, or pass allowMissing`,
    );
  }
  if (unexpected.length) {
    errors.push(
      `${unexpected.length} checkpoint tensor(s) under prefix "${prefix}" match no param: ${
        listSome(unexpected)
      }` +
        `\n  pass ignoreUnexpected (true or a list of names/globs) if that is intended`,
    );
  }
  if (problems.length) {
    errors.push(
      `${problems.length} tensor(s) do not fit their params:\n  ${problems.slice(0, 20).join("\n  ")}`,
    );
  }
  if (errors.length) throw new Error(`loadParams from ${ckpt.path}:\n${errors.join("\n")}`);

  const totalBytes = plan.reduce((sum, [key]) => sum + ckpt.info(key).byteLength, 0);
  let bytes = 0;
  for (const [i, [key, t]] of plan.entries()) {
    const raw = await ckpt.read(key);
    if (raw instanceof Float32Array && !opts.allowNonFinite) {
      assertFinite(
        raw,
        ckpt.info(key),
        "load other weights, or pass allowNonFinite: true to loadParams to load them anyway",
      );
    }
    const data = toParamData(raw, t, key);
    const e = t.engine;
    e.write(t, data);
    e.flush(); // submit now, so the staging copy of this tensor is freed before the next one
    bytes += ckpt.info(key).byteLength;
    opts.onProgress?.({ name: key, tensors: i + 1, totalTensors: plan.length, bytes, totalBytes });
  }
}

/** Options of {@linkcode saveParams}. */
export interface SaveParamsOptions {
  /** Prepended to each param name to give its stored name. */
  prefix?: string;
  /** Stored dtype of float params (default: F32 for f32 params, F16 for f16). Integer params stay I32. */
  dtype?: "F32" | "F16" | "BF16";
  /** `__metadata__` strings ("format": "pt" is added unless given, as transformers expects). */
  metadata?: Record<string, string>;
  /** Called as each tensor has been read back for writing (stored bytes, in file order). */
  onProgress?: (p: LoadProgress) => void;
}

/**
 * Saves params into one safetensors file, atomically (stored names = prefix + name). Each param is
 * read back from the GPU just before it is written, so host memory holds one tensor.
 */
export async function saveParams(
  path: string,
  params: Map<string, Tensor>,
  opts: SaveParamsOptions = {},
): Promise<void> {
  await writeSafetensors(path, paramInputs(params, opts), { format: "pt", ...opts.metadata });
}

/** Options of {@linkcode writeHfFolder}. */
export interface HfFolderOptions extends SaveParamsOptions {
  /** Split the weights into shards of at most this many bytes (default: one model.safetensors). */
  maxShardBytes?: number;
}

/**
 * Writes a Hugging Face model folder: `config.json` (atomically) and `model.safetensors`, or
 * `model-0000i-of-0000n.safetensors` shards plus `model.safetensors.index.json` when the weights
 * pass `maxShardBytes`: what transformers' `from_pretrained` reads. Weight files of an earlier
 * save in another layout (stale shards, index or single file) are removed afterwards.
 */
export async function writeHfFolder(
  dir: string,
  config: unknown,
  params: Map<string, Tensor>,
  opts: HfFolderOptions = {},
): Promise<void> {
  let json: string | undefined;
  try {
    json = JSON.stringify(config, null, 2);
  } catch (err) {
    throw new Error(`writeHfFolder(${dir}): config is not JSON-serializable: ${(err as Error).message}`);
  }
  if (json === undefined || config === null || typeof config !== "object" || Array.isArray(config)) {
    throw new Error(`writeHfFolder(${dir}): config must be a plain object (the model's config.json)`);
  }
  await Deno.mkdir(dir, { recursive: true });
  await writeTextAtomic(`${dir}/config.json`, json + "\n");
  const inputs = paramInputs(params, opts);
  const metadata = { format: "pt", ...opts.metadata };
  const total = inputs.reduce((s, t) => s + t.shape.reduce((a, b) => a * b, 1) * storedBytes(t.dtype), 0);
  let keep: string[];
  if (opts.maxShardBytes !== undefined && total > opts.maxShardBytes) {
    keep = await writeShardedSafetensors(dir, inputs, { maxShardBytes: opts.maxShardBytes, metadata });
    keep.push("model.safetensors.index.json");
  } else {
    await writeSafetensors(`${dir}/model.safetensors`, inputs, metadata);
    keep = ["model.safetensors"];
  }
  for await (const entry of Deno.readDir(dir)) {
    const stale = entry.name === "model.safetensors" || entry.name === "model.safetensors.index.json" ||
      /^model-\d{5}-of-\d{5}\.safetensors$/.test(entry.name);
    if (entry.isFile && stale && !keep.includes(entry.name)) await Deno.remove(`${dir}/${entry.name}`);
  }
}

function storedBytes(dtype: SafeDType): number {
  return dtype === "F16" || dtype === "BF16" ? 2 : 4;
}

/** Lazy writer inputs for params: each reads its tensor back when the writer reaches it. */
function paramInputs(params: Map<string, Tensor>, opts: SaveParamsOptions): SafeTensorInput[] {
  const prefix = opts.prefix ?? "";
  const out: SafeTensorInput[] = [];
  let [tensors, bytes, totalBytes] = [0, 0, 0];
  for (const [name, t] of params) {
    let dtype: SafeDType;
    switch (t.dtype) {
      case "f32":
        dtype = opts.dtype ?? "F32";
        break;
      case "f16":
        dtype = opts.dtype ?? "F16";
        break;
      case "i32":
      case "u32":
        dtype = "I32";
        break;
    }
    const stored = t.size * storedBytes(dtype);
    totalBytes += stored;
    out.push({
      name: prefix + name,
      dtype,
      shape: [...t.shape],
      data: async () => {
        const host = await t.read();
        bytes += stored;
        opts.onProgress?.({
          name: prefix + name,
          tensors: ++tensors,
          totalTensors: params.size,
          bytes,
          totalBytes,
        });
        if (host instanceof Uint32Array) {
          const i = host.findIndex((v) => v > 0x7fffffff);
          if (i >= 0) {
            throw new Error(`saveParams: u32 param "${name}" value ${host[i]} at ${i} does not fit in I32`);
          }
          return new Int32Array(host.buffer, host.byteOffset, host.length);
        }
        return host;
      },
    });
  }
  return out;
}

/** Converts read checkpoint data to the host type `e.write` takes for the param's dtype. */
function toParamData(data: SafeData, t: Tensor, key: string): Float32Array | Int32Array | Uint32Array {
  switch (t.dtype) {
    case "f32":
    case "f16":
      return data instanceof Float32Array ? data : Float32Array.from(data);
    case "i32":
      return data instanceof Int32Array ? data : Int32Array.from(data);
    case "u32": {
      const i = data.findIndex((v: number) => v < 0);
      if (i >= 0) {
        throw new Error(`loadParams: "${key}" value ${data[i]} at ${i} is negative; the param is u32`);
      }
      return Uint32Array.from(data);
    }
  }
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

function listSome(names: string[]): string {
  const shown = names.slice(0, 20).map((n) => `"${n}"`).join(", ");
  return names.length > 20 ? `${shown} ... and ${names.length - 20} more` : shown;
}

/** A predicate for names matching any of `patterns` (exact, or `*` globs). */
export function globMatcher(patterns: string[], field = "patterns"): (name: string) => boolean {
  if (!Array.isArray(patterns) || !patterns.every((p) => typeof p === "string")) {
    throw new Error(`${field} must be an array of names or "*" globs`);
  }
  const exact = new Set(patterns.filter((p) => !p.includes("*")));
  const globs = patterns.filter((p) => p.includes("*")).map((p) =>
    new RegExp("^" + p.split("*").map((s) => s.replace(/[.+?^${}()|[\]\\]/g, "\\$&")).join(".*") + "$")
  );
  return (name) => exact.has(name) || globs.some((g) => g.test(name));
}
