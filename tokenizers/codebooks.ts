/**
 * RQ codebooks as a file: a safetensors file holding the tensor `codebooks` f32 [D, K, Dc] (one per
 * depth) or [1, K, Dc] (one shared by every depth), and string metadata saying how they were made
 * (depths, shared, the encoder's source layer and the encoder's identity). Their identity, a hash of
 * the bytes and the config, keys the target caches: new codebooks never reuse old targets.
 *
 * ```ts ignore
 * const cb = await Codebooks.load("tokenizers/semantic.safetensors");
 * const codes = rqEncode(features, cb.toTensor(e), { depths: cb.info.depths });
 * const cache = await TargetCache.open("cache/targets", cb.identity());
 * ```
 * @module
 */

import { createHash } from "node:crypto";
import type { Engine } from "../core/engine.ts";
import type { Tensor } from "../core/tensor.ts";
import { SafetensorsFile, writeSafetensors } from "../io/safetensors.ts";

/** The tensor name inside a codebooks file. */
export const CODEBOOKS_TENSOR = "codebooks";

/** The `format` metadata of a codebooks file. */
export const CODEBOOKS_FORMAT = "asvr.rq_codebooks";

/** What a set of RQ codebooks is: sizes and provenance. */
export interface CodebooksInfo {
  /** Depths D of the codes they produce. */
  depths: number;
  /** Codes K per codebook. */
  codebookSize: number;
  /** Width Dc of a code vector (the features' width). */
  dim: number;
  /** True: one codebook [1, K, Dc] used at every depth; false: one per depth [D, K, Dc]. */
  shared: boolean;
  /** The encoder layer whose output was quantized (e.g. 26), "pixels" for raw patch pixels, null if unknown. */
  layer: number | "pixels" | null;
  /** The encoder's identity (a model name, path or hash); "" if unknown. */
  encoder: string;
}

function checkInfo(info: CodebooksInfo, where: string): void {
  const posInt = (v: unknown) => Number.isInteger(v) && (v as number) >= 1;
  for (const k of ["depths", "codebookSize", "dim"] as const) {
    if (!posInt(info[k])) throw new Error(`${where}: ${k} must be an integer >= 1, got ${info[k]}`);
  }
  if (typeof info.shared !== "boolean") throw new Error(`${where}: shared must be true or false`);
  const l = info.layer;
  if (!(l === null || l === "pixels" || (Number.isInteger(l) && l >= 0))) {
    throw new Error(`${where}: layer must be an integer >= 0, "pixels" or null, got ${JSON.stringify(l)}`);
  }
  if (typeof info.encoder !== "string") throw new Error(`${where}: encoder must be a string`);
}

/** RQ codebooks on the host, with their provenance. Build with {@linkcode Codebooks.create} or load. */
export class Codebooks {
  /** Sizes and provenance. */
  readonly info: Readonly<CodebooksInfo>;
  /** The code vectors, f32 [books, K, Dc] with books = 1 (shared) or D. */
  readonly data: Float32Array;
  #identity: string | null = null;

  private constructor(data: Float32Array, info: CodebooksInfo) {
    this.data = data;
    this.info = Object.freeze({ ...info });
  }

  /**
   * Codebooks from their values f32 [books, K, Dc] (books = 1 when `info.shared`, else
   * `info.depths`). Refuses a size that does not match, or non-finite values.
   */
  static create(data: Float32Array, info: CodebooksInfo): Codebooks {
    checkInfo(info, "Codebooks.create");
    const books = info.shared ? 1 : info.depths;
    const want = books * info.codebookSize * info.dim;
    if (!(data instanceof Float32Array) || data.length !== want) {
      throw new Error(
        `Codebooks.create: data must be a Float32Array of ${want} values ([${books}, ${info.codebookSize}, ` +
          `${info.dim}]), got ${data?.length ?? data}`,
      );
    }
    const bad = data.findIndex((v) => !Number.isFinite(v));
    if (bad >= 0) throw new Error(`Codebooks.create: value ${data[bad]} at index ${bad} is not finite`);
    return new Codebooks(data, info);
  }

  /** Stored codebooks: 1 when shared, else D. */
  get books(): number {
    return this.info.shared ? 1 : this.info.depths;
  }

  /** The shape of {@linkcode data}: [books, K, Dc]. */
  get shape(): [number, number, number] {
    return [this.books, this.info.codebookSize, this.info.dim];
  }

  /** The codebook depth `d` uses, f32 [K, Dc] (a view of {@linkcode data}). */
  book(d: number): Float32Array {
    if (!Number.isInteger(d) || d < 0 || d >= this.info.depths) {
      throw new Error(`Codebooks.book: depth ${d} out of range [0, ${this.info.depths})`);
    }
    const n = this.info.codebookSize * this.info.dim, b = this.info.shared ? 0 : d;
    return this.data.subarray(b * n, (b + 1) * n);
  }

  /**
   * Uploads the codebooks as a frozen f32 tensor outside tidy scopes (dispose it when done):
   * [books, K, Dc] as stored, or with `perDepth` always [D, K, Dc] (a shared codebook repeated at
   * every depth, for consumers such as the visual heads that index codebooks by depth).
   */
  toTensor(e: Engine, opts: { perDepth?: boolean } = {}): Tensor {
    const { depths: D, codebookSize: K, dim: Dc } = this.info;
    let t: Tensor;
    if (opts.perDepth && this.info.shared && D > 1) {
      const all = new Float32Array(D * K * Dc);
      for (let d = 0; d < D; d++) all.set(this.data, d * K * Dc);
      t = e.tensor(all, [D, K, Dc]);
    } else {
      t = e.tensor(this.data, this.shape);
    }
    e.untrack(t);
    return t;
  }

