import assert from "node:assert/strict";
import { assertClose, gpuTest, randn } from "../core/testing.ts";
import { type FitProgress, fitResidualKMeans } from "./fit_codebooks.ts";
import { rqEncodeCpu } from "./rq_cpu.ts";

/**
 * Two-level clustered data, `rows` rows [rows, Dc]: row i is coarse[i % 4] (std 4 per column) +
 * fine[(i / 4) % 4] (std 1) + noise (std 0.02).
 */
function clustered(Dc: number, rows: number, seed: number): Float32Array {
  const coarse = randn(4 * Dc, seed, 4), fine = randn(4 * Dc, seed + 1, 1);
  const noise = randn(rows * Dc, seed + 2, 0.02);
  const x = new Float32Array(rows * Dc);
  for (let i = 0; i < rows; i++) {
    const a = i % 4, b = Math.floor(i / 4) % 4;
    for (let c = 0; c < Dc; c++) x[i * Dc + c] = coarse[a * Dc + c] + fine[b * Dc + c] + noise[i * Dc + c];
  }
  return x;
}

/** Total variance of the rows (sum over columns of the column variances): the mse of the mean. */
function totalVariance(x: Float32Array, Dc: number): number {
  const N = x.length / Dc;
  let v = 0;
  for (let c = 0; c < Dc; c++) {
    let m = 0;
    for (let i = 0; i < N; i++) m += x[i * Dc + c];
    m /= N;
    for (let i = 0; i < N; i++) v += (x[i * Dc + c] - m) ** 2;
  }
  return v / N;
}

/** mse of x after RQ with `cb` [D, K, Dc] over `depths` depths (f64 reference), and the code counts. */
function quantize(x: Float32Array, cb: Float32Array, Dc: number, K: number, depths: number) {
  const R = x.length / Dc;
  const ref = rqEncodeCpu(x, cb, { R, Dc, K, books: depths, depths });
  let se = 0;
  for (const v of ref.residual) se += v * v;
  const counts = Array.from({ length: depths }, () => new Int32Array(K));
  for (let r = 0; r < R; r++) for (let d = 0; d < depths; d++) counts[d][ref.codes[r * depths + d]]++;
  return { mse: se / R, counts };
}

gpuTest(
  "residual k-means on clustered data: low error, every code used, progress per iteration",
  async (e) => {
    const Dc = 6, K = 8, D = 2;
    const x = clustered(Dc, 192, 1);
    const progress: FitProgress[] = [];
    const cb = await fitResidualKMeans(e, x, {
      depths: D,
      K,
      Dc,
      iters: 6,
      seed: 3,
      onProgress: (p) => progress.push(p),
    });
    assert.equal(cb.length, D * K * Dc);
    const variance = totalVariance(x, Dc); // ~ Dc * (16 * 3/4 + 1 * 3/4 + noise)
    const one = quantize(x, cb.slice(0, K * Dc), Dc, K, 1);
    const two = quantize(x, cb, Dc, K, D);
    // Depth 0 has 8 codes for 4 coarse clusters: once k-means++ has a code in each (all but sure with
    // D^2 sampling on clusters this far apart), at most the fine offsets' variance (~1/13 of the
    // total) is left, so the error must be 10x below the variance. Two depths of 8 codes can model
    // all 16 (coarse, fine) pairs down to the noise (Dc * 0.02^2, 1e-5 of the variance); 100x below
    // the variance leaves room for a local optimum of k-means at depth 1. (Measured over 24 data and
    // fit seeds: the worst ratios were 15.6 and 233.)
    assert.ok(one.mse < variance / 10, `depth 0: mse ${one.mse} vs variance ${variance}`);
    assert.ok(two.mse < variance / 100, `two depths: mse ${two.mse} vs variance ${variance}`);
    for (let d = 0; d < D; d++) {
      assert.ok(two.counts[d].every((n) => n > 0), `depth ${d} has dead codes: ${two.counts[d]}`);
    }
    // 6 iterations + the final assignment per depth; the final report has no dead codes and matches
    // the reference's error at that depth.
    assert.deepEqual(
      progress.map((p) => `${p.depth}.${p.iteration}`),
      [0, 1].flatMap((d) => [0, 1, 2, 3, 4, 5, 6].map((i) => `${d}.${i}`)),
    );
    const finals = progress.filter((p) => p.iteration === p.iterations);
    assert.ok(finals.every((p) => p.deadCodes === 0 && p.rows === 192));
    assertClose([finals[0].mse, finals[1].mse], [one.mse, two.mse], { rtol: 1e-3, atol: 1e-6 });
    for (const d of [0, 1]) {
      const its = progress.filter((p) => p.depth === d).map((p) => p.inertia);
      for (let i = 1; i < its.length; i++) {
        assert.ok(
          its[i] <= its[i - 1] * (1 + 1e-5),
          `Lloyd raised inertia: ${its}`,
        );
      }
    }
  },
);

