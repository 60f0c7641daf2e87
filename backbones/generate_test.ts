import assert from "node:assert/strict";
import { randomDecoder, tinyDecoderConfig } from "./testing.ts";
import type { Tensor } from "../core/tensor.ts";
import { concat, slice } from "../core/kernels/rows/rows.ts";
import { gpuTest, randn } from "../core/testing.ts";
import type { LlmArch } from "./config.ts";
import type { Decoder } from "./decoder.ts";
import { argmax, generateGreedy } from "./generate.ts";

/** Greedy ids without a cache: the full forward over prefix + generated tokens, once per token. */
async function greedyUncached(model: Decoder, prefix: Tensor, n: number): Promise<number[]> {
  const e = model.engine;
  const ids: number[] = [];
  for (let i = 0; i < n; i++) {
    const last = e.tidy(() =>
      e.noGrad(() => {
        const x = ids.length
          ? concat([prefix, model.embed(e.tensor(ids, [1, ids.length], "i32"))], 1)
          : prefix;
        const T = x.shape[1];
        return model.logits(slice(model.forward(x), 1, T - 1, T)); // [1, 1, V]
      })
    );
    ids.push(argmax(await last.read()));
    last.dispose();
  }
  return ids;
}

const ARCHS: LlmArch[] = ["llama", "mistral", "qwen2"];

for (const arch of ARCHS) {
  gpuTest(
    `generateGreedy ${arch}: the cached ids equal greedy over full forwards; eos and stop ids end it`,
    async (e) => {
      const cfg = tinyDecoderConfig(arch);
      const model = randomDecoder(e, cfg, 11, 0.5);
      const T = 4, n = 8;
      const prefix = e.tensor(randn(T * cfg.hiddenSize, 12), [1, T, cfg.hiddenSize]);
      const want = await greedyUncached(model, prefix, n);
      assert.ok(new Set(want).size >= 2, `a varied greedy path: ${want}`);
      const got = await generateGreedy(model, prefix, { maxNewTokens: n, eosId: null });
      assert.deepEqual(got, want);
      // eos: generation ends before its first occurrence, which is not returned.
      const eos = want[3];
      const upTo = want.slice(0, want.indexOf(eos));
      assert.deepEqual(await generateGreedy(model, prefix, { maxNewTokens: n, eosId: eos }), upTo);
      // A stop id does the same; the earliest of eos and stop ids wins.
      const stop = want[5];
      const first = Math.min(want.indexOf(eos), want.indexOf(stop));
      assert.deepEqual(
        await generateGreedy(model, prefix, { maxNewTokens: n, eosId: eos, stopIds: [stop] }),
        want.slice(0, first),
      );
      // maxNewTokens bounds the length.
      assert.deepEqual(
        await generateGreedy(model, prefix, { maxNewTokens: 3, eosId: null }),
        want.slice(0, 3),
      );
      assert.deepEqual(await generateGreedy(model, prefix, { maxNewTokens: 0, eosId: null }), []);
      prefix.dispose();
      model.dispose();
    },
  );
}

gpuTest("generateGreedy: bad options and prefixes are refused with the fix", async (e) => {
  const cfg = tinyDecoderConfig("llama");
  const model = randomDecoder(e, cfg, 13, 0.5);
  const prefix = e.tensor(randn(2 * cfg.hiddenSize, 14), [1, 2, cfg.hiddenSize]);
  await assert.rejects(
    () => generateGreedy(model, prefix, { maxNewTokens: -1, eosId: 2 }),
    /generateGreedy: options\.maxNewTokens: Too small: expected number to be >=0 \(got -1\)/,
  );
  await assert.rejects(
    () => generateGreedy(model, prefix, { maxNewTokens: 2, eosId: 1.5 }),
    /generateGreedy: options\.eosId: .*expected int.*\(got 1\.5\)/,
  );
  await assert.rejects(
    () => generateGreedy(model, prefix, { maxNewTokens: 2, eosId: 2, topK: 5 } as never),
    /generateGreedy: options\.topK: unknown field; allowed fields: maxNewTokens, eosId, stopIds/,
  );
  const two = e.tensor(randn(2 * 2 * cfg.hiddenSize, 15), [2, 2, cfg.hiddenSize]);
  await assert.rejects(
    () => generateGreedy(model, two, { maxNewTokens: 2, eosId: 2 }),
    /must be \[1, T, C\]/,
  );
  for (const t of [prefix, two]) t.dispose();
  model.dispose();
});

Deno.test("argmax: the first of equal maxima; non-finite values are refused", () => {
  assert.equal(argmax([0.5, 2, -1, 2]), 1);
  assert.equal(argmax([-3, -2, -7]), 1);
  assert.equal(argmax([4]), 0);
  assert.throws(() => argmax([1, NaN, 0]), /value NaN at index 1 is not finite/);
});