  /**
   * A stable identity: "rq-" + the SHA-256 (hex) of the config (depths, K, Dc, shared, layer,
   * encoder) and the codebook bytes. Equal codebooks give equal identities on every machine; any
   * changed value or field gives another.
   */
  identity(): string {
    if (this.#identity) return this.#identity;
    const i = this.info;
    const config = JSON.stringify({
      format: CODEBOOKS_FORMAT,
      depths: i.depths,
      codebookSize: i.codebookSize,
      dim: i.dim,
      shared: i.shared,
      layer: i.layer,
      encoder: i.encoder,
    });
    const h = createHash("sha256");
    h.update(config + "\n");
    h.update(littleEndianBytes(this.data));
    this.#identity = `rq-${h.digest("hex")}`;
    return this.#identity;
  }

  /** Writes the codebooks file atomically (F32 tensor `codebooks` plus string metadata). */
  async save(path: string): Promise<void> {
    const i = this.info;
    await writeSafetensors(path, [{
      name: CODEBOOKS_TENSOR,
      dtype: "F32",
      shape: this.shape,
      data: this.data,
    }], {
      format: CODEBOOKS_FORMAT,
      version: "1",
      depths: String(i.depths),
      shared: String(i.shared),
      layer: i.layer === null ? "" : String(i.layer),
      encoder: i.encoder,
      identity: this.identity(),
    });
  }

  /**
   * Reads a codebooks file written by {@linkcode save} (or by hand: a tensor `codebooks` [D, K, Dc]
   * of F32/F16/BF16 with metadata `depths` and `shared`; `layer` and `encoder` are optional).
   * Errors name the file, the field and the fix.
   */
  static async load(path: string): Promise<Codebooks> {
    const f = await SafetensorsFile.open(path);
    try {
      if (!f.has(CODEBOOKS_TENSOR)) {
        throw new Error(
          `${path}: no tensor "${CODEBOOKS_TENSOR}" (found: ${
            f.names().join(", ") || "none"
          }); a codebooks ` +
            `file holds "${CODEBOOKS_TENSOR}" [D, K, Dc] (write one with \`deno task tokenizer fit\`)`,
        );
      }
      const t = f.info(CODEBOOKS_TENSOR);
      if (t.shape.length !== 3 || (t.dtype !== "F32" && t.dtype !== "F16" && t.dtype !== "BF16")) {
        throw new Error(
          `${path}: "${CODEBOOKS_TENSOR}" must be a float tensor [D, K, Dc], got ${t.dtype} [${t.shape}]`,
        );
      }
      const [books, K, Dc] = t.shape;
      const meta = f.metadata;
      const field = (k: string, fix: string): string => {
        const v = meta[k];
        if (v === undefined) throw new Error(`${path}: metadata "${k}" is missing; ${fix}`);
        return v;
      };
      const sharedText = field("shared", `set it to "true" (one codebook for all depths) or "false"`);
      if (sharedText !== "true" && sharedText !== "false") {
        throw new Error(
          `${path}: metadata "shared" is ${JSON.stringify(sharedText)}; it must be "true" or "false"`,
        );
      }
      const shared = sharedText === "true";
      const depthsText = field("depths", 'set it to the number of RQ depths, e.g. "8"');
      const depths = Number(depthsText);
      if (!/^\d+$/.test(depthsText) || depths < 1) {
        throw new Error(
          `${path}: metadata "depths" is ${JSON.stringify(depthsText)}; it must be an integer >= 1`,
        );
      }
      if (shared ? books !== 1 : books !== depths) {
        throw new Error(
          `${path}: "${CODEBOOKS_TENSOR}" is [${t.shape}] but the metadata says depths = ${depths}, shared = ` +
            `${shared}; the first dim must be ${shared ? 1 : depths}`,
        );
      }
      const layerText = meta.layer ?? "";
      let layer: number | "pixels" | null = null;
      if (layerText === "pixels") layer = "pixels";
      else if (/^\d+$/.test(layerText)) layer = Number(layerText);
      else if (layerText !== "") {
        throw new Error(
          `${path}: metadata "layer" is ${
            JSON.stringify(layerText)
          }; it must be a layer number, "pixels" or empty`,
        );
      }
      const data = await f.read(CODEBOOKS_TENSOR) as Float32Array;
      const bad = data.findIndex((v) => !Number.isFinite(v));
      if (bad >= 0) throw new Error(`${path}: "${CODEBOOKS_TENSOR}" holds ${data[bad]} at index ${bad}`);
      return Codebooks.create(data, {
        depths,
        codebookSize: K,
        dim: Dc,
        shared,
        layer,
        encoder: meta.encoder ?? "",
      });
    } finally {
      f.close();
    }
  }
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** The little-endian bytes of an f32 array (as stored in files on every machine). */
function littleEndianBytes(a: Float32Array): Uint8Array {
  if (LITTLE_ENDIAN) return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  const out = new Uint8Array(a.length * 4);
  const v = new DataView(out.buffer);
  for (let i = 0; i < a.length; i++) v.setFloat32(i * 4, a[i], true);
  return out;
}