gpuTest("residual k-means: the same seed gives the same codebooks, another seed others", async (e) => {
  const Dc = 5, K = 6;
  const x = clustered(Dc, 128, 7);
  const opts = { depths: 2, K, Dc, iters: 3 };
  const a = await fitResidualKMeans(e, x, { ...opts, seed: 1 });
  const b = await fitResidualKMeans(e, x, { ...opts, seed: 1 });
  const c = await fitResidualKMeans(e, x, { ...opts, seed: 2 });
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, c);
});

gpuTest("k-means++ alone (iters 0) picks K distinct rows of the data", async (e) => {
  const Dc = 3, K = 20, N = 60;
  const x = randn(N * Dc, 9);
  const cb = await fitResidualKMeans(e, x, { depths: 1, K, Dc, iters: 0, seed: 4 });
  const rows = new Set(Array.from({ length: N }, (_, i) => x.slice(i * Dc, (i + 1) * Dc).join(",")));
  const picked = new Set(Array.from({ length: K }, (_, k) => cb.slice(k * Dc, (k + 1) * Dc).join(",")));
  assert.equal(picked.size, K, "centres repeat");
  for (const p of picked) assert.ok(rows.has(p), `centre ${p} is not a data row`);
});

gpuTest(
  "k-means++ prefers far rows: a tight cluster and 3 outliers give the outliers their own codes",
  async (e) => {
    // 200 rows near 0 and 3 rows far away; with K = 4 the D^2 sampling all but surely picks each
    // outlier (probability of missing one is below 1e-6 per draw), whatever the seed.
    const Dc = 2, near = randn(200 * Dc, 10, 0.01);
    const x = new Float32Array([...near, 100, 0, 0, 100, -100, -100]);
    for (const seed of [0, 1, 2]) {
      const cb = await fitResidualKMeans(e, x, { depths: 1, K: 4, Dc, iters: 0, seed });
      const centres = Array.from({ length: 4 }, (_, k) => `${cb[2 * k]},${cb[2 * k + 1]}`);
      for (const o of ["100,0", "0,100", "-100,-100"]) {
        assert.ok(
          centres.includes(o),
          `seed ${seed}: ${centres}`,
        );
      }
    }
  },
);

gpuTest("k-means++ draws the second centre with probability proportional to D^2", async (e) => {
  // For each of 40 seeds: where the second centre falls in the cumulative D^2 distribution (given
  // the first centre) is uniform on [0, 1) when the draw is right. Kolmogorov-Smirnov: the
  // statistic of 40 uniform draws passes 0.31 with probability 0.001; the seeds are fixed, so the
  // outcome is too. A draw biased to the start or the end of a block, or by the row weights being
  // off, moves it far above.
  const Dc = 2, N = 300; // two blocks of 256 rows
  const x = randn(N * Dc, 3);
  const rowOf = new Map(Array.from({ length: N }, (_, i) => [`${x[2 * i]},${x[2 * i + 1]}`, i]));
  const q: number[] = [];
  for (let seed = 0; seed < 40; seed++) {
    const cb = await fitResidualKMeans(e, x, { depths: 1, K: 2, Dc, iters: 0, seed });
    const a = rowOf.get(`${cb[0]},${cb[1]}`)!, b = rowOf.get(`${cb[2]},${cb[3]}`)!;
    const w = Array.from(
      { length: N },
      (_, i) => (x[2 * i] - x[2 * a]) ** 2 + (x[2 * i + 1] - x[2 * a + 1]) ** 2,
    );
    const total = w.reduce((s, v) => s + v, 0);
    const before = w.slice(0, b).reduce((s, v) => s + v, 0);
    q.push((before + w[b] / 2) / total); // the middle of the row's own interval
  }
  q.sort((u, v) => u - v);
  const ks = Math.max(...q.map((v, i) => Math.max((i + 1) / q.length - v, v - i / q.length)));
  assert.ok(ks < 0.31, `KS statistic ${ks.toFixed(3)} over the D^2 quantiles ${q.map((v) => v.toFixed(2))}`);
});

