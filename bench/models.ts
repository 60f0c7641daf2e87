/**
 * Training-step throughput of small models, beside PyTorch CPU on the identical configs measured in the
 * same run (bench/models_ref.py): a LLaMA (4 layers, width 256, T=256, V=32000) and a SigLIP-style ViT
 * (4 layers, width 256, 224 px, patch 16), forward + backward, in tokens/s. Run by `deno task bench`.
 * With `--json`, one JSON object per line.
 * @module
 */

import { parseArgs } from "node:util";
import { Engine } from "../core/engine.ts";
import { randInt, randn } from "../core/random.ts";
import { backward } from "../core/autograd.ts";
import { mul } from "../core/kernels/elementwise/elementwise.ts";
import { mean } from "../core/kernels/reduce/reduce.ts";
import { Decoder } from "../backbones/decoder.ts";
import type { LlmConfig } from "../backbones/config.ts";
import { VisionEncoder } from "../encoders/vit.ts";
import type { VisionConfig } from "../encoders/config.ts";
import { medianMs } from "./timing.ts";

const { values: args } = parseArgs({
  args: Deno.args.filter((a) => a !== "--"),
  options: { json: { type: "boolean", default: false }, "no-ref": { type: "boolean", default: false } },
});

/** The small LLaMA: the shapes bench/models_ref.py builds too. */
export const BENCH_LLAMA: LlmConfig = {
  arch: "llama",
  vocabSize: 32000,
  hiddenSize: 256,
  intermediateSize: 688,
  numLayers: 4,
  numHeads: 8,
  numKvHeads: 8,
  headDim: 32,
  rmsNormEps: 1e-5,
  ropeTheta: 10000,
  tieWordEmbeddings: false,
  slidingWindow: null,
  attentionBias: false,
  maxPositions: 2048,
};

/** The small ViT (SigLIP layout). */
export const BENCH_VIT: VisionConfig = {
  arch: "siglip",
  hiddenSize: 256,
  intermediateSize: 1024,
  numLayers: 4,
  numHeads: 8,
  imageSize: 224,
  patchSize: 16,
  layerNormEps: 1e-6,
  act: "gelu_tanh",
};

const [B_LM, T] = [1, 256];
const B_VIT = 2;

async function reference(): Promise<Map<string, { median_ms: number; impl: string }>> {
  const refs = new Map<string, { median_ms: number; impl: string }>();
  if (args["no-ref"]) return refs;
  try {
    const script = new URL("./models_ref.py", import.meta.url).pathname;
    const r = await new Deno.Command("/usr/bin/python3", { args: [script], stderr: "inherit" }).output();
    for (const line of new TextDecoder().decode(r.stdout).split("\n")) {
      if (!line.trim()) continue;
      const rec = JSON.parse(line);
      if (rec.error) console.error(`PyTorch reference unavailable: ${rec.error}`);
      else refs.set(rec.model, rec);
    }
  } catch (err) {
    console.error(`PyTorch reference unavailable (${(err as Error).message}): apt-get install python3-torch`);
  }
  return refs;
}

const refs = await reference();
const e = await Engine.create();

function report(model: string, shape: number[], tokens: number, ms: number): void {
  const ref = refs.get(model);
  const rec = {
    op: `${model}_fwd_bwd`,
    shape,
    dtype: "f32",
    median_ms: ms,
    tokens_per_s: tokens / (ms / 1000),
    ref_ms: ref?.median_ms ?? null,
    ref_tokens_per_s: ref ? tokens / (ref.median_ms / 1000) : null,
    ref_impl: ref?.impl ?? null,
    ratio_vs_ref: ref ? ms / ref.median_ms : null,
  };
  if (args.json) console.log(JSON.stringify(rec));
  else {
    const vs = ref
      ? `  PyTorch CPU ${rec.ref_tokens_per_s!.toFixed(0)} tokens/s, ratio ${rec.ratio_vs_ref!.toFixed(2)}`
      : "";
    console.log(
      `${rec.op.padEnd(20)} ${shape.join("x").padEnd(12)} ${ms.toFixed(1).padStart(8)} ms ` +
        `${rec.tokens_per_s.toFixed(0).padStart(7)} tokens/s${vs}`,
    );
  }
}

{
  const llm = Decoder.create(e, BENCH_LLAMA, { seed: 1 });
  const ids = e.tensor(randInt(B_LM * T, BENCH_LLAMA.vocabSize, 2), [B_LM, T], "i32");
  const labels = e.tensor(randInt(B_LM * T, BENCH_LLAMA.vocabSize, 3), [B_LM, T], "i32");
  const ms = await medianMs(e, () => {
    const loss = llm.lossFromLabels(llm.logits(llm.forward(llm.embed(ids))), labels);
    backward(loss);
  }, { trials: 3 });
  report("llama", [B_LM, T, BENCH_LLAMA.hiddenSize], B_LM * T, ms);
  llm.dispose();
  ids.dispose();
  labels.dispose();
}
{
  const vit = VisionEncoder.create(e, BENCH_VIT, { seed: 1 });
  const S = BENCH_VIT.imageSize, N = (S / BENCH_VIT.patchSize) ** 2;
  const pixels = e.tensor(randn(B_VIT * 3 * S * S, 4), [B_VIT, 3, S, S]);
  const ms = await medianMs(e, () => {
    const f = vit.forward(pixels, { layer: -1 });
    backward(mean(mul(f, f)));
  }, { trials: 3 });
  report("vit", [B_VIT, N, BENCH_VIT.hiddenSize], B_VIT * N, ms);
  for (const t of [pixels, ...vit.params().values()]) t.dispose();
}
await e.close();
