/**
 * Fitting RQ codebooks by residual k-means: depth by depth, k-means on the residuals the previous
 * depths leave, on the GPU. The semantic tokenizer's weights are not public in a usable form, so
 * the framework fits its own codebooks on a frozen encoder's features (DESIGN section 5).
 *
 * Per depth:
 * 1. k-means++ initialisation (seeded), entirely on the GPU: a kernel updates every row's squared
 *    distance to the nearest chosen centre and sums them per block of 256 rows; a one-workgroup
 *    kernel draws the next centre with probability proportional to that distance (the draws come
 *    from seeded uniforms uploaded once), so no step waits for a readback.
 * 2. Lloyd iterations: the assignment is the RQ nearest-code kernel of `rq.ts`; the centroid update
 *    runs on the GPU: the host counting-sorts the assignment (read back anyway for the inertia and
 *    the dead codes) and a kernel averages each cluster's rows in row order, so the result is
 *    deterministic (no float atomics).
 * 3. Dead codes (empty clusters) are re-seeded from the rows farthest from their centroid.
 * 4. The residuals for the next depth: r -= C[k] with the final assignment.
 *
 * The same seed and data give the same codebooks on the same adapter (other adapters may round
 * differently). Cost per depth: k-means++ is K small dispatch pairs, each reading the sample once
 * (memory-bound); each Lloyd iteration is one distance pass (N x K x Dc) and two readbacks of [N].
 * The sample lives on the GPU as one [N, Dc] tensor, so N is capped by the storage-binding limit.
 * @module
 */

import type { Engine } from "../core/engine.ts";
import { grid1d } from "../core/engine.ts";
import { ROW_WG, workgroupReduceWgsl } from "../core/kernels/rowwise.ts";
import { rng } from "../core/random.ts";
import type { Tensor } from "../core/tensor.ts";
import { nearestCodes, subtractCodes } from "./rq.ts";

/** Progress of {@linkcode fitResidualKMeans}, reported after each Lloyd iteration and once per depth at the end. */
export interface FitProgress {
  /** The depth being fitted, 0-based. */
  depth: number;
  /** Depths D in all. */
  depths: number;
  /**
   * The iteration whose assignment is reported, 0-based; `iterations` for the final assignment of the
   * depth (after the last update; its residuals feed the next depth).
   */
  iteration: number;
  /** Lloyd iterations per depth. */
  iterations: number;
  /** Sum over the sample rows of the squared distance to the assigned code. */
  inertia: number;
  /** inertia / rows: the mean squared quantization error of a row at this depth. */
  mse: number;
  /** Codes no row was assigned to (before this iteration re-seeds them). */
  deadCodes: number;
  /** Rows in the sample. */
  rows: number;
}

/** Options of {@linkcode fitResidualKMeans}. */
export interface FitOptions {
  /** Depths D to fit. */
  depths: number;
  /** Codes K per codebook (k-means clusters per depth). */
  K: number;
  /** Width Dc of a feature row. */
  Dc: number;
  /** Lloyd iterations per depth after k-means++ (default 10; 0 keeps the k-means++ centres). */
  iters?: number;
  /** Seed of the sampling and of k-means++ (default 0). */
  seed?: number;
  /**
   * Most rows kept (a seeded uniform sample of the stream when it has more). Default: 64 * K, capped
   * so the sample fits one storage binding of the adapter.
   */
  sampleLimit?: number;
  /**
   * Starting codebooks f32 [D, K, Dc] instead of k-means++ (to refine codebooks fitted before, or
   * to test the Lloyd steps).
   */
  init?: Float32Array;
  /** Called after every Lloyd iteration and after each depth's final assignment. */
  onProgress?: (p: FitProgress) => void;
}

const WG = 256;