/** The Lloyd update in f64: assign to the nearest centre (ties low), move centres to their means. */
function lloydCpu(x: Float32Array, init: Float32Array, Dc: number, K: number, iters: number): Float64Array {
  const N = x.length / Dc;
  const c = Float64Array.from(init);
  for (let it = 0; it < iters; it++) {
    const { codes } = rqEncodeCpu(x, c, { R: N, Dc, K, books: 1, depths: 1 });
    const sum = new Float64Array(K * Dc), n = new Int32Array(K);
    for (let i = 0; i < N; i++) {
      n[codes[i]]++;
      for (let j = 0; j < Dc; j++) sum[codes[i] * Dc + j] += x[i * Dc + j];
    }
    for (let k = 0; k < K; k++) {
      assert.ok(n[k] > 0, "the reference case must have no empty cluster");
      for (let j = 0; j < Dc; j++) c[k * Dc + j] = sum[k * Dc + j] / n[k];
    }
  }
  return c;
}

gpuTest("Lloyd iterations from a given start equal the f64 reference", async (e) => {
  const Dc = 4, K = 5, N = 90;
  const x = randn(N * Dc, 21);
  const init = x.slice(0, K * Dc); // the first K rows
  for (const iters of [1, 3]) {
    const got = await fitResidualKMeans(e, x, { depths: 1, K, Dc, iters, init });
    assertClose(got, lloydCpu(x, init, Dc, K, iters), { atol: 1e-5, rtol: 1e-5, label: `iters ${iters}` });
  }
});

gpuTest("dead codes are re-seeded from the farthest rows and end up used", async (e) => {
  // Codes 1 and 2 start far from every row: no row is ever assigned to them unless they move, and
  // only the re-seeding moves a code without rows.
  const Dc = 3, K = 6;
  const x = clustered(Dc, 64, 31);
  const init = x.slice(0, K * Dc);
  init.fill(1e3, Dc, 2 * Dc);
  init.fill(-1e3, 2 * Dc, 3 * Dc);
  const progress: FitProgress[] = [];
  const cb = await fitResidualKMeans(e, x, {
    depths: 1,
    K,
    Dc,
    iters: 4,
    init,
    onProgress: (p) => progress.push(p),
  });
  assert.equal(progress[0].deadCodes, 2, "the start has two dead codes");
  assert.equal(progress.at(-1)!.deadCodes, 0);
  const { counts } = quantize(x, cb, Dc, K, 1);
  assert.ok(counts[0].every((n) => n > 0), `dead codes remain: ${counts[0]}`);
});

gpuTest("a stream of chunks gives what one array gives; sampleLimit samples the stream", async (e) => {
  const Dc = 4, K = 4;
  const x = clustered(Dc, 64, 41);
  async function* chunks(sizes: number[]) {
    let at = 0;
    for (const s of sizes) {
      yield x.slice(at * Dc, (at + s) * Dc);
      at += s;
    }
  }
  const opts = { depths: 2, K, Dc, iters: 2, seed: 5 };
  const whole = await fitResidualKMeans(e, x, opts);
  assert.deepEqual(await fitResidualKMeans(e, chunks([10, 0, 33, 21]), opts), whole);
  const rows: number[] = [];
  const sampled = await fitResidualKMeans(e, chunks([64]), {
    ...opts,
    sampleLimit: 20,
    onProgress: (p) => rows.push(p.rows),
  });
  assert.ok(rows.every((n) => n === 20), `rows ${rows}`);
  assert.deepEqual(
    await fitResidualKMeans(e, x, { ...opts, sampleLimit: 20 }),
    sampled,
    "sampling is seeded",
  );
});

