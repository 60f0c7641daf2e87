/**
 * Weights I/O: safetensors files and (sharded) checkpoints, loading them into engine params,
 * saving params, and Hugging Face model folders.
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
  type SafeData,
  type SafeDType,
  type SafeTensorInput,
  SafetensorsFile,
  type ShardOptions,
  type TensorInfo,
  writeSafetensors,
  writeShardedSafetensors,
} from "./safetensors.ts";
export {
  type HfFolderOptions,
  loadParams,
  type LoadParamsOptions,
  type LoadProgress,
  saveParams,
  type SaveParamsOptions,
  writeHfFolder,
} from "./params.ts";
