/**
 * WGSL that reduces one f32 per thread across a workgroup, giving every thread the result, in two
 * variants: a tree through workgroup memory (a barrier per level), or, where the device has the
 * `subgroups` feature, a subgroup reduction, one slot per subgroup in workgroup memory and one barrier.
 *
 * The subgroup variant reads the subgroup size and lane from the builtins (lavapipe runs 8 lanes, NVIDIA
 * 32, AMD 64; a device may pick another size per pipeline), never a fixed size. It takes the subgroups
 * of a one-dimensional workgroup to be runs of consecutive `local_invocation_index` (subgroup k holds
 * threads k * size .. (k + 1) * size - 1), as Vulkan, Metal and D3D12 lay them out.
 *
 * The WGSL carries no `enable subgroups;` directive: Deno's WGSL compiler (naga) rejects it while it
 * accepts the subgroup builtins once the device has the feature.
 * @module
 */

/** Threads per workgroup of the row-wise kernels at most (a power of two). */
export const ROW_WG = 256;

/** The smallest subgroup size WebGPU allows: bounds the number of subgroups in a workgroup. */
const MIN_SUBGROUP = 4;

/**
 * WGSL of workgroup reductions over `wg` threads (a power of two, default {@linkcode ROW_WG}):
 * `reduceSum(lid, v)` and `reduceMax(lid, v)` return the reduction of every thread's `v` to every
 * thread (`lid` is the thread's `local_invocation_index`). Call them from uniform control flow (they
 * hold barriers), every thread the same calls in the same order.
 *
 * With `subgroups` the functions use subgroup operations: the entry point must then take
 * {@linkcode subgroupArgsWgsl} among its parameters and run {@linkcode subgroupInitWgsl} first.
 */
export function workgroupReduceWgsl(wg: number = ROW_WG, subgroups = false): string {
  if (wg === 1) {
    return `${subgroups ? SUBGROUP_VARS : ""}
fn reduceSum(lid: u32, v: f32) -> f32 { return v; }
fn reduceMax(lid: u32, v: f32) -> f32 { return v; }`;
  }
  return subgroups ? subgroupReduce(wg) : treeReduce(wg);
}

// Set by subgroupInitWgsl: functions cannot read the entry point's builtins.
const SUBGROUP_VARS = `var<private> sgSize: u32; // subgroup_size
var<private> sgLane: u32; // subgroup_invocation_id`;

/**
 * The parameters to add to the entry point of a kernel using the subgroup reductions (with a leading
 * comma), or "" without subgroups.
 */
export function subgroupArgsWgsl(subgroups: boolean): string {
  return subgroups
    ? ", @builtin(subgroup_size) sgSizeArg: u32, @builtin(subgroup_invocation_id) sgLaneArg: u32"
    : "";
}

/** The statement that hands the subgroup builtins to the reductions (first in the entry point), or "". */
export function subgroupInitWgsl(subgroups: boolean): string {
  return subgroups ? "sgSize = sgSizeArg; sgLane = sgLaneArg;" : "";
}

// A tree over `wg` slots: log2(wg) levels, a barrier after each, and one before the slots are reused.
function treeReduce(wg: number): string {
  const reduce = (name: string, op: string) => `
fn ${name}(lid: u32, v: f32) -> f32 {
  red[lid] = v;
  workgroupBarrier();
  for (var s = ${wg / 2}u; s > 0u; s = s >> 1u) {
    if (lid < s) { red[lid] = ${op}; }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}`;
  return `var<workgroup> red: array<f32, ${wg}>;` +
    reduce("reduceSum", "red[lid] + red[lid + s]") + reduce("reduceMax", "max(red[lid], red[lid + s])");
}

// Each subgroup reduces its values, its first lane writes the result to the subgroup's slot, one
// barrier, then every subgroup reduces the slots (lane i reads slots i, i + size, ...). Successive calls
// alternate between two halves of `red` (redHalf is the same in every thread, as every thread makes the
// same calls): call n writes half n % 2, and every thread has read call n's slots before it reaches
// the barrier of call n + 1, so the writes of call n + 2 cannot race those reads.
function subgroupReduce(wg: number): string {
  const slots = Math.max(1, wg / MIN_SUBGROUP);
  const reduce = (name: string, sgOp: string, identity: string, op: string) => `
fn ${name}(lid: u32, v: f32) -> f32 {
  let h = redHalf;
  redHalf = ${slots}u - redHalf;
  let s = ${sgOp}(v);
  if (sgLane == 0u) { red[h + lid / sgSize] = s; }
  workgroupBarrier();
  var r = ${identity};
  for (var k = sgLane; k < (${wg}u + sgSize - 1u) / sgSize; k += sgSize) { r = ${op}; }
  return ${sgOp}(r);
}`;
  return `var<workgroup> red: array<f32, ${2 * slots}>; // two halves of one slot per subgroup
var<private> redHalf: u32 = 0u; // offset of the half the next reduction writes
${SUBGROUP_VARS}` +
    reduce("reduceSum", "subgroupAdd", "0.0", "r + red[h + k]") +
    reduce("reduceMax", "subgroupMax", "-3.0e38", "max(r, red[h + k])");
}
