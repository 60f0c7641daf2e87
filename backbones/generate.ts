/**
 * Greedy generation with a key/value cache: the prompt's embeddings (text, or text with image
 * features spliced in) run once, then one cached step per new token, reading back one row of
 * logits per token.
 * @module
 */

import { z } from "zod";
import type { Tensor } from "../core/tensor.ts";
import { slice } from "../core/kernels/rows/rows.ts";
import type { Decoder } from "./decoder.ts";
import { parseSchema } from "../schema/parse.ts";

/** Options of {@linkcode generateGreedy}. */
export interface GenerateOptions {
  /** The most tokens to generate (>= 0). */
  maxNewTokens: number;
  /** The end-of-sequence id: generation stops when it is produced (null: no such id). */
  eosId: number | null;
  /** Further ids that stop generation (default none), e.g. a chat template's end-of-turn token. */
  stopIds?: number[];
}

const tokenId = z.number().int().nonnegative();

// `GenerateOptions` is written out because a published type must be (JSR's no-slow-types: not inferred from a
// schema); the schema is typed by it, so the compiler holds the two together. The rules and defaults live
// here.
const generateSchema: z.ZodType<Required<GenerateOptions>, GenerateOptions> = z.strictObject({
  maxNewTokens: z.number().int().nonnegative(),
  eosId: tokenId.nullable(),
  stopIds: z.array(tokenId).default([]),
});

/** Index of the largest value (the first of equal ones); throws on a non-finite value. */
export function argmax(values: ArrayLike<number>): number {
  let best = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (!Number.isFinite(v)) throw new Error(`argmax: value ${v} at index ${i} is not finite`);
    if (v > values[best]) best = i;
  }
  return best;
}

/**
 * Greedy decoding: runs prefixEmbeds [1, T, C] (of the decoder's dtype) through
 * {@linkcode Decoder.prefill}, then repeatedly takes the most likely next token and feeds its
 * embedding to {@linkcode Decoder.step}. Returns the new token ids, at most `maxNewTokens` of them,
 * ending before the first `eosId` or stop id (which is not included). No gradients; one GPU
 * readback (a row of V logits) per token. The cache lives for the call only.
 *
 * ```ts ignore
 * const prompt = llm.embed(e.tensor(tok.encode("USER: Hi ASSISTANT:"), [1, 8], "i32"));
 * const ids = await generateGreedy(llm, prompt, { maxNewTokens: 32, eosId: 2 });
 * console.log(tok.decode(ids));
 * ```
 */
export async function generateGreedy(
  decoder: Decoder,
  prefixEmbeds: Tensor,
  opts: GenerateOptions,
): Promise<number[]> {
  const { maxNewTokens, eosId, stopIds } = parseSchema(generateSchema, opts, "generateGreedy: options");
  const [B, T] = prefixEmbeds.shape;
  if (prefixEmbeds.shape.length !== 3 || B !== 1 || T < 1) {
    throw new Error(`generateGreedy: prefixEmbeds must be [1, T, C] with T >= 1, got ${prefixEmbeds}`);
  }
  const stop = new Set(stopIds);
  if (eosId !== null) stop.add(eosId);
  const e = decoder.engine;
  const out: number[] = [];
  if (maxNewTokens === 0) return out;
  const cache = decoder.createCache();
  try {
    // logits [1, 1, V] of the last row
    let logits = e.tidy(() => {
      const hidden = decoder.prefill(prefixEmbeds, cache); // [1, T, C]
      return decoder.logits(slice(hidden, 1, T - 1, T));
    });
    for (;;) {
      const row = await logits.read();
      logits.dispose();
      const id = argmax(row);
      if (stop.has(id)) break;
      out.push(id);
      if (out.length >= maxNewTokens) break;
      logits = e.tidy(() => {
        const ids = e.tensor([id], [1, 1], "i32");
        return decoder.logits(decoder.step(decoder.embed(ids), cache));
      });
    }
  } finally {
    cache.dispose();
  }
  return out;
}
