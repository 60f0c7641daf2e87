/**
 * `deno task tokenizer`: visual tokenizer tools.
 * - `fit`: fits RQ codebooks by residual k-means (GPU) on a features matrix [n, Dc] read from a
 *   safetensors file, printing one line per iteration, and saves them atomically;
 * - `info`: prints a codebooks file's sizes, provenance and identity (the key of its target caches).
 *
 * ```sh
 * deno task tokenizer fit --features feats.safetensors --depths 8 --codebook-size 16384 --out semantic.safetensors
 * deno task tokenizer info semantic.safetensors
 * ```
 * @module
 */

import { parseArgs } from "node:util";
import { dirname } from "node:path";
import { NoAdapterError } from "../core/device.ts";
import { Engine } from "../core/engine.ts";
import { SafetensorsFile } from "../io/safetensors.ts";
import { Codebooks } from "../tokenizers/codebooks.ts";
import { fitResidualKMeans } from "../tokenizers/fit_codebooks.ts";
import { MAX_U16_CODES } from "../tokenizers/target_cache.ts";

const HELP = `usage: deno task tokenizer <command> [flags]

commands:
  fit    fit RQ codebooks (residual k-means on the GPU) on a features matrix
  info   print a codebooks file's sizes, provenance and identity: deno task tokenizer info <file>

fit flags:
  --features <file.safetensors>  (required) features [n, Dc] (or [..., Dc]), e.g. a frozen encoder's
                                 layer-26 outputs, as F32/F16/BF16
  --tensor <name>                the tensor in that file (default "features")
  --depths <D>                   (required) RQ depths, e.g. 8
  --codebook-size <K>            (required) codes per depth, e.g. 16384 (at most ${MAX_U16_CODES})
  --iters <n>                    Lloyd iterations per depth (default 10)
  --seed <n>                     seed of the sampling and of k-means++ (default 0)
  --sample-limit <n>             most rows used, a seeded sample (default 64 * K, capped by the GPU)
  --layer <n|pixels>             provenance: the encoder layer of the features
                                 (default: the features file's metadata "layer")
  --encoder <id>                 provenance: the encoder's name or path
                                 (default: the features file's metadata "encoder")
  --out <file.safetensors>       (required) where to write the codebooks (atomically)

Features come from a safetensors file for now; streaming a dataset's images through the encoder
arrives with the data pipeline.`;

/** A usage error: printed with a pointer to --help, exit status 2. */
class UsageError extends Error {}

function positiveInt(flag: string, v: string | undefined, min: number, fallback?: number): number {
  if (v === undefined) {
    if (fallback !== undefined) return fallback;
    throw new UsageError(
      `--${flag} is required: pass an integer >= ${min}, e.g. --${flag} ${min === 0 ? 0 : 8}`,
    );
  }
  const n = Number(v);
  if (!/^\d+$/.test(v) || !Number.isSafeInteger(n) || n < min) {
    throw new UsageError(`--${flag} must be an integer >= ${min}, got "${v}"`);
  }
  return n;
}

function parseLayer(v: string | undefined, flag: string): number | "pixels" | null {
  if (v === undefined || v === "") return null;
  if (v === "pixels") return "pixels";
  if (/^\d+$/.test(v)) return Number(v);
  throw new UsageError(`${flag} must be a layer number or "pixels", got "${v}"`);
}

async function openEngine(): Promise<Engine> {
  try {
    return await Engine.create();
  } catch (err) {
    if (err instanceof NoAdapterError) {
      console.error(err.message);
      Deno.exit(1);
    }
    throw err;
  }
}