/** Updates minD with the squared distance to centre j (or sets it when p.first) and sums minD per block. */
const KPP_UPDATE_WGSL = `
@group(0) @binding(0) var<storage, read> x: array<f32>;             // [N, Dc]
@group(0) @binding(1) var<storage, read> cb: array<f32>;            // [K, Dc]
@group(0) @binding(2) var<storage, read_write> minD: array<f32>;    // [N]
@group(0) @binding(3) var<storage, read_write> blockSum: array<f32>; // [NB]
struct P { N: u32, Dc: u32, j: u32, first: u32 }
@group(0) @binding(4) var<uniform> p: P;
${workgroupReduceWgsl()}
@compute @workgroup_size(${ROW_WG})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let block = wid.x + wid.y * nwg.x;
  let i = block * ${ROW_WG}u + lid;
  var m = 0.0;
  if (i < p.N) {
    var d = 0.0;
    for (var c = 0u; c < p.Dc; c++) {
      let v = x[i * p.Dc + c] - cb[p.j * p.Dc + c];
      d = fma(v, v, d);
    }
    m = d;
    if (p.first == 0u) { m = min(minD[i], d); }
    minD[i] = m;
  }
  let s = reduceSum(lid, m);
  if (lid == 0u) { blockSum[block] = s; }
}`;

/**
 * One workgroup: draws centre j (uniformly for j = 0, else with probability proportional to minD)
 * and copies that row into cb[j]. The walk goes segment -> block -> row; at each level it takes the
 * first entry whose running sum passes the goal, or the last positive one (rounding), so a row
 * already chosen (minD = 0) is never drawn while any other row has weight.
 */
const KPP_PICK_WGSL = `
@group(0) @binding(0) var<storage, read> x: array<f32>;             // [N, Dc]
@group(0) @binding(1) var<storage, read_write> cb: array<f32>;      // [K, Dc]
@group(0) @binding(2) var<storage, read> minD: array<f32>;          // [N]
@group(0) @binding(3) var<storage, read> blockSum: array<f32>;      // [NB]
@group(0) @binding(4) var<storage, read> u: array<f32>;             // [K] uniforms in [0, 1)
@group(0) @binding(5) var<storage, read_write> picked: array<i32>;  // [K] the chosen rows
struct P { N: u32, Dc: u32, NB: u32, j: u32 }
@group(0) @binding(6) var<uniform> p: P;
var<workgroup> seg: array<f32, ${WG}>;
var<workgroup> chosen: u32;
@compute @workgroup_size(${WG})
fn main(@builtin(local_invocation_index) lid: u32) {
  let per = (p.NB + ${WG - 1}u) / ${WG}u; // blocks per segment
  var s = 0.0;
  for (var b = lid * per; b < min(p.NB, (lid + 1u) * per); b++) { s += blockSum[b]; }
  seg[lid] = s;
  workgroupBarrier();
  if (lid == 0u) {
    let uniformRow = min(u32(u[p.j] * f32(p.N)), p.N - 1u);
    var row = uniformRow;
    var total = 0.0;
    for (var t = 0u; t < ${WG}u; t++) { total += seg[t]; }
    if (p.j > 0u && total > 0.0) {
      var goal = u[p.j] * total;
      // segment
      var acc = 0.0;
      var sg = 0u;
      var before = 0.0;
      for (var t = 0u; t < ${WG}u; t++) {
        let w = seg[t];
        if (w > 0.0) {
          sg = t;
          before = acc;
          acc += w;
          if (acc > goal) { break; }
        }
      }
      goal -= before;
      // block
      acc = 0.0;
      before = 0.0;
      var blk = sg * per;
      for (var b = sg * per; b < min(p.NB, (sg + 1u) * per); b++) {
        let w = blockSum[b];
        if (w > 0.0) {
          blk = b;
          before = acc;
          acc += w;
          if (acc > goal) { break; }
        }
      }
      goal -= before;
      // row
      acc = 0.0;
      for (var i = blk * ${ROW_WG}u; i < min(p.N, (blk + 1u) * ${ROW_WG}u); i++) {
        let w = minD[i];
        if (w > 0.0) {
          row = i;
          acc += w;
          if (acc > goal) { break; }
        }
      }
    }
    chosen = row;
    picked[p.j] = i32(row);
  }
  let r = workgroupUniformLoad(&chosen);
  for (var c = lid; c < p.Dc; c += ${WG}u) { cb[p.j * p.Dc + c] = x[r * p.Dc + c]; }
}`;

