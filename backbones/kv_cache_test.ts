import assert from "node:assert/strict";
import { randomDecoder, tinyDecoderConfig } from "./testing.ts";
import type { Tensor } from "../core/tensor.ts";
import { slice } from "../core/kernels/rows/rows.ts";
import { assertClose, gpuTest, maxAbsDiff, randn } from "../core/testing.ts";
import type { Decoder } from "./decoder.ts";
import { KvCache } from "./kv_cache.ts";

/** Logits of a full forward over x [B, N, C]: [B, N, V]. */
function fullLogits(model: Decoder, x: Tensor): Promise<Float32Array> {
  const e = model.engine;
  const l = e.tidy(() => e.noGrad(() => model.logits(model.forward(x))));
  return l.read().then((v) => (l.dispose(), Float32Array.from(v)));
}

/** Rows t0..t1-1 of each batch row of logits [B, N, V]. */
function rows(v: Float32Array, B: number, N: number, V: number, t0: number, t1: number): Float32Array {
  const out: number[] = [];
  for (let b = 0; b < B; b++) out.push(...v.subarray((b * N + t0) * V, (b * N + t1) * V));
  return Float32Array.from(out);
}

/**
 * Prefill T0 rows of x [B, N, C], then step the rest one row at a time; checks every row's logits
 * against the full forward's. Returns the cache (still holding its tensors).
 */
async function checkCached(
  model: Decoder,
  x: Tensor,
  T0: number,
  tol: { atol: number; rtol: number },
): Promise<KvCache> {
  const e = model.engine;
  const [B, N] = x.shape, V = model.cfg.vocabSize;
  const full = await fullLogits(model, x);
  const cache = model.createCache();
  const pre = e.tidy(() => model.logits(model.prefill(slice(x, 1, 0, T0), cache)));
  assert.deepEqual(pre.shape, [B, T0, V]);
  assertClose(await pre.read(), rows(full, B, N, V, 0, T0), { ...tol, label: "prefill" });
  pre.dispose();
  for (let t = T0; t < N; t++) {
    assert.equal(cache.length, t);
    const l = e.tidy(() => model.logits(model.step(slice(x, 1, t, t + 1), cache)));
    assert.deepEqual(l.shape, [B, 1, V]);
    assertClose(await l.read(), rows(full, B, N, V, t, t + 1), { ...tol, label: `step at position ${t}` });
    l.dispose();
  }
  assert.equal(cache.length, N);
  return cache;
}

const F32 = { atol: 2e-5, rtol: 1e-4 };

for (const [arch, B] of [["llama", 1], ["mistral", 1], ["qwen2", 1], ["llama", 2]] as const) {
  gpuTest(
    `KvCache ${arch} B=${B}: prefill + steps give the full forward's logits at every position`,
    async (e) => {
      const cfg = tinyDecoderConfig(arch);
      const model = randomDecoder(e, cfg, 3, 0.3);
      const N = 9, T0 = 5;
      const x = e.tensor(randn(B * N * cfg.hiddenSize, 4), [B, N, cfg.hiddenSize]);
      const cache = await checkCached(model, x, T0, F32);
      // Mistral keeps only its window; the others every position.
      assert.equal(cache.kept, arch === "mistral" ? 3 : N);
      assert.deepEqual(cache.layer(1)!.keys.shape, [B, cfg.numKvHeads, cache.kept, cfg.headDim]);
      cache.dispose();
      assert.equal(cache.length, 0);
      assert.equal(cache.layer(0), null);
      x.dispose();
      model.dispose();
    },
  );
}

gpuTest("KvCache mistral: the window matters (without it the logits differ past the window)", async (e) => {
  const cfg = tinyDecoderConfig("mistral");
  const windowed = randomDecoder(e, cfg, 5, 0.3);
  const plain = randomDecoder(e, { ...cfg, slidingWindow: null }, 5, 0.3);
  const N = 7, V = cfg.vocabSize;
  const x = e.tensor(randn(N * cfg.hiddenSize, 6), [1, N, cfg.hiddenSize]);
  const a = await fullLogits(windowed, x), b = await fullLogits(plain, x);
  // Rows inside the window agree, later rows do not: a cache that ignored the window would fail above.
  assertClose(rows(a, 1, N, V, 0, 3), rows(b, 1, N, V, 0, 3), F32);
  assert.ok(maxAbsDiff(rows(a, 1, N, V, N - 1, N), rows(b, 1, N, V, N - 1, N)) > 1e-2);
  // A prompt shorter than the window, then steps that pass it.
  const cache = await checkCached(windowed, x, 2, F32);
  assert.equal(cache.kept, 3);
  cache.dispose();
  x.dispose();
  windowed.dispose();
  plain.dispose();
});

gpuTest("KvCache qwen2 f16: cached logits match the full f16 forward", async (e) => {
  if (!e.hasF16) return;
  const cfg = tinyDecoderConfig("qwen2");
  const model = randomDecoder(e, cfg, 7, 0.3, "f16");
  const N = 7;
  const x = e.tensor(randn(N * cfg.hiddenSize, 8), [1, N, cfg.hiddenSize], "f16");
  const cache = await checkCached(model, x, 4, { atol: 2e-3, rtol: 2e-3 }); // f16 rounding: ~5e-4 measured
  cache.dispose();
  x.dispose();
  model.dispose();
});

gpuTest("KvCache and Decoder.prefill/step: misuse is refused with the fix", (e) => {
  const cfg = tinyDecoderConfig("llama");
  const model = randomDecoder(e, cfg, 9, 0.3);
  const C = cfg.hiddenSize;
  const cache = model.createCache();
  const x = e.tensor(randn(3 * C, 10), [1, 3, C]);
  assert.throws(() => model.step(slice(x, 1, 0, 1), cache), /cache is empty; call prefill first/);
  e.tidy(() => model.prefill(x, cache));
  assert.throws(() => model.prefill(x, cache), /already holds 3 positions; use a new cache/);
  assert.throws(() => model.step(x, cache), /embeds must be \[B, 1, C\]/);
  const other = new KvCache({ numLayers: 2, numKvHeads: 2, headDim: 8, window: 4 });
  assert.throws(() => model.prefill(x, other), /another model; use decoder.createCache\(\)/);
  const k = e.zeros([1, 2, 1, 8]);
  other.append(0, k, k);
  assert.throws(() => other.append(0, k, k), /layer 0 already has this step's positions/);
  assert.throws(() => other.commit(1), /layer 1 has 0 positions, expected 1/);
  assert.throws(() => other.append(1, e.zeros([1, 3, 1, 8]), k), /must both be \[B, 2, T, 8\]/);
  assert.throws(() => new KvCache({ numLayers: 0, numKvHeads: 2, headDim: 8, window: null }), /numLayers/);
  for (const t of [x, k]) t.dispose();
  other.dispose();
  cache.dispose();
  model.dispose();
});
