/**
 * `deno task tokenizer`: visual tokenizer tools.
 * - `fit <run.ts>`: fits the RQ codebooks a run config names (`visualTokenizers`), on features of the
 *   run's own images: one stage's data file, each distinct image decoded and preprocessed as training
 *   does, streamed in batches through the tokenizer's encoder on the GPU (its `layer` is a
 *   `hidden_states` index, as the trainer uses it; "pixels": raw patches), a seeded sample of the rows
 *   kept, then residual k-means (GPU); writes the tokenizer's `codebooks` file atomically;
 * - `fit --features`: the same fit on a features matrix [n, Dc] read from a safetensors file;
 * - `info`: prints a codebooks file's sizes, provenance and identity (the key of its target caches).
 *
 * Both fits print one line per k-means iteration and save the codebooks with their provenance (layer,
 * encoder).
 *
 * ```sh
 * deno task tokenizer fit examples/asvr_vicuna7b.ts --tokenizer semantic --max-images 20000
 * deno task tokenizer fit --features feats.safetensors --depths 8 --codebook-size 16384 --out semantic.safetensors
 * deno task tokenizer info semantic.safetensors
 * ```
 * @module
 */

import { parseArgs } from "node:util";
import { dirname, join } from "node:path";
import { NoAdapterError } from "../core/device.ts";
import { Engine } from "../core/engine.ts";
import { rng } from "../core/random.ts";
import { readLlavaRows } from "../data/llava_json.ts";
import { type VisionConfig, visionConfigFromHf } from "../encoders/config.ts";
import { gpuVisionSlot } from "../encoders/slot_config.ts";
import { VisionEncoder } from "../encoders/vit.ts";
import { readJsonFile } from "../io/json.ts";
import { pathExists } from "../io/path_exists.ts";
import { SafetensorsFile } from "../io/safetensors.ts";
import type { RunConfig } from "../trainers/config.ts";
import { loadRunFile } from "../trainers/run_file.ts";
import { encoderInput } from "../trainers/stage_data.ts";
import { Codebooks } from "../tokenizers/codebooks.ts";
import { defaultSampleLimit, type FitProgress, fitResidualKMeans } from "../tokenizers/fit_codebooks.ts";
import { imageFeatures, imageFeatureWidth, preprocessedImages } from "../data/image_features.ts";
import { MAX_U16_CODES } from "../tokenizers/target_cache.ts";
import { isRqTokenizer, type RqTokenizerConfig } from "../tokenizers/visual_config.ts";

const HELP = `usage: deno task tokenizer <command> [flags]

commands:
  fit    fit RQ codebooks (residual k-means on the GPU):
           deno task tokenizer fit <run.ts> [flags]             on the run's own images
           deno task tokenizer fit --features <file> [flags]    on a features matrix
  info   print a codebooks file's sizes, provenance and identity: deno task tokenizer info <file>

fit <run.ts> flags (the tokenizer's config gives depths, codebook size, layer and encoder):
  --tokenizer <name>             which of the run's visualTokenizers (an rq one) to fit
                                 (default: the only rq tokenizer whose codebooks file is missing)
  --stage <n>                    the training stage whose data file gives the images, 1-based (default 1)
  --max-images <n>               encode at most n distinct images, a seeded choice (default: all)
  --batch <n>                    images per encoder forward (default 32)
  --iters <n>                    Lloyd iterations per depth (default 10)
  --seed <n>                     seed of the image choice, the row sample and k-means++ (default 0)
  --sample-limit <n>             most feature rows kept, a seeded sample (default 64 * K, capped by the GPU)
  --set <key=value>              override a run config key (repeatable), as deno task train does
  --out <file.safetensors>       where to write the codebooks (default: the tokenizer's codebooks path)

  Images are the stage's rows' images (relative to its imageRoot, default the data file's folder),
  each distinct one once, text-only rows skipped, preprocessed as training does (the stage's imageMode).
  An unreadable image stops the fit, or with data.onError "skip" is reported and skipped.

fit --features flags:
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
  --out <file.safetensors>       (required) where to write the codebooks (atomically)`;

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

