/**
 * `deno task train`: with no arguments, prints the adapter and trains the tiny causal transformer of
 * `examples/tiny_lm.ts` through the engine, with progress. Config-driven two-stage training of
 * vision-language models builds on this entry point.
 * @module
 */

import { parseArgs } from "node:util";
import { Engine } from "../core/engine.ts";
import { NoAdapterError } from "../core/device.ts";
import { TINY_LM, trainTinyLM } from "../examples/tiny_lm.ts";

const { values, positionals } = parseArgs({
  args: Deno.args,
  allowPositionals: true,
  options: {
    steps: { type: "string", default: "300" },
    help: { type: "boolean", short: "h", default: false },
  },
});

if (values.help) {
  console.log("usage: deno task train [--steps N]\n  trains the tiny transformer of examples/tiny_lm.ts");
  Deno.exit(0);
}
if (positionals.length) {
  console.error(
    `train: config files (${positionals[0]}) are not accepted yet: this version trains the engine's tiny ` +
      `transformer only. Run \`deno task train\` with no arguments.`,
  );
  Deno.exit(2);
}
const steps = Number(values.steps);
if (!Number.isInteger(steps) || steps < 1) {
  console.error(`train: --steps must be a positive integer, got "${values.steps}"`);
  Deno.exit(2);
}

let e: Engine;
try {
  e = await Engine.create();
} catch (err) {
  if (err instanceof NoAdapterError) {
    console.error(err.message);
    Deno.exit(1);
  }
  throw err;
}
console.log(`adapter: ${e.info.description}${e.info.isFallbackAdapter ? " (software)" : ""}`);
console.log(
  `model: tiny causal transformer, V=${TINY_LM.vocab} C=${TINY_LM.width} heads=${TINY_LM.heads}/${TINY_LM.kvHeads} ` +
    `layers=${TINY_LM.layers}; task: each token is the sum of the two before it, mod V`,
);
const t0 = performance.now();
const { losses } = await trainTinyLM(e, TINY_LM, {
  steps,
  batch: 16,
  seqLen: 12,
  lr: 1e-2,
  seed: 1,
  onStep: (s, loss) => {
    if (s % 10 === 0 || s === steps - 1) {
      const elapsed = (performance.now() - t0) / 1000, rate = (s + 1) / elapsed;
      const eta = (steps - s - 1) / rate;
      console.log(
        `step ${String(s + 1).padStart(5)}/${steps}  loss ${loss.toFixed(4)}  ${rate.toFixed(1)} steps/s  ` +
          `gpu mem ${(e.pool.bytesInUse / 2 ** 20).toFixed(1)} MiB  eta ${eta.toFixed(0)}s`,
      );
    }
  },
});
console.log(
  `done in ${((performance.now() - t0) / 1000).toFixed(1)}s: loss ${losses[0].toFixed(3)} -> ` +
    `${losses.at(-1)!.toFixed(3)} (a uniform guess scores ln V = ${Math.log(TINY_LM.vocab).toFixed(3)})`,
);
e.destroy();
