/**
 * CPU reference of the reductions (the spec the GPU kernels are tested against): sums and means over
 * all elements or one axis, `sumTo` (sum a broadcast result back to an input's shape) and its adjoint
 * `broadcastTo`. Values are row-major arrays with their shapes passed alongside; results are f64.
 * @module
 */

/** The number of elements of a shape ([] has one). */
export function shapeSize(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Row-major strides of a contiguous tensor of `shape`. */
export function contiguousStrides(shape: readonly number[]): number[] {
  const strides = new Array<number>(shape.length);
  let s = 1;
  for (let k = shape.length - 1; k >= 0; k--) {
    strides[k] = s;
    s *= shape[k];
  }
  return strides;
}

/**
 * Throws unless `from` broadcasts to `to` numpy-style: aligned at the trailing dims, each dim of
 * `from` equal to the one of `to` or 1, and `from` no longer than `to`.
 */
export function checkBroadcastable(from: readonly number[], to: readonly number[], label: string): void {
  const pad = to.length - from.length;
  if (pad < 0 || from.some((d, k) => d !== 1 && d !== to[pad + k])) {
    throw new Error(`${label}: shape [${from}] does not broadcast to [${to}]`);
  }
}

/**
 * The shapes of a reduction of a tensor of `shape` over `axis` (one dim, negative counts from the end,
 * or "all"): `keepShape` has the input's rank with 1 on the reduced dims, `outShape` is the result's shape
 * (`keepShape` when `keepDims`, else with the reduced dims removed: [] for "all"); `count` is the number of
 * elements summed into each output.
 */
export function reduceShapes(
  shape: readonly number[],
  axis: number | "all",
  keepDims: boolean,
): { keepShape: number[]; outShape: number[]; count: number } {
  if (axis === "all") {
    const keepShape = shape.map(() => 1);
    return { keepShape, outShape: keepDims ? keepShape : [], count: shapeSize(shape) };
  }
  const k = axis < 0 ? axis + shape.length : axis;
  if (!Number.isInteger(k) || k < 0 || k >= shape.length) {
    throw new Error(`reduce: axis ${axis} out of range for shape [${shape}]`);
  }
  const keepShape = shape.map((d, j) => (j === k ? 1 : d));
  const outShape = keepDims ? keepShape : shape.filter((_, j) => j !== k);
  return { keepShape, outShape, count: shape[k] };
}

/**
 * For each element of a tensor of `outShape`, the flat index of the element of a tensor of `inShape`
 * broadcast onto it (dims of size 1, and missing leading dims, repeat).
 */
export function broadcastIndex(inShape: readonly number[], outShape: readonly number[]): Int32Array {
  checkBroadcastable(inShape, outShape, "broadcast");
  const pad = outShape.length - inShape.length;
  const inStrides = contiguousStrides(inShape);
  const map = new Int32Array(shapeSize(outShape));
  for (let i = 0; i < map.length; i++) {
    let rest = i, src = 0;
    for (let k = outShape.length - 1; k >= 0; k--) {
      const c = rest % outShape[k];
      rest = Math.floor(rest / outShape[k]);
      const kin = k - pad;
      if (kin >= 0 && inShape[kin] !== 1) src += c * inStrides[kin];
    }
    map[i] = src;
  }
  return map;
}

/** `x` of `xShape` broadcast (repeated) to `outShape`. */
export function broadcastToCpu(
  x: ArrayLike<number>,
  xShape: readonly number[],
  outShape: readonly number[],
): Float64Array {
  const map = broadcastIndex(xShape, outShape);
  return Float64Array.from(map, (src) => x[src]);
}

/** `x` of `xShape` summed down to `shape` (which broadcasts to `xShape`): the adjoint of broadcastTo. */
export function sumToCpu(
  x: ArrayLike<number>,
  xShape: readonly number[],
  shape: readonly number[],
): Float64Array {
  const map = broadcastIndex(shape, xShape);
  const out = new Float64Array(shapeSize(shape));
  for (let i = 0; i < map.length; i++) out[map[i]] += x[i];
  return out;
}

/** Sum of `x` (of `shape`) over `axis` (or all elements): the values and the result's shape. */
export function sumCpu(
  x: ArrayLike<number>,
  shape: readonly number[],
  axis: number | "all" = "all",
  keepDims = false,
): { data: Float64Array; shape: number[] } {
  const { keepShape, outShape } = reduceShapes(shape, axis, keepDims);
  return { data: sumToCpu(x, shape, keepShape), shape: outShape };
}

/** Mean of `x` (of `shape`) over `axis` (or all elements): the values and the result's shape. */
export function meanCpu(
  x: ArrayLike<number>,
  shape: readonly number[],
  axis: number | "all" = "all",
  keepDims = false,
): { data: Float64Array; shape: number[] } {
  const { count } = reduceShapes(shape, axis, keepDims);
  const s = sumCpu(x, shape, axis, keepDims);
  return { data: s.data.map((v) => v / count), shape: s.shape };
}

/** Gradient of {@linkcode sumCpu} w.r.t. `x`, given the gradient `g` of its result. */
export function sumBackwardCpu(
  g: ArrayLike<number>,
  xShape: readonly number[],
  axis: number | "all" = "all",
): Float64Array {
  const { keepShape } = reduceShapes(xShape, axis, true);
  return broadcastToCpu(g, keepShape, xShape);
}

/** Gradient of {@linkcode meanCpu} w.r.t. `x`, given the gradient `g` of its result. */
export function meanBackwardCpu(
  g: ArrayLike<number>,
  xShape: readonly number[],
  axis: number | "all" = "all",
): Float64Array {
  const { count } = reduceShapes(xShape, axis, true);
  return sumBackwardCpu(g, xShape, axis).map((v) => v / count);
}