/** The flags of `fit`, both forms. */
const FIT_OPTIONS = {
  features: { type: "string" },
  tensor: { type: "string" },
  depths: { type: "string" },
  "codebook-size": { type: "string" },
  layer: { type: "string" },
  encoder: { type: "string" },
  tokenizer: { type: "string" },
  stage: { type: "string" },
  "max-images": { type: "string" },
  batch: { type: "string" },
  set: { type: "string", multiple: true },
  iters: { type: "string" },
  seed: { type: "string" },
  "sample-limit": { type: "string" },
  out: { type: "string" },
} as const;

type FitValues = ReturnType<typeof parseFitArgs>["values"];

function parseFitArgs(args: string[]) {
  return parseArgs({ args, allowPositionals: true, options: FIT_OPTIONS });
}

/** Flags that belong to one form only. */
const FEATURES_ONLY = ["features", "tensor", "depths", "codebook-size", "layer", "encoder"] as const;
const RUN_ONLY = ["tokenizer", "stage", "max-images", "batch", "set"] as const;

async function fit(args: string[]): Promise<void> {
  const { values, positionals } = parseFitArgs(args);
  if (positionals.length > 1) {
    throw new UsageError(
      `fit takes one run file, got ${positionals.map((p) => `"${p}"`).join(", ")}; ` +
        `deno task tokenizer fit <run.ts> [flags]`,
    );
  }
  if (positionals.length === 1) {
    for (const flag of FEATURES_ONLY) {
      if (values[flag] !== undefined) {
        throw new UsageError(
          `--${flag} belongs to the --features form; with a run file the tokenizer's config sets it ` +
            `(change it there or with --set visualTokenizers[i].<field>=...)`,
        );
      }
    }
    return await fitRun(positionals[0], values);
  }
  for (const flag of RUN_ONLY) {
    if (values[flag] !== undefined) {
      throw new UsageError(`--${flag} needs a run file: deno task tokenizer fit <run.ts> --${flag} ...`);
    }
  }
  return await fitFeatures(values);
}

/** The options shared by both forms: iterations, seed and sample limit. */
function fitFlags(values: FitValues): { iters: number; seed: number; sampleLimit: number | undefined } {
  return {
    iters: positiveInt("iters", values.iters, 0, 10),
    seed: positiveInt("seed", values.seed, 0, 0),
    sampleLimit: values["sample-limit"] === undefined
      ? undefined
      : positiveInt("sample-limit", values["sample-limit"], 1),
  };
}

/** One line per k-means iteration, timed from `t0`. */
function printFitProgress(t0: number): (p: FitProgress) => void {
  return (p) => {
    const it = p.iteration === p.iterations
      ? "final"
      : `iter ${String(p.iteration + 1).padStart(3)}/${p.iterations}`;
    console.log(
      `depth ${p.depth + 1}/${p.depths}  ${it.padEnd(12)} mse ${
        p.mse.toExponential(4)
      }  dead ${p.deadCodes}  ` +
        `rows ${p.rows}  ${((performance.now() - t0) / 1000).toFixed(1)}s`,
    );
  };
}

async function saveCodebooks(cb: Codebooks, out: string): Promise<void> {
  await Deno.mkdir(dirname(out), { recursive: true });
  await cb.save(out); // atomic: a temp file renamed over `out`
  console.log(`wrote ${out}: codebooks [${cb.shape}], identity ${cb.identity()}`);
}

