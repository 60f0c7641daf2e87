/**
 * Exporting a trained model as one Hugging Face folder in LLaVA's layout, for PyTorch code:
 *
 * - `config.json`: the LLM's Hugging Face config (its own `model_type`, so transformers'
 *   `AutoModelForCausalLM` loads the language model alone), plus LLaVA's multimodal keys
 *   (`mm_projector_type`, `mm_hidden_size`, `mm_vision_tower`, `mm_vision_select_layer`,
 *   `mm_vision_select_feature`, ...) and an `asvr` block with the visual head and tokenizers' configs;
 * - the weights under LLaVA's names: the LLM's own, `model.mm_projector.*`,
 *   `model.vision_tower.vision_tower.*` (a GPU encoder) and `visual_head.*`, in shards of at most
 *   5 GB with `model.safetensors.index.json` beyond that, as transformers writes them;
 * - LoRA adapters merged into the LLM's weights first (W += (alpha / r) B A), so no PEFT is needed.
 *
 * The stored dtype defaults to the one the LLM's folder was stored in (BF16 for Vicuna: a bf16
 * checkpoint goes back out as bf16), else the parameters' own.
 * @module
 */

import { join } from "node:path";
import { Checkpoint } from "../io/safetensors.ts";
import { type LoadProgress, writeHfFolder } from "../io/params.ts";
import { llmConfigToHf } from "../backbones/config.ts";
import { mergeLora } from "../backbones/lora.ts";
import { gpuVisionSlot } from "../encoders/slot_config.ts";
import type { AsvrModel } from "./asvr_model.ts";

/** The dtypes an export stores. */
export type ExportDType = "F32" | "F16" | "BF16";

/** Options of {@linkcode exportModel}. */
export interface ExportOptions {
  /** Stored dtype (default: {@linkcode sourceDType} of the model). */
  dtype?: ExportDType;
  /** Largest weight file in bytes (default 5 GB, transformers' default shard size). */
  maxShardBytes?: number;
  /** Called as each tensor is read back for writing. */
  onProgress?: (p: LoadProgress) => void;
}

/** What {@linkcode exportModel} wrote. */
export interface ExportResult {
  /** The stored dtype. */
  dtype: ExportDType;
  /** Parameters written (after merging LoRA). */
  params: number;
  /** Whether LoRA adapters were merged into the LLM. */
  mergedLora: boolean;
}

/** transformers' default shard size. */
const DEFAULT_SHARD_BYTES = 5e9;

/**
 * The dtype the model's LLM came in: its folder's first floating-point tensor's (BF16 for most
 * released LLaMAs), or F32/F16 after the parameters when it was randomly initialized.
 */
export async function sourceDType(model: AsvrModel): Promise<ExportDType> {
  const own: ExportDType = model.dtype === "f16" ? "F16" : "F32";
  const path = model.cfg.llm.path;
  if (path === undefined) return own;
  const ckpt = await Checkpoint.open(path);
  try {
    for (const name of ckpt.names()) {
      const d = ckpt.info(name).dtype;
      if (d === "BF16" || d === "F16" || d === "F32") return d;
    }
    return own;
  } finally {
    ckpt.close();
  }
}

/**
 * Writes `model` to `dir` as described in the module doc. LoRA adapters are merged into the LLM (the
 * model keeps the merged weights and drops the adapters, which are freed). Weights are read from the
 * GPU one tensor at a time.
 */
export async function exportModel(
  model: AsvrModel,
  dir: string,
  opts: ExportOptions = {},
): Promise<ExportResult> {
  const dtype = opts.dtype ?? await sourceDType(model);
  const adapters = model.llm.lora;
  if (adapters) {
    await mergeLora(model.llm);
    adapters.dispose();
  }
  const params = model.params();
  await writeHfFolder(dir, exportConfig(model), params, {
    dtype,
    maxShardBytes: opts.maxShardBytes ?? DEFAULT_SHARD_BYTES,
    onProgress: opts.onProgress,
  });
  return {
    dtype,
    params: [...params.values()].reduce((s, t) => s + t.size, 0),
    mergedLora: adapters !== null,
  };
}

/** The folder's config.json: the LLM's HF config, LLaVA's multimodal keys, the ASVR parts. */
export function exportConfig(model: AsvrModel): Record<string, unknown> {
  const c = model.cfg;
  const enc = c.encoder;
  const gpu = gpuVisionSlot(enc); // null: an ONNX encoder
  return {
    ...llmConfigToHf(model.llm.cfg),
    mm_projector_type: c.projector.kind,
    mm_hidden_size: model.projector.cfg.inDim,
    mm_vision_tower: enc.path ?? `${enc.kind} (random init)`,
    mm_vision_select_layer: gpu ? gpu.layer : null,
    mm_vision_select_feature: gpu?.keepCls ? "cls_patch" : "patch",
    mm_use_im_start_end: false,
    mm_use_im_patch_token: false,
    image_aspect_ratio: "pad",
    asvr: {
      head: c.head,
      visualTokenizers: c.visualTokenizers,
      loss: c.loss,
      weights:
        "LLM under its own names; model.mm_projector.*, model.vision_tower.vision_tower.*, visual_head.*",
    },
  };
}

/** The tokenizer files a Hugging Face folder carries, copied from `from` into `to` when present. */
export async function copyTokenizerFiles(from: string, to: string): Promise<string[]> {
  const copied: string[] = [];
  for (const f of ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model"]) {
    try {
      await Deno.copyFile(join(from, f), join(to, f));
      copied.push(f);
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    }
  }
  return copied;
}
