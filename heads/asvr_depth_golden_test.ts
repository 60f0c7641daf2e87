// Parity with PyTorch: tests/golden/make_golden.py wrote a tiny ASVR head (the reference's projector and
// RQTransformer, weights under its state-dict names) with its loss for both alignments, every parameter
// gradient and the gradient of the hidden states.
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { backward } from "../core/autograd.ts";
import type { DType } from "../core/dtype.ts";
import type { Engine } from "../core/engine.ts";
import type { Tensor } from "../core/tensor.ts";
import { assertClose, gpuTest } from "../core/testing.ts";
import { readJsonFile } from "../io/json.ts";
import { loadParams } from "../io/params.ts";
import { Checkpoint } from "../io/safetensors.ts";
import { alignCodes } from "../losses/targets.ts";
import { AsvrDepthHead } from "./asvr_depth.ts";
import { asvrDepthLossCpu } from "./asvr_depth_cpu.ts";
import { type AsvrDepthHeadConfig, parseHeadConfig } from "./mod.ts";

const DIR = fileURLToPath(new URL("../tests/golden/fixtures/asvr_head/", import.meta.url));

interface FixtureConfig {
  d_llm: number;
  width: number;
  num_heads: number;
  layers: number;
  depths: number;
  codebook_sizes: number[];
  codebook_dim: number;
}

interface Golden {
  cfg: AsvrDepthHeadConfig;
  llmWidth: number;
  get(name: string): { data: Float32Array; shape: number[] };
  codes: Int32Array;
}

async function readFixture(): Promise<Golden> {
  const fc = await readJsonFile(`${DIR}config.json`, "the asvr_head fixture config") as FixtureConfig;
  const cfg = parseHeadConfig({
    kind: "asvr_depth",
    width: fc.width,
    heads: fc.num_heads,
    layers: fc.layers,
    depths: fc.depths,
    codebookSizes: fc.codebook_sizes,
    codebookDim: fc.codebook_dim,
    checkpointLayers: true,
  }, "asvr_head/config.json") as AsvrDepthHeadConfig;
  const ckpt = await Checkpoint.open(`${DIR}golden.safetensors`);
  const floats = new Map<string, { data: Float32Array; shape: number[] }>();
  let codes: Int32Array = new Int32Array();
  try {
    for (const n of ckpt.names()) {
      const data = await ckpt.read(n);
      if (n === "codes") codes = data as Int32Array;
      else floats.set(n, { data: data as Float32Array, shape: ckpt.info(n).shape });
    }
  } finally {
    ckpt.close();
  }
  const get = (n: string) => {
    const v = floats.get(n);
    if (!v) throw new Error(`golden.safetensors has no "${n}"`);
    return v;
  };
  return { cfg, llmWidth: fc.d_llm, get, codes };
}

/** The "next" alignment's codes: patch i gets the codes of patch i + 1; the last patch is masked. */
function nextCodes(codes: Int32Array, B: number, N: number, D: number): Int32Array {
  const out = new Int32Array(codes.length).fill(-100);
  for (let b = 0; b < B; b++) {
    for (let n = 0; n + 1 < N; n++) {
      for (let d = 0; d < D; d++) out[(b * N + n) * D + d] = codes[(b * N + n + 1) * D + d];
    }
  }
  return out;
}

/** Absolute tolerance `rel` times the reference's largest magnitude. */
function scaled(ref: ArrayLike<number>, rel: number): { atol: number; rtol: number } {
  let m = 0;
  for (let i = 0; i < ref.length; i++) m = Math.max(m, Math.abs(ref[i]));
  return { atol: rel * Math.max(m, 1e-6), rtol: 0 };
}

interface Run {
  loss: number;
  hiddenGrad: Float32Array;
  paramGrads: Map<string, Float32Array>;
}

async function runHead(e: Engine, g: Golden, dtype: DType, codes: Int32Array): Promise<Run> {
  const head = AsvrDepthHead.create(e, g.cfg, { llmWidth: g.llmWidth, dtype });
  const ckpt = await Checkpoint.open(`${DIR}model.safetensors`);
  try {
    await loadParams(head.params(), ckpt);
  } finally {
    ckpt.close();
  }
  const hid = g.get("hidden"), books = g.get("codebooks");
  const hidden = e.param(hid.data, hid.shape, { dtype, name: "hidden" });
  const loss = await e.tidy(async () => {
    const l = head.loss(hidden, {
      semantic: {
        codes: e.tensor(codes, [...hid.shape.slice(0, 2), g.cfg.depths], "i32"),
        codebooks: e.tensor(books.data, books.shape),
      },
    }).total;
    backward(l);
    return (await l.read())[0];
  });
  const paramGrads = new Map<string, Float32Array>();
  for (const [n, t] of head.params()) {
    paramGrads.set(n, t.grad ? (await t.grad.read()) as Float32Array : new Float32Array(t.size));
  }
  const hiddenGrad = (await hidden.grad!.read()) as Float32Array;
  for (const t of [...head.params().values(), hidden]) (t as Tensor).dispose();
  return { loss, hiddenGrad, paramGrads };
}