/** cb[k] = mean of the rows order[offsets[k] .. offsets[k+1]) (left alone for an empty cluster). */
const CENTROID_WGSL = `
@group(0) @binding(0) var<storage, read> x: array<f32>;          // [N, Dc]
@group(0) @binding(1) var<storage, read> order: array<i32>;      // [N] rows sorted by cluster
@group(0) @binding(2) var<storage, read> offsets: array<i32>;    // [K + 1]
@group(0) @binding(3) var<storage, read_write> cb: array<f32>;   // [K, Dc]
struct P { n: u32, Dc: u32 }  // n = K * Dc
@group(0) @binding(4) var<uniform> p: P;
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * ${WG}u;
  if (i >= p.n) { return; }
  let k = i / p.Dc;
  let c = i % p.Dc;
  let a = offsets[k];
  let b = offsets[k + 1u];
  if (b <= a) { return; }
  var s = 0.0;
  for (var j = a; j < b; j++) { s += x[u32(order[j]) * p.Dc + c]; }
  cb[i] = s / f32(b - a);
}`;

/** cb[pairs[m].x] = x[pairs[m].y]: re-seeds dead codes with rows. */
const COPY_ROWS_WGSL = `
@group(0) @binding(0) var<storage, read> x: array<f32>;          // [N, Dc]
@group(0) @binding(1) var<storage, read> pairs: array<vec2i>;    // [M] (code, row)
@group(0) @binding(2) var<storage, read_write> cb: array<f32>;   // [K, Dc]
struct P { n: u32, Dc: u32 }  // n = M * Dc
@group(0) @binding(3) var<uniform> p: P;
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * ${WG}u;
  if (i >= p.n) { return; }
  let pr = pairs[i / p.Dc];
  let c = i % p.Dc;
  cb[u32(pr.x) * p.Dc + c] = x[u32(pr.y) * p.Dc + c];
}`;

/** A seed for stream `what` of depth `d` derived from the user's seed. */
function subSeed(seed: number, what: number, d: number): number {
  return (Math.imul(seed >>> 0, 0x9e3779b1) ^ Math.imul(what + 1, 0x85ebca6b) ^
    Math.imul(d + 1, 0xc2b2ae35)) >>> 0;
}

/**
 * A seeded uniform sample of at most `limit` rows of width Dc from the chunks (reservoir sampling,
 * so every row of the stream is equally likely whatever its length); all rows when there are fewer.
 */
async function collectSample(
  features: AsyncIterable<Float32Array> | Float32Array,
  Dc: number,
  limit: number,
  seed: number,
): Promise<{ rows: Float32Array; n: number; seen: number }> {
  const r = rng(subSeed(seed, 0, 0));
  let buf = new Float32Array(Math.min(limit, 4096) * Dc);
  let n = 0, seen = 0;
  const take = (chunk: Float32Array) => {
    if (!(chunk instanceof Float32Array)) {
      throw new Error(`fitResidualKMeans: feature chunks must be Float32Array [n, Dc], got ${typeof chunk}`);
    }
    if (chunk.length % Dc !== 0) {
      throw new Error(
        `fitResidualKMeans: a feature chunk has ${chunk.length} values, not a multiple of Dc = ${Dc}; ` +
          `chunks must hold whole rows [n, ${Dc}]`,
      );
    }
    for (let at = 0; at < chunk.length; at += Dc) {
      const row = chunk.subarray(at, at + Dc);
      for (let c = 0; c < Dc; c++) {
        if (!Number.isFinite(row[c])) {
          throw new Error(
            `fitResidualKMeans: feature row ${seen} holds ${row[c]} at column ${c}; rows must be finite`,
          );
        }
      }
      let slot = -1;
      if (n < limit) slot = n++;
      else {
        const j = Math.floor(r() * (seen + 1));
        if (j < limit) slot = j;
      }
      if (slot >= 0) {
        if ((slot + 1) * Dc > buf.length) {
          const grown = new Float32Array(Math.min(limit, 2 * (buf.length / Dc)) * Dc);
          grown.set(buf);
          buf = grown;
        }
        buf.set(row, slot * Dc);
      }
      seen++;
    }
  };
  if (features instanceof Float32Array) take(features);
  else for await (const chunk of features) take(chunk);
  return { rows: buf.subarray(0, n * Dc), n, seen };
}

