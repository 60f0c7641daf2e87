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
const generateSchema = z.strictObject({
  maxNewTokens: z.number().int().nonnegative(),
  eosId: tokenId.nullable(),
  stopIds: z.array(tokenId).default([]),
});

/** What each option must be, for errors. */
const WANT: Record<string, string> = {
  maxNewTokens: "an integer >= 0",
  eosId: "a token id (an integer >= 0) or null",
  stopIds: "an array of token ids (integers >= 0)",
};

function parseGenerateOptions(opts: GenerateOptions): z.output<typeof generateSchema> {
  const r = generateSchema.safeParse(opts);
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  if (issue.code === "unrecognized_keys") {
    throw new Error(
      `generateGreedy: unknown option ${issue.keys.join(", ")}; the options are ${Object.keys(WANT)}`,
    );
  }
  const field = String(issue.path[0] ?? "");
  const got = JSON.stringify((opts as unknown as Record<string, unknown>)[field]);
  throw new Error(`generateGreedy: option ${field} is ${got}; it must be ${WANT[field] ?? issue.message}`);
}

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
  const { maxNewTokens, eosId, stopIds } = parseGenerateOptions(opts);
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
