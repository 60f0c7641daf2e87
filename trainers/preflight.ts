/**
 * Checks, before anything loads, that every file a run needs is there, and says how to get what is
 * missing: model folders (with the Hugging Face repositories of known checkpoints), codebooks, data
 * files and image folders, the tokenizer, the evaluation questions.
 * @module
 */

import { basename, dirname, join } from "node:path";
import type { RunConfig } from "./config.ts";
import { KNOWN_MODELS } from "./plan.ts";
import { pathExists } from "../io/path_exists.ts";

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
    if (!path || await pathExists(join(path, "config.json"))) return;
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
  if (cfg.encoder.kind !== "onnx") await folder("encoder.path", cfg.encoder.path, "vision encoder");
  else if (!await pathExists(cfg.encoder.path)) {
    out.push({ field: "encoder.path", path: cfg.encoder.path, fix: "an ONNX file of the vision encoder" });
  }
  for (const [i, t] of cfg.visualTokenizers.entries()) {
    const path = t.kind === "rq" ? t.codebooks : t.model;
    if (await pathExists(path)) continue;
    out.push({
      field: `visualTokenizers[${i}].${t.kind === "rq" ? "codebooks" : "model"}`,
      path,
      fix: t.kind === "rq"
        ? `fit codebooks with \`deno task tokenizer fit\` (residual k-means on the encoder's features) or give a safetensors file with tensor "codebooks" [D, K, Dc]`
        : "an ONNX file of the visual tokenizer",
    });
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

/** The missing inputs as a message naming each field, path and fix. */
export function formatMissing(missing: MissingInput[]): string {
  return [
    `${missing.length} input${
      missing.length === 1 ? " is" : "s are"
    } missing (set them with --set or the run file):`,
    ...missing.map((m) => `  ${m.field} = ${m.path}\n      ${m.fix}`),
  ].join("\n");
}