/**
 * The rows a fit samples when `sampleLimit` is not given: 64 per code (64 * K), or fewer when rows of
 * width Dc would not fit one storage binding of the adapter.
 */
export function defaultSampleLimit(e: Engine, K: number, Dc: number): number {
  return Math.min(64 * K, Math.floor(e.limit("maxStorageBufferBindingSize") / (4 * Dc)));
}

function checkOptions(e: Engine, o: FitOptions): { iters: number; seed: number; limit: number } {
  const int = (name: string, v: unknown, min: number): number => {
    if (!Number.isInteger(v) || (v as number) < min) {
      throw new Error(`fitResidualKMeans: ${name} must be an integer >= ${min}, got ${v}`);
    }
    return v as number;
  };
  int("depths", o.depths, 1);
  int("K", o.K, 1);
  int("Dc", o.Dc, 1);
  const iters = int("iters", o.iters ?? 10, 0);
  const seed = int("seed", o.seed ?? 0, 0);
  const fit = Math.floor(e.limit("maxStorageBufferBindingSize") / (4 * o.Dc));
  const limit = int("sampleLimit", o.sampleLimit ?? defaultSampleLimit(e, o.K, o.Dc), 1);
  if (limit > fit) {
    throw new Error(
      `fitResidualKMeans: sampleLimit ${limit} rows of Dc = ${o.Dc} floats exceed one storage binding ` +
        `(${e.limit("maxStorageBufferBindingSize")} bytes); use sampleLimit <= ${fit}`,
    );
  }
  if (
    o.init !== undefined && (!(o.init instanceof Float32Array) || o.init.length !== o.depths * o.K * o.Dc)
  ) {
    throw new Error(
      `fitResidualKMeans: init must be a Float32Array [D, K, Dc] of ${
        o.depths * o.K * o.Dc
      } values, got ${o.init?.length}`,
    );
  }
  return { iters, seed, limit };
}

/** k-means++ centres of x [N, Dc] into cb [K, Dc]; returns nothing to wait for (all on the GPU). */
function kMeansPlusPlus(
  e: Engine,
  x: Tensor,
  cb: Tensor,
  N: number,
  K: number,
  Dc: number,
  seed: number,
): void {
  e.tidy(() => {
    const r = rng(seed);
    const u = e.tensor(Float32Array.from({ length: K }, r), [K]);
    const NB = Math.ceil(N / ROW_WG);
    const minD = e.empty([N]), blockSum = e.empty([NB]), picked = e.empty([K], "i32");
    for (let j = 0; j < K; j++) {
      e.run({
        label: "kmeans_pp_pick",
        code: KPP_PICK_WGSL,
        bindings: [x, cb, minD, blockSum, u, picked],
        params: [N, Dc, NB, j],
        workgroups: [1],
      });
      if (j === K - 1) break;
      e.run({
        label: "kmeans_pp_update",
        code: KPP_UPDATE_WGSL,
        bindings: [x, cb, minD, blockSum],
        params: [N, Dc, j, j === 0 ? 1 : 0],
        workgroups: grid1d(N, ROW_WG),
      });
    }
  });
}

/** The rows with the largest distance first (ties: lower row first), `m` of them. */
function farthestRows(dist: Float32Array, m: number): number[] {
  const idx = Array.from({ length: dist.length }, (_, i) => i);
  idx.sort((a, b) => dist[b] - dist[a] || a - b);
  return idx.slice(0, m);
}