gpuTest(
  "sampleLimit: a longer stream gives the same sample for a seed whatever its chunks; K rows are enough",
  async (e) => {
    const Dc = 3, K = 5, N = 90;
    const x = randn(N * Dc, 17);
    async function* chunks(sizes: number[]) {
      let at = 0;
      for (const s of sizes) {
        yield x.slice(at * Dc, (at + s) * Dc);
        at += s;
      }
      assert.equal(at, N);
    }
    const opts = { depths: 2, K, Dc, iters: 2 };
    const a = await fitResidualKMeans(e, chunks([7, 40, 43]), { ...opts, seed: 3, sampleLimit: 30 });
    const b = await fitResidualKMeans(e, chunks([90]), { ...opts, seed: 3, sampleLimit: 30 });
    const c = await fitResidualKMeans(e, chunks([7, 40, 43]), { ...opts, seed: 4, sampleLimit: 30 });
    assert.deepEqual(b, a, "the same seed: the same sample and codebooks");
    assert.notDeepEqual(c, a, "another seed: another sample");

    // A sample of exactly K rows: k-means++ takes every sampled row as a code, so the codebook shows
    // the sample; the residuals left for depth 1 are all zero, and so is its codebook.
    const rowsOf = (cb: Float32Array) =>
      Array.from({ length: K }, (_, k) => cb.slice(k * Dc, (k + 1) * Dc).join(",")).sort();
    const rowIndex = new Map(
      Array.from({ length: N }, (_, i) => [x.slice(i * Dc, (i + 1) * Dc).join(","), i]),
    );
    const picks: number[][] = [];
    for (const seed of [0, 1]) {
      const rows: number[] = [];
      const cb = await fitResidualKMeans(e, chunks([30, 60]), {
        depths: 2,
        K,
        Dc,
        iters: 0,
        seed,
        sampleLimit: K,
        onProgress: (p) => rows.push(p.rows),
      });
      assert.ok(rows.every((n) => n === K), `rows ${rows}`);
      const sample = rowsOf(cb.subarray(0, K * Dc));
      assert.equal(new Set(sample).size, K, `seed ${seed}: codes repeat`);
      const at = sample.map((r) => rowIndex.get(r));
      assert.ok(at.every((i) => i !== undefined), `seed ${seed}: a code is not a data row`);
      picks.push((at as number[]).sort((u, v) => u - v));
      assert.ok(cb.subarray(K * Dc).every((v) => v === 0), `seed ${seed}: depth 1 ${cb.subarray(K * Dc)}`);
      const again = await fitResidualKMeans(e, chunks([90]), {
        depths: 2,
        K,
        Dc,
        iters: 0,
        seed,
        sampleLimit: K,
      });
      assert.deepEqual(rowsOf(again.subarray(0, K * Dc)), sample, `seed ${seed}: the same sample`);
    }
    // The sample is drawn from the whole stream, not its first K rows, and the seed decides it.
    assert.ok(picks.some((p) => p.some((i) => i >= K)), `samples ${picks.join(" | ")}`);
    assert.notDeepEqual(picks[0], picks[1]);
  },
);

gpuTest("fitResidualKMeans refuses bad input, naming the option and the fix", async (e) => {
  const x = randn(40, 1);
  await assert.rejects(fitResidualKMeans(e, x, { depths: 1, K: 20, Dc: 4 }), /10 feature rows for K = 20/);
  await assert.rejects(fitResidualKMeans(e, x, { depths: 1, K: 2, Dc: 3 }), /not a multiple of Dc = 3/);
  await assert.rejects(fitResidualKMeans(e, x, { depths: 0, K: 2, Dc: 4 }), /depths must be an integer >= 1/);
  await assert.rejects(fitResidualKMeans(e, x, { depths: 1, K: 2, Dc: 4, iters: -1 }), /iters/);
  await assert.rejects(
    fitResidualKMeans(e, x, { depths: 1, K: 2, Dc: 4, init: new Float32Array(3) }),
    /init/,
  );
  const bad = x.slice();
  bad[9] = NaN;
  await assert.rejects(fitResidualKMeans(e, bad, { depths: 1, K: 2, Dc: 4 }), /row 2 holds NaN at column 1/);
});
