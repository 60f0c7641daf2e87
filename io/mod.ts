/**
 * Weights I/O: safetensors files and (sharded) checkpoints, loading them into engine params,
 * saving params, Hugging Face model folders, and JSON files with clear errors.
 *
 * ```ts ignore
 * import { Checkpoint, loadParams, saveParams } from "@asvr/asvr/io";
 * const ckpt = await Checkpoint.open("models/vicuna-7b");
 * await loadParams(params, ckpt, { prefix: "model." });
 * ckpt.close();
 * await saveParams("runs/last.safetensors", params, { dtype: "BF16" });
 * ```
 * @module
 */

export {
  Checkpoint,
  closeNames,
  isSafeFloat,
  type SafeData,
  type SafeDType,
  safeDTypeBytes,
  type SafeTensorInput,
  SafetensorsFile,
  type ShardOptions,
  type TensorInfo,
  writeSafetensors,
  writeShardedSafetensors,
  writeTextAtomic,
} from "./safetensors.ts";
export {
  globMatcher,
  type HfFolderOptions,
  loadParams,
  type LoadParamsOptions,
  type LoadProgress,
  saveParams,
  type SaveParamsOptions,
  writeHfFolder,
} from "./params.ts";
export { parseJsonText, readJsonFile } from "./json.ts";
export {
  bf16ArrayToF32,
  bf16BitsToF32,
  f16ArrayToF32,
  f32ArrayToBf16,
  f32ArrayToF16,
  f32ToBf16Bits,
} from "./float_bits.ts";
export { pathExists } from "./path_exists.ts";