async function fit(args: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      features: { type: "string" },
      tensor: { type: "string", default: "features" },
      depths: { type: "string" },
      "codebook-size": { type: "string" },
      iters: { type: "string" },
      seed: { type: "string" },
      "sample-limit": { type: "string" },
      layer: { type: "string" },
      encoder: { type: "string" },
      out: { type: "string" },
    },
  });
  if (positionals.length) {
    throw new UsageError(
      `fit takes flags only, got "${positionals[0]}"; the features file goes in --features`,
    );
  }
  if (!values.features) {
    throw new UsageError(
      "--features is required: the safetensors file holding the features [n, Dc], e.g. --features feats.safetensors",
    );
  }
  if (!values.out) {
    throw new UsageError("--out is required: where to write the codebooks, e.g. --out codebooks.safetensors");
  }
  const depths = positiveInt("depths", values.depths, 1);
  const K = positiveInt("codebook-size", values["codebook-size"], 1);
  if (K > MAX_U16_CODES) {
    throw new UsageError(
      `--codebook-size ${K} is over ${MAX_U16_CODES}: targets are stored as u16; use at most ${MAX_U16_CODES}`,
    );
  }
  const iters = positiveInt("iters", values.iters, 0, 10);
  const seed = positiveInt("seed", values.seed, 0, 0);
  const sampleLimit = values["sample-limit"] === undefined
    ? undefined
    : positiveInt("sample-limit", values["sample-limit"], 1);

  const file = await SafetensorsFile.open(values.features);
  let features: Float32Array, Dc: number, meta: Record<string, string>;
  try {
    if (!file.has(values.tensor)) {
      throw new UsageError(
        `${values.features} has no tensor "${values.tensor}" (it holds: ${
          file.names().join(", ") || "none"
        }); ` +
          `choose one with --tensor`,
      );
    }
    const info = file.info(values.tensor);
    if (info.shape.length < 2 || !["F32", "F16", "BF16", "F64"].includes(info.dtype)) {
      throw new UsageError(
        `${values.features}: tensor "${values.tensor}" is ${info.dtype} [${info.shape}]; fit needs float features [n, Dc]`,
      );
    }
    Dc = info.shape[info.shape.length - 1];
    features = await file.read(values.tensor) as Float32Array;
    meta = file.metadata;
  } finally {
    file.close();
  }
  const layer = parseLayer(
    values.layer ?? meta.layer,
    values.layer === undefined ? `${values.features} metadata "layer"` : "--layer",
  );
  const encoder = values.encoder ?? meta.encoder ?? "";

  const e = await openEngine();
  console.log(`adapter: ${e.info.description}`);
  console.log(
    `fitting ${depths} x ${K} codes of width ${Dc} on ${features.length / Dc} rows of ${values.features}` +
      ` (${iters} iterations per depth, seed ${seed})`,
  );
  const t0 = performance.now();
  const data = await fitResidualKMeans(e, features, {
    depths,
    K,
    Dc,
    iters,
    seed,
    sampleLimit,
    onProgress: (p) => {
      const it = p.iteration === p.iterations
        ? "final"
        : `iter ${String(p.iteration + 1).padStart(3)}/${p.iterations}`;
      console.log(
        `depth ${p.depth + 1}/${p.depths}  ${it.padEnd(12)} mse ${
          p.mse.toExponential(4)
        }  dead ${p.deadCodes}  ` +
          `rows ${p.rows}  ${((performance.now() - t0) / 1000).toFixed(1)}s`,
      );
    },
  });
  e.destroy();
  const cb = Codebooks.create(data, { depths, codebookSize: K, dim: Dc, shared: false, layer, encoder });
  await Deno.mkdir(dirname(values.out), { recursive: true });
  await cb.save(values.out);
  console.log(`wrote ${values.out}: codebooks [${cb.shape}], identity ${cb.identity()}`);
}

async function info(args: string[]): Promise<void> {
  const { positionals } = parseArgs({ args, allowPositionals: true, options: {} });
  if (positionals.length !== 1) {
    throw new UsageError("info needs one codebooks file: deno task tokenizer info <file>");
  }
  const cb = await Codebooks.load(positionals[0]);
  const i = cb.info;
  console.log(
    `${positionals[0]}: codebooks [${cb.shape}] (${
      i.shared ? "one shared by" : "one per"
    } ${i.depths} depths)`,
  );
  console.log(`  layer: ${i.layer ?? "unknown"}  encoder: ${i.encoder || "unknown"}`);
  console.log(`  identity: ${cb.identity()}`);
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  if (command === undefined || command === "--help" || command === "-h" || command === "help") {
    console.log(HELP);
    return;
  }
  if (rest.includes("--help") || rest.includes("-h")) {
    console.log(HELP);
    return;
  }
  switch (command) {
    case "fit":
      return await fit(rest);
    case "info":
      return await info(rest);
    default:
      throw new UsageError(`unknown command "${command}"; use fit or info`);
  }
}

try {
  await main(Deno.args);
} catch (err) {
  const code = (err as { code?: string }).code;
  if (err instanceof UsageError || (typeof code === "string" && code.startsWith("ERR_PARSE_ARGS"))) {
    console.error(`tokenizer: ${(err as Error).message} (see: deno task tokenizer --help)`);
    Deno.exit(2);
  }
  console.error(`tokenizer: ${(err as Error).message}`);
  Deno.exit(1);
}