async function fitFeatures(values: FitValues): Promise<void> {
  if (!values.features) {
    throw new UsageError(
      "--features is required: the safetensors file holding the features [n, Dc], e.g. --features feats.safetensors " +
        "(or fit on a run's images: deno task tokenizer fit <run.ts>)",
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
  const { iters, seed, sampleLimit } = fitFlags(values);
  const tensor = values.tensor ?? "features";

  const file = await SafetensorsFile.open(values.features);
  let features: Float32Array, Dc: number, meta: Record<string, string>;
  try {
    if (!file.has(tensor)) {
      throw new UsageError(
        `${values.features} has no tensor "${tensor}" (it holds: ${file.names().join(", ") || "none"}); ` +
          `choose one with --tensor`,
      );
    }
    const info = file.info(tensor);
    if (info.shape.length < 2 || !["F32", "F16", "BF16", "F64"].includes(info.dtype)) {
      throw new UsageError(
        `${values.features}: tensor "${tensor}" is ${info.dtype} [${info.shape}]; fit needs float features [n, Dc]`,
      );
    }
    Dc = info.shape[info.shape.length - 1];
    features = await file.read(tensor) as Float32Array;
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
  const data = await fitResidualKMeans(e, features, {
    depths,
    K,
    Dc,
    iters,
    seed,
    sampleLimit,
    onProgress: printFitProgress(performance.now()),
  });
  await e.close();
  await saveCodebooks(
    Codebooks.create(data, { depths, codebookSize: K, dim: Dc, shared: false, layer, encoder }),
    values.out,
  );
}

/** The rq tokenizer to fit: `--tokenizer`, or the only one whose codebooks file is missing. */
async function chooseTokenizer(
  cfg: RunConfig,
  file: string,
  name: string | undefined,
): Promise<{ t: RqTokenizerConfig; at: string }> {
  const all = cfg.visualTokenizers;
  if (all.length === 0) {
    throw new Error(`${file}: the run has no visualTokenizers, so there are no codebooks to fit`);
  }
  const listing = all.map((t) => `${t.name} (${t.kind})`).join(", ");
  if (name !== undefined) {
    const i = all.findIndex((t) => t.name === name);
    if (i < 0) {
      throw new UsageError(
        `--tokenizer "${name}": ${file} has no visual tokenizer of that name; its tokenizers: ${listing}`,
      );
    }
    const t = all[i];
    if (!isRqTokenizer(t)) {
      throw new Error(
        `visualTokenizers[${i}] "${t.name}" is an onnx tokenizer (${t.model}): it has no codebooks to fit; ` +
          `pass --tokenizer with an rq tokenizer's name`,
      );
    }
    return { t, at: `visualTokenizers[${i}]` };
  }
  const rq = all.flatMap((t, i) => (isRqTokenizer(t) ? [{ t, at: `visualTokenizers[${i}]` }] : []));
  if (rq.length === 0) {
    throw new Error(
      `${file}: the run's visual tokenizers (${listing}) are all onnx; none has codebooks to fit`,
    );
  }
  const missing = [];
  for (const r of rq) if (!await pathExists(r.t.codebooks)) missing.push(r);
  if (missing.length === 1) return missing[0];
  if (missing.length === 0) {
    throw new UsageError(
      `every rq tokenizer's codebooks file exists (${
        rq.map((r) => `${r.t.name}: ${r.t.codebooks}`).join(", ")
      }); ` +
        `pass --tokenizer <name> to fit one again`,
    );
  }
  throw new UsageError(
    `the codebooks of several rq tokenizers are missing (${missing.map((r) => r.t.name).join(", ")}); ` +
      `pass --tokenizer <name> to choose one`,
  );
}

/** An encoder folder's config (no weights read); `field` names the config field that gave the path. */
async function folderConfig(path: string, field: string): Promise<VisionConfig> {
  const json = join(path, "config.json");
  if (!await pathExists(json)) {
    throw new Error(
      `${field} = ${path}: no encoder folder there (config.json missing); give a Hugging Face SigLIP or CLIP ` +
        `folder (config.json + safetensors)`,
    );
  }
  return visionConfigFromHf(await readJsonFile(json, "a vision encoder's config.json"), json);
}

/** The run's own encoder: its config (for the preprocessing) and its folder (null: a random init). */
async function runEncoder(cfg: RunConfig): Promise<{ vc: VisionConfig; path: string | null }> {
  const enc = gpuVisionSlot(cfg.encoder);
  if (!enc) {
    throw new Error(
      `encoder is an ONNX encoder (${cfg.encoder.path}): fitting on a run's images needs a GPU vision encoder ` +
        `(siglip or clip), as training on images does; use the --features form with features computed elsewhere`,
    );
  }
  if (enc.path !== undefined) {
    const vc = await folderConfig(enc.path, "encoder.path");
    if (vc.arch !== enc.kind) {
      throw new Error(
        `encoder.kind is "${enc.kind}" but ${enc.path} holds a ${vc.arch} encoder; set encoder.kind to "${vc.arch}"`,
      );
    }
    return { vc, path: enc.path };
  }
  return { vc: { arch: enc.kind, ...enc.config! }, path: null };
}

/** `n` of `paths` chosen with `seed`, in their original order. */
function chooseImages(paths: string[], n: number, seed: number): string[] {
  if (n >= paths.length) return paths;
  const idx = Int32Array.from(paths.keys());
  const r = rng((seed >>> 0) ^ 0x2545f491);
  for (let i = 0; i < n; i++) {
    const j = i + Math.floor(r() * (idx.length - i));
    [idx[i], idx[j]] = [idx[j], idx[i]];
  }
  return Array.from(idx.subarray(0, n)).sort((a, b) => a - b).map((i) => paths[i]);
}

async function fitRun(file: string, values: FitValues): Promise<void> {
  const { iters, seed, sampleLimit } = fitFlags(values);
  const batch = positiveInt("batch", values.batch, 1, 32);
  const stageNo = positiveInt("stage", values.stage, 1, 1);
  const maxImages = values["max-images"] === undefined
    ? Infinity
    : positiveInt("max-images", values["max-images"], 1);

  const cfg = await loadRunFile(file, values.set ?? [], { build: true });
  const { t, at } = await chooseTokenizer(cfg, file, values.tokenizer);
  if (t.sharedCodebook) {
    throw new Error(
      `${at}.sharedCodebook is true, but fit fits one codebook per depth (residual k-means); ` +
        `set it to false, or bring a shared codebook file of your own`,
    );
  }
  const stages = cfg.train.stages;
  if (stageNo > stages.length) {
    throw new UsageError(
      `--stage ${stageNo}: the run has ${stages.length} stage${stages.length === 1 ? "" : "s"} ` +
        `(${stages.map((s, i) => `${i + 1}: ${s.name}`).join(", ")}); use 1..${stages.length}`,
    );
  }
  const si = stageNo - 1, stage = stages[si];
  if (!await pathExists(stage.data)) {
    throw new Error(
      `train.stages[${si}].data = ${stage.data}: data file not found; give the stage's LLaVA data file ` +
        `(in the run file, or --set train.stages[${si}].data=<file>)`,
    );
  }
  const root = stage.imageRoot ?? dirname(stage.data);
  if (!await pathExists(root)) {
    throw new Error(
      `train.stages[${si}].imageRoot = ${root}: folder not found; give the folder the rows' image paths start from`,
    );
  }

  // The encoder whose features the tokenizer quantizes, and the run's own (which decides preprocessing).
  const run = await runEncoder(cfg);
  const own = t.encoder === "input" ? null : t.encoder;
  const tokVc = own === null ? run.vc : await folderConfig(own, `${at}.encoder`);
  const tokPath = own ?? run.path;
  if (tokVc.imageSize !== run.vc.imageSize || tokVc.patchSize !== run.vc.patchSize) {
    throw new Error(
      `${at}.encoder ${own} takes ${tokVc.imageSize} px images in ${tokVc.patchSize} px patches, but the run's ` +
        `encoder takes ${run.vc.imageSize} px in ${run.vc.patchSize} px; both must see the same images and patches`,
    );
  }
  if (typeof t.layer === "number") {
    if (tokPath === null) {
      throw new Error(
        `${at}.encoder is "input" but the run's encoder has no path (a random init from encoder.config); ` +
          `codebooks must be fit on the trained encoder's features: set encoder.path to its folder`,
      );
    }
    if (t.layer > tokVc.numLayers) {
      throw new Error(
        `${at}.layer is ${t.layer} but the encoder at ${tokPath} has ${tokVc.numLayers} layers; ` +
          `use a hidden_states index in [0, ${tokVc.numLayers}]`,
      );
    }
  }
  const numPatches = Math.floor(run.vc.imageSize / run.vc.patchSize) ** 2;
  const { image } = encoderInput(cfg, { cfg: run.vc, numPatches }, stage.imageMode, `stage ${stage.name}`);
  if (image.size !== tokVc.imageSize) {
    throw new Error(
      `data.imageSize is ${cfg.data.imageSize} but the encoder takes ${tokVc.imageSize} px images; ` +
        `set data.imageSize to ${tokVc.imageSize} or leave it null`,
    );
  }

  // The images: each distinct one of the stage's rows once.
  const { rows, skipped: badRows } = await readLlavaRows(stage.data, { onError: cfg.data.onError });
  const seen = new Set<string>();
  let textOnly = 0;
  for (const row of rows) {
    if (row.image) seen.add(join(root, row.image));
    else textOnly++;
  }
  const distinct = [...seen];
  if (distinct.length === 0) {
    throw new Error(`${stage.data}: no row has an image (${rows.length} rows); fit needs images`);
  }
  const paths = chooseImages(distinct, maxImages, seed);
  console.log(
    `${stage.data}: ${rows.length} rows, ${distinct.length} distinct images, ${textOnly} text-only row${
      textOnly === 1 ? "" : "s"
    }` +
      (badRows.length ? `, ${badRows.length} bad rows skipped` : "") +
      (paths.length < distinct.length
        ? `; encoding ${paths.length} of them (--max-images, seed ${seed})`
        : ""),
  );

  const e = await openEngine();
  console.log(`adapter: ${e.info.description}`);
  const enc = typeof t.layer === "number" ? await VisionEncoder.load(e, tokPath!) : null;
  enc?.freeze();
  const Dc = imageFeatureWidth(tokVc, t.layer);
  const K = t.codebookSize;
  const limit = sampleLimit ?? defaultSampleLimit(e, K, Dc);
  console.log(
    `tokenizer "${t.name}": ${t.layer === "pixels" ? "patch pixels" : `layer ${t.layer} of ${tokPath}`}, ` +
      `rows of width ${Dc}; fitting ${t.depths} x ${K} codes on a sample of at most ${limit} rows ` +
      `(${iters} iterations per depth, seed ${seed})`,
  );

  // The images stream through the encoder into the fit, which samples the rows as they come.
  let unreadable = 0;
  const total = paths.length;
  let last = { images: 0, rows: 0, seconds: 0 }, lastPrint = -Infinity, printed = -1;
  const line = () =>
    `images ${last.images}/${total}  rows ${last.rows}  ` +
    `${(last.images / Math.max(last.seconds, 1e-9)).toFixed(1)} images/s` +
    (unreadable ? `  skipped ${unreadable}` : "");
  const workers = Math.max(1, Math.min(4, (navigator.hardwareConcurrency ?? 2) - 1));
  const images = preprocessedImages(paths, image, {
    onError: cfg.data.onError,
    onSkip: (_path, reason) => {
      unreadable++;
      console.log(`warning: skipped an unreadable image: ${reason}`);
    },
    lookahead: Math.max(64, 2 * batch),
    workers,
  });
  const features = imageFeatures(e, enc ?? tokVc, images, {
    layer: t.layer,
    batch,
    onProgress: (p) => {
      last = p;
      if (p.seconds - lastPrint < 2) return;
      lastPrint = p.seconds;
      printed = p.images;
      console.log(line());
    },
  });
  /** The features, then the last progress line and the encoder freed, before k-means starts. */
  async function* streamed(): AsyncGenerator<Float32Array, void, undefined> {
    try {
      yield* features;
      if (printed !== last.images) console.log(line());
    } finally {
      if (enc) { for (const p of enc.params().values()) p.dispose(); }
    }
  }

  const out = values.out ?? t.codebooks;
  const data = await fitResidualKMeans(e, streamed(), {
    depths: t.depths,
    K,
    Dc,
    iters,
    seed,
    sampleLimit: limit,
    onProgress: printFitProgress(performance.now()),
  });
  await e.close();
  await saveCodebooks(
    Codebooks.create(data, {
      depths: t.depths,
      codebookSize: K,
      dim: Dc,
      shared: false,
      layer: t.layer,
      encoder: t.layer === "pixels" ? "pixels" : tokPath!,
    }),
    out,
  );
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
