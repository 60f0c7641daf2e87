/**
 * Checks, before anything loads, that every file a run needs is there, and says how to get what is
 * missing: model folders (with the Hugging Face repositories of known checkpoints) and their safetensors
 * weights (a folder of PyTorch `.bin` weights only says how to convert them), codebooks, data files and
 * image folders, the tokenizer, the evaluation questions.
 * @module
 */

import { basename, dirname, join } from "node:path";
import type { RunConfig } from "./config.ts";
import { KNOWN_MODELS } from "./plan.ts";
import { pathExists } from "../io/path_exists.ts";
import { gpuVisionSlot, onnxEncoderSlot } from "../encoders/slot_config.ts";
import { tokenizerFile } from "../tokenizers/visual_config.ts";

/** One missing input: the config field, the path, and how to get it. */
export interface MissingInput {
  /** The config path of the field (`llm.path`, `train.stages[0].data`). */
  field: string;
  /** The file or folder that is missing. */
  path: string;
  /** What to do. */
  fix: string;
}

/** Every missing input of a run (empty when all are present). */
export async function missingInputs(cfg: RunConfig): Promise<MissingInput[]> {
  const out: MissingInput[] = [];
  const folder = async (field: string, path: string | undefined, what: string) => {
    if (!path) return;
    if (await pathExists(join(path, "config.json"))) {
      const fix = await weightsFix(path, field === "llm.path" ? "AutoModelForCausalLM" : "AutoModel");
      if (fix) out.push({ field, path, fix });
      return;
    }
    const known = KNOWN_MODELS[basename(path)];
    out.push({
      field,
      path,
      fix: known
        ? `download ${known.repo} from Hugging Face into ${path} (config.json, *.safetensors${
          field === "llm.path" ? ", tokenizer.json" : ""
        })`
        : `a Hugging Face ${what} folder with config.json and safetensors weights`,
    });
  };
  await folder("llm.path", cfg.llm.path, "LLM");
  const gpuEncoder = gpuVisionSlot(cfg.encoder), onnxEncoder = onnxEncoderSlot(cfg.encoder);
  if (gpuEncoder) await folder("encoder.path", gpuEncoder.path, "vision encoder");
  if (onnxEncoder && !await pathExists(onnxEncoder.path)) {
    out.push({ field: "encoder.path", path: onnxEncoder.path, fix: "an ONNX file of the vision encoder" });
  }
  for (const [i, t] of cfg.visualTokenizers.entries()) {
    const file = tokenizerFile(t, `visualTokenizers[${i}]`);
    if (!await pathExists(file.path)) out.push(file);
  }
  if (cfg.data.tokenizer && !await pathExists(join(cfg.data.tokenizer, "tokenizer.json"))) {
    out.push({ field: "data.tokenizer", path: cfg.data.tokenizer, fix: "a folder with tokenizer.json" });
  }
  for (const [i, s] of cfg.train.stages.entries()) {
    if (!await pathExists(s.data)) {
      out.push({
        field: `train.stages[${i}].data`,
        path: s.data,
        fix: "a LLaVA dataset file (.json array or .jsonl of {id, image, conversations})",
      });
    }
    const root = s.imageRoot ?? dirname(s.data);
    if (s.imageRoot && !await pathExists(root)) {
      out.push({
        field: `train.stages[${i}].imageRoot`,
        path: root,
        fix: "the folder the rows' image paths start from",
      });
    }
  }
  if (cfg.train.evalData && !await pathExists(cfg.train.evalData)) {
    out.push({
      field: "train.evalData",
      path: cfg.train.evalData,
      fix: "a questions file (eval/questions.ts format)",
    });
  }
  return out;
}

/** The weight files a model folder is read from: one file, or shards named by an index. */
const WEIGHTS = ["model.safetensors", "model.safetensors.index.json"];

/**
 * What to do when the model folder `path` (which has config.json) has no safetensors weights to load,
 * or null when it has them. `cls` is the transformers class that converts PyTorch weights.
 */
async function weightsFix(path: string, cls: string): Promise<string | null> {
  for (const f of WEIGHTS) if (await pathExists(join(path, f))) return null;
  const names: string[] = [];
  for await (const e of Deno.readDir(path)) if (!e.isDirectory) names.push(e.name);
  names.sort();
  const bins = names.filter((n) => /\.(bin|pt|pth)$/.test(n));
  const others = names.filter((n) => n.endsWith(".safetensors"));
  const list = (l: string[]) => l.slice(0, 3).join(", ") + (l.length > 3 ? `, ... (${l.length} files)` : "");
  if (others.length) {
    return `no ${WEIGHTS.join(" or ")}, but ${list(others)}: rename a single weights file to ` +
      `model.safetensors, or give the shards' model.safetensors.index.json`;
  }
  if (bins.length) {
    return `only PyTorch weights (${list(bins)}), which are not read: convert them to safetensors first, ` +
      `e.g. python -c "from transformers import ${cls}; ${cls}.from_pretrained('${path}')` +
      `.save_pretrained('${path}', safe_serialization=True)"`;
  }
  return `config.json but no weights: ${WEIGHTS.join(" or ")} (with its shards)`;
}

/** The missing inputs as a message naming each field, path and fix. */
export function formatMissing(missing: MissingInput[]): string {
  return [
    `${missing.length} input${
      missing.length === 1 ? " is" : "s are"
    } missing (set them with --set or the run file):`,
    ...missing.map((m) => `  ${m.field} = ${m.path}\n      ${m.fix}`),
  ].join("\n");
}
