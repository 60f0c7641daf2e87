/**
 * `deno task export <run or checkpoint> [--out DIR] [--dtype BF16|F16|F32] [--max-shard-gb N]
 * [--import MODULE ...]`
 *
 * Writes a trained run's model (its latest checkpoint, or the checkpoint folder given) as one Hugging
 * Face folder in LLaVA's layout, LoRA adapters merged, with the run's tokenizer: see models/export.ts.
 * @module
 */

import { parseArgs } from "node:util";
import { basename, join } from "node:path";
import { Engine } from "../core/engine.ts";
import { NoAdapterError } from "../core/device.ts";
import { copyTokenizerFiles, type ExportDType, exportModel } from "../models/export.ts";
import { findRun, loadRunModel } from "../trainers/run_model.ts";
import { formatBytes, transferProgressPrinter } from "../trainers/progress.ts";

const USAGE = `usage: deno task export <run folder or checkpoint folder> [options]
  --out DIR            the folder to write (default: <run>/export)
  --dtype D            BF16, F16 or F32 (default: the dtype of the LLM's folder, else the run's)
  --max-shard-gb N     largest weight file in GB (default 5)
  --import MODULE      a module registering the run's kinds (repeatable); the run's own are
                       imported from its imports.json`;

const { values, positionals } = parseArgs({
  args: Deno.args.filter((a) => a !== "--"),
  allowPositionals: true,
  options: {
    out: { type: "string" },
    dtype: { type: "string" },
    "max-shard-gb": { type: "string" },
    import: { type: "string", multiple: true, default: [] },
    help: { type: "boolean", short: "h", default: false },
  },
});

if (values.help || positionals.length !== 1) {
  console.log(USAGE);
  Deno.exit(values.help ? 0 : 2);
}

try {
  await main(positionals[0]);
} catch (err) {
  console.error(err instanceof NoAdapterError ? err.message : `export: ${(err as Error).message}`);
  Deno.exit(1);
}

async function main(target: string): Promise<void> {
  const dtype = values.dtype?.toUpperCase();
  if (dtype !== undefined && !["BF16", "F16", "F32"].includes(dtype)) {
    throw new Error(`--dtype: use BF16, F16 or F32, got ${values.dtype}`);
  }
  const shardGb = values["max-shard-gb"] === undefined ? 5 : Number(values["max-shard-gb"]);
  if (!(shardGb > 0)) throw new Error(`--max-shard-gb: a number of GB > 0, got ${values["max-shard-gb"]}`);
  const run = await findRun(target, { imports: values.import });
  const out = values.out ?? join(run.runDir, "export");
  const e = await Engine.create();
  const model = await loadRunModel(e, run, console.log);
  const lora = model.llm.lora;
  console.log(
    `model: ${run.runDir} at ${basename(run.checkpoint)}` +
      (lora ? `; merging LoRA (rank ${lora.cfg.rank} on ${lora.cfg.targets.join(", ")}) into the LLM` : ""),
  );
  const t0 = performance.now();
  const progress = transferProgressPrinter(console.log);
  const r = await exportModel(model, out, {
    dtype: dtype as ExportDType | undefined,
    maxShardBytes: shardGb * 1e9,
    onProgress: (p) => progress(`writing ${out}`, p),
  });
  const tokenizer = await copyTokenizerFiles(run.tokenizerDir, out);
  const files: string[] = [];
  let bytes = 0;
  for await (const f of Deno.readDir(out)) {
    if (!f.isFile) continue;
    files.push(f.name);
    bytes += (await Deno.stat(join(out, f.name))).size;
  }
  console.log(
    `wrote ${out} in ${((performance.now() - t0) / 1000).toFixed(1)} s: ${
      (r.params / 1e6).toFixed(1)
    } M parameters ` +
      `as ${r.dtype}, ${formatBytes(bytes)} (${files.sort().join(", ")})` +
      (tokenizer.length ? "" : `; no tokenizer files found in ${run.tokenizerDir}`),
  );
  await model.dispose();
  await e.close();
}
