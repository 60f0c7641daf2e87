/**
 * CPU references of the row and axis ops: concat, slice, gather of rows and scatter of rows. They are
 * the readable spec the GPU kernels are tested against; tensors are flat row-major arrays with their
 * shapes passed beside them.
 * @module
 */

/** outer = product of the dims before `axis`, inner = product of the dims after it. */
function aroundAxis(shape: readonly number[], axis: number): { outer: number; inner: number } {
  let outer = 1, inner = 1;
  for (let d = 0; d < axis; d++) outer *= shape[d];
  for (let d = axis + 1; d < shape.length; d++) inner *= shape[d];
  return { outer, inner };
}

/** Concatenation of `xs` (of `shapes`, equal except along `axis`) along `axis` (>= 0). */
export function concatCpu(xs: ArrayLike<number>[], shapes: readonly number[][], axis: number): Float64Array {
  const { outer, inner } = aroundAxis(shapes[0], axis);
  const total = shapes.reduce((s, sh) => s + sh[axis], 0);
  const out = new Float64Array(outer * total * inner);
  let at = 0; // where along the axis the current input starts
  xs.forEach((x, i) => {
    const len = shapes[i][axis];
    for (let o = 0; o < outer; o++) {
      for (let k = 0; k < len * inner; k++) out[(o * total + at) * inner + k] = x[o * len * inner + k];
    }
    at += len;
  });
  return out;
}

/** The gradients of concat: `g` cut back into pieces of `shapes` along `axis`. */
export function concatBackwardCpu(
  g: ArrayLike<number>,
  shapes: readonly number[][],
  axis: number,
): Float64Array[] {
  const total = shapes.reduce((s, sh) => s + sh[axis], 0);
  let at = 0;
  return shapes.map((sh) => {
    const dx = sliceCpu(g, [...sh.slice(0, axis), total, ...sh.slice(axis + 1)], axis, at, at + sh[axis]);
    at += sh[axis];
    return dx;
  });
}

/** The elements of x (of `shape`) with index start <= i < end along `axis`. */
export function sliceCpu(
  x: ArrayLike<number>,
  shape: readonly number[],
  axis: number,
  start: number,
  end: number,
): Float64Array {
  const { outer, inner } = aroundAxis(shape, axis);
  const len = end - start;
  const out = new Float64Array(outer * len * inner);
  for (let o = 0; o < outer; o++) {
    for (let k = 0; k < len * inner; k++) out[o * len * inner + k] = x[(o * shape[axis] + start) * inner + k];
  }
  return out;
}

/** The gradient of slice: `g` placed at start..end along `axis` of zeros of `shape`. */
export function sliceBackwardCpu(
  g: ArrayLike<number>,
  shape: readonly number[],
  axis: number,
  start: number,
  end: number,
): Float64Array {
  const { outer, inner } = aroundAxis(shape, axis);
  const len = end - start;
  const dx = new Float64Array(outer * shape[axis] * inner);
  for (let o = 0; o < outer; o++) {
    for (let k = 0; k < len * inner; k++) dx[(o * shape[axis] + start) * inner + k] = g[o * len * inner + k];
  }
  return dx;
}

/** out[m, :] = x[idx[m], :] for x [N, C], idx [M]; zero rows where idx[m] is outside [0, N). */
export function gatherRowsCpu(
  x: ArrayLike<number>,
  idx: ArrayLike<number>,
  N: number,
  C: number,
): Float64Array {
  const out = new Float64Array(idx.length * C);
  for (let m = 0; m < idx.length; m++) {
    if (idx[m] < 0 || idx[m] >= N) continue;
    for (let c = 0; c < C; c++) out[m * C + c] = x[idx[m] * C + c];
  }
  return out;
}

/** The gradient of gatherRows: dx [N, C] with dx[idx[m], :] += g[m, :] (duplicates add up). */
export function gatherRowsBackwardCpu(
  g: ArrayLike<number>,
  idx: ArrayLike<number>,
  N: number,
  C: number,
): Float64Array {
  const dx = new Float64Array(N * C);
  for (let m = 0; m < idx.length; m++) {
    if (idx[m] < 0 || idx[m] >= N) continue;
    for (let c = 0; c < C; c++) dx[idx[m] * C + c] += g[m * C + c];
  }
  return dx;
}

/**
 * A copy of base [N, C] with row idx[m] replaced by src[m, :] for each m (idx unique; out-of-range
 * entries are skipped).
 */
export function scatterRowsCpu(
  base: ArrayLike<number>,
  idx: ArrayLike<number>,
  src: ArrayLike<number>,
  C: number,
): Float64Array {
  const out = Float64Array.from(base);
  const N = base.length / C;
  for (let m = 0; m < idx.length; m++) {
    if (idx[m] < 0 || idx[m] >= N) continue;
    for (let c = 0; c < C; c++) out[idx[m] * C + c] = src[m * C + c];
  }
  return out;
}

/**
 * The gradients of scatterRows: dbase = g with the replaced rows zeroed, dsrc [M, C] = the rows of g
 * at idx (zero where idx[m] is out of range).
 */
export function scatterRowsBackwardCpu(
  g: ArrayLike<number>,
  idx: ArrayLike<number>,
  C: number,
): { dbase: Float64Array; dsrc: Float64Array } {
  const N = g.length / C;
  const dbase = Float64Array.from(g);
  for (let m = 0; m < idx.length; m++) {
    if (idx[m] < 0 || idx[m] >= N) continue;
    for (let c = 0; c < C; c++) dbase[idx[m] * C + c] = 0;
  }
  return { dbase, dsrc: gatherRowsCpu(g, idx, N, C) };
}
