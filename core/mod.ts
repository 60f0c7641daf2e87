/**
 * The engine: WebGPU device, tensors, autograd and the differentiable ops every model is built from.
 *
 * ```ts ignore
 * import { backward, Engine, matmul, mean, mul } from "@asvr/asvr/core";
 * const e = await Engine.create();
 * const w = e.param(new Float32Array(12).fill(0.1), [4, 3]);
 * const loss = e.tidy(() => {
 *   const y = matmul(e.tensor([1, 2, 3], [1, 3]), w, { transB: true }); // [1, 4]
 *   const l = mean(mul(y, y));
 *   backward(l); // w.grad now holds d l / d w
 *   return l;
 * });
 * console.log(await loss.read());
 * ```
 * @module
 */

// the engine and its tensors
export {
  type EmptyOptions,
  Engine,
  type EngineOptions,
  type KernelCall,
  type TapeNode,
  type TensorData,
} from "./engine.ts";
export { Tensor } from "./tensor.ts";
export { SplitTensor } from "./split_tensor.ts";
export {
  type DeviceInfo,
  NoAdapterError,
  openDevice,
  type OpenDeviceOptions,
  RAISED_LIMITS,
  type RaisedLimit,
} from "./device.ts";
export { BufferPool } from "./pool.ts";
export { formatKernelTimes, type KernelTime } from "./profiler.ts";
export type { DType, HostArray } from "./dtype.ts";
export { randInt, randn, rng } from "./random.ts";

// autograd
export { backward, checkpoint, detach, reshape, zeroGrad } from "./autograd.ts";

// differentiable ops
export {
  forgetTunedMatmuls,
  matmul,
  MATMUL_KERNELS,
  type MatmulChoice,
  type MatmulKernel,
  type MatmulOptions,
  type ProductDims,
  type ProductShape,
  recordMatmulShapes,
  setPackedF16,
  setTunedMatmulChoices,
  takeRecordedShapes,
  tunedMatmulChoices,
} from "./kernels/matmul/matmul.ts";
export {
  formatMatmulTuning,
  type MatmulTuning,
  tuneMatmul,
  tuneRecordedMatmuls,
} from "./kernels/matmul/matmul_tune.ts";
export {
  add,
  addScalar,
  cast,
  gelu,
  mul,
  quickGelu,
  scale,
  silu,
  sub,
  swiglu,
} from "./kernels/elementwise/elementwise.ts";
export { broadcastTo, mean, sum, sumTo } from "./kernels/reduce/reduce.ts";
export { softmax } from "./kernels/softmax/softmax.ts";
export { layerNorm } from "./kernels/layernorm/layernorm.ts";
export { rmsNorm } from "./kernels/rmsnorm/rmsnorm.ts";
export { crossEntropy, type CrossEntropyOptions } from "./kernels/cross_entropy/cross_entropy.ts";
export { IGNORE_INDEX } from "./labels.ts";
export {
  attention,
  ATTENTION_KERNELS,
  type AttentionImpl,
  type AttentionKernel,
  type AttentionOptions,
  setAttentionKernel,
  setTunedAttentionChoices,
  tunedAttentionChoices,
} from "./kernels/attention/attention.ts";
export { type AttentionTuning, formatTuning, tuneAttention } from "./kernels/attention/attention_tune.ts";
export type { AttentionDims } from "./kernels/attention/attention_cpu.ts";
export {
  fastestOf,
  type FastestOfOptions,
  type MeasuredChoice,
  MeasuredChoices,
  medianMs,
  type MedianMsOptions,
  TUNED_REACH,
} from "./timing.ts";
export { rope, type RopeOptions } from "./kernels/rope/rope.ts";
export { embedding } from "./kernels/embedding/embedding.ts";
export { concat, gatherRows, scatterRows, slice } from "./kernels/rows/rows.ts";
export { permute } from "./kernels/permute/permute.ts";

// optimizer and gradient clipping
export { AdamW, type AdamWOptions, type AdamWParamState, type AdamWState } from "./kernels/adamw/adamw.ts";
export { clipGradNorm, globalNorm } from "./kernels/clip/clip.ts";