function compare(run: Run, g: Golden, rel: number, lossTol: number, label: string): void {
  assertClose([run.loss], g.get("loss").data, { atol: 0, rtol: lossTol, label: `${label} loss` });
  const gh = g.get("grad.hidden").data;
  assertClose(run.hiddenGrad, gh, { ...scaled(gh, rel), label: `${label} grad.hidden` });
  let n = 0;
  for (const [name, got] of run.paramGrads) {
    const ref = g.get(`grad.${name}`).data;
    assertClose(got, ref, { ...scaled(ref, rel), label: `${label} grad.${name}` });
    n++;
  }
  assert.equal(n, 4 + 2 + 10 * g.cfg.layers + 1 + 2 * g.cfg.depths, "every parameter compared");
}

gpuTest("AsvrDepthHead f32 matches PyTorch: loss and every gradient (alignment same)", async (e) => {
  const g = await readFixture();
  const run = await runHead(e, g, "f32", g.codes);
  compare(run, g, 1e-4, 1e-5, "f32");
  // The unused FFN biases: zero gradient in PyTorch too.
  assert.ok(g.get("grad.head_transformer.0.linear1.bias").data.every((v) => v === 0));
});

gpuTest("AsvrDepthHead f32 matches PyTorch: loss and grad.hidden for alignment next", async (e) => {
  const g = await readFixture();
  const [B, N] = g.get("hidden").shape;
  const codes = nextCodes(g.codes, B, N, g.cfg.depths);
  // The shifted codes are what the losses' alignment gives the head.
  const aligned = await e.tidy(() =>
    alignCodes(e.tensor(g.codes, [B, N, g.cfg.depths], "i32"), "next").read()
  );
  assert.deepEqual([...aligned], [...codes]);
  const run = await runHead(e, g, "f32", codes);
  assertClose([run.loss], g.get("loss_next").data, { atol: 0, rtol: 1e-5, label: "loss_next" });
  const ref = g.get("grad_next.hidden").data;
  assertClose(run.hiddenGrad, ref, { ...scaled(ref, 1e-4), label: "grad_next.hidden" });
  // The last patch of each image predicts nothing and gets no gradient.
  const DL = g.llmWidth;
  for (let b = 0; b < B; b++) {
    assert.ok(run.hiddenGrad.slice(((b + 1) * N - 1) * DL, (b + 1) * N * DL).every((v) => v === 0));
  }
});

// f16 storage (params, hidden states and every activation rounded to f16; math in f32): the loss within
// 1e-3 relative and the gradients within 2e-2 of each tensor's largest magnitude (measured on lavapipe:
// 5e-6 and 4e-3).
gpuTest("AsvrDepthHead f16 storage matches PyTorch within the stated tolerance", async (e) => {
  if (!e.hasF16) return;
  const g = await readFixture();
  compare(await runHead(e, g, "f16", g.codes), g, 2e-2, 1e-3, "f16");
});

gpuTest("asvrDepthLossCpu matches PyTorch's loss on the golden fixture", async () => {
  const g = await readFixture();
  const ckpt = await Checkpoint.open(`${DIR}model.safetensors`);
  const params = new Map<string, Float32Array>();
  try {
    for (const n of ckpt.names()) params.set(n, (await ckpt.read(n)) as Float32Array);
  } finally {
    ckpt.close();
  }
  const [B, N] = g.get("hidden").shape;
  const common = {
    cfg: g.cfg,
    params,
    hidden: g.get("hidden").data,
    B,
    N,
    llmWidth: g.llmWidth,
    codebooks: g.get("codebooks").data,
    K: g.get("codebooks").shape[1],
  };
  const same = asvrDepthLossCpu({ ...common, codes: g.codes });
  assertClose([same.loss], g.get("loss").data, { atol: 0, rtol: 1e-6, label: "cpu loss" });
  const next = asvrDepthLossCpu({ ...common, codes: nextCodes(g.codes, B, N, g.cfg.depths) });
  assertClose([next.loss], g.get("loss_next").data, { atol: 0, rtol: 1e-6, label: "cpu loss_next" });
});