/**
 * Fits RQ codebooks f32 [D, K, Dc] by residual k-means on feature rows: a Float32Array [n, Dc], or
 * an async stream of such chunks (sampled down to `sampleLimit` rows). Needs at least K rows. See
 * the module doc for the steps; `onProgress` reports each iteration's inertia and dead codes.
 */
export async function fitResidualKMeans(
  e: Engine,
  features: AsyncIterable<Float32Array> | Float32Array,
  opts: FitOptions,
): Promise<Float32Array> {
  const { iters, seed, limit } = checkOptions(e, opts);
  const { depths: D, K, Dc } = opts;
  const sample = await collectSample(features, Dc, limit, seed);
  const N = sample.n;
  if (N < K) {
    throw new Error(
      `fitResidualKMeans: ${N} feature rows for K = ${K} codes; k-means needs at least K rows ` +
        `(give more features or a smaller codebook size)`,
    );
  }
  const out = new Float32Array(D * K * Dc);
  const x = e.tensor(sample.rows, [N, Dc]); // the residuals r_d [N, Dc], updated in place
  e.untrack(x);
  const cb = e.empty([K, Dc]);
  e.untrack(cb);
  try {
    for (let d = 0; d < D; d++) {
      if (opts.init) e.write(cb, opts.init.subarray(d * K * Dc, (d + 1) * K * Dc));
      else kMeansPlusPlus(e, x, cb, N, K, Dc, subSeed(seed, 1, d));
      const report = (iteration: number, inertia: number, deadCodes: number) =>
        opts.onProgress?.({
          depth: d,
          depths: D,
          iteration,
          iterations: iters,
          inertia,
          mse: inertia / N,
          deadCodes,
          rows: N,
        });
      for (let it = 0; it <= iters; it++) {
        await e.tidy(async () => {
          const { codes, dist } = nearestCodes(x, cb);
          const k = await codes.read() as Int32Array, dd = await dist.read() as Float32Array;
          const counts = new Int32Array(K);
          let inertia = 0;
          for (let i = 0; i < N; i++) {
            if (!(k[i] >= 0 && k[i] < K)) {
              throw new Error(
                `fitResidualKMeans: depth ${d}: row ${i} got no code (distance ${
                  dd[i]
                }); features overflow f32`,
              );
            }
            counts[k[i]]++;
            inertia += dd[i];
          }
          const dead: number[] = [];
          for (let c = 0; c < K; c++) if (counts[c] === 0) dead.push(c);
          if (it === iters) { // the final assignment: residuals for the next depth
            if (d < D - 1) subtractCodes(x, codes, cb);
            report(it, inertia, dead.length);
            return;
          }
          // Centroid update: rows counting-sorted by cluster, averaged on the GPU in row order.
          const offsets = new Int32Array(K + 1);
          for (let c = 0; c < K; c++) offsets[c + 1] = offsets[c] + counts[c];
          const fill = offsets.slice(0, K), order = new Int32Array(N);
          for (let i = 0; i < N; i++) order[fill[k[i]]++] = i;
          e.run({
            label: "kmeans_centroids",
            code: CENTROID_WGSL,
            bindings: [x, e.tensor(order, [N], "i32"), e.tensor(offsets, [K + 1], "i32"), cb],
            params: [K * Dc, Dc],
            workgroups: grid1d(K * Dc, WG),
          });
          if (dead.length) {
            const far = farthestRows(dd, dead.length);
            const pairs = new Int32Array(2 * dead.length);
            dead.forEach((c, m) => {
              pairs[2 * m] = c;
              pairs[2 * m + 1] = far[m];
            });
            e.run({
              label: "kmeans_reseed",
              code: COPY_ROWS_WGSL,
              bindings: [x, e.tensor(pairs, [dead.length, 2], "i32"), cb],
              params: [dead.length * Dc, Dc],
              workgroups: grid1d(dead.length * Dc, WG),
            });
          }
          report(it, inertia, dead.length);
        });
      }
      out.set(await cb.read() as Float32Array, d * K * Dc);
    }
  } finally {
    x.dispose();
    cb.dispose();
  }
  return out;
}
