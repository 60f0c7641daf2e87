/**
 * Checks that the PyTorch golden fixtures (written by make_golden.py) are present and
 * self-consistent: the parameters are exactly the HF names and shapes that config.json implies,
 * every parameter has a `grad.<name>` of the same shape, and the stored losses follow from the
 * stored outputs. For the ASVR head it also recomputes the projector output, the teacher-forced
 * depth input and the classifier-bias gradients; for RQ it recomputes the codes. For the composed
 * VLM (asvr_vlm) it parses config.json with `parseConfig`, derives every parameter name from it,
 * checks the batch layout (image block, text-only row, labels) and recomputes the codes, the text,
 * visual and total losses and the classifier-bias gradients. Needs no GPU and no Python; it parses
 * safetensors with a few lines of its own.
 * @module
 */
import assert from "node:assert/strict";
import { parseConfig } from "../../models/config.ts";

const FIXTURES = new URL("./fixtures/", import.meta.url);
const LLMS = ["llama", "mistral", "qwen2"] as const;
const VISIONS = ["siglip", "clip"] as const;
const ASVR = ["asvr_head", "rq", "asvr_vlm"] as const;

/** One tensor of a safetensors file, decoded to numbers. */
interface StTensor {
  dtype: "F32" | "I64";
  shape: number[];
  data: Float32Array | BigInt64Array;
}

/** Parses a safetensors file: u64 LE header length, JSON header, raw little-endian data. */
function parseSafetensors(bytes: Uint8Array, file: string): Map<string, StTensor> {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = Number(view.getBigUint64(0, true));
  assert.ok(8 + n <= bytes.length, `${file}: header length ${n} runs past the file end`);
  assert.equal(n % 8, 0, `${file}: header length ${n} is not padded to a multiple of 8`);
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
  const base = 8 + n, out = new Map<string, StTensor>();
  const spans: [number, number][] = [];
  for (const [name, info] of Object.entries(header) as [string, Record<string, unknown>][]) {
    if (name === "__metadata__") continue;
    const dtype = info.dtype as string, shape = info.shape as number[];
    const [b, e] = info.data_offsets as [number, number];
    assert.ok(dtype === "F32" || dtype === "I64", `${file}: ${name} has dtype ${dtype}, want F32 or I64`);
    const size = dtype === "F32" ? 4 : 8;
    assert.equal(e - b, shape.reduce((a, s) => a * s, 1) * size, `${file}: ${name} byte span != shape`);
    assert.ok(base + e <= bytes.length, `${file}: ${name} runs past the file end`);
    spans.push([b, e]);
    const raw = bytes.slice(base + b, base + e).buffer;
    out.set(name, { dtype, shape, data: dtype === "F32" ? new Float32Array(raw) : new BigInt64Array(raw) });
  }
  spans.sort((x, y) => x[0] - y[0]);
  let at = 0;
  for (const [b, e] of spans) {
    assert.equal(b, at, `${file}: data spans leave a gap or overlap at byte ${at}`);
    at = e;
  }
  assert.equal(base + at, bytes.length, `${file}: trailing bytes after the last tensor`);
  return out;
}

/** A fixture folder: its config.json and both safetensors files. */
interface Fixture {
  config: Record<string, unknown>;
  model: Map<string, StTensor>;
  golden: Map<string, StTensor>;
  bytes: number;
}

/** Reads fixture `name`; `rq` has no parameters and so no model.safetensors (an empty map). */
async function loadFixture(name: string): Promise<Fixture> {
  const dir = new URL(`${name}/`, FIXTURES);
  const read = async (f: string) => {
    try {
      return await Deno.readFile(new URL(f, dir));
    } catch (err) {
      throw new Error(
        `tests/golden/fixtures/${name}/${f} is missing (${err}); regenerate with ` +
          "`/usr/bin/python3 tests/golden/make_golden.py`",
      );
    }
  };
  const cfgBytes = await read("config.json");
  const model = name === "rq" ? new Uint8Array(0) : await read("model.safetensors");
  const golden = await read("golden.safetensors");
  return {
    config: JSON.parse(new TextDecoder().decode(cfgBytes)),
    model: model.length ? parseSafetensors(model, `${name}/model.safetensors`) : new Map(),
    golden: parseSafetensors(golden, `${name}/golden.safetensors`),
    bytes: cfgBytes.length + model.length + golden.length,
  };
}

function num(cfg: Record<string, unknown>, key: string): number {
  const v = cfg[key];
  assert.equal(typeof v, "number", `config.json: ${key} must be a number, got ${JSON.stringify(v)}`);
  return v as number;
}

/** HF parameter names and shapes of a Llama / Mistral / Qwen2 decoder, from its config. */
function llmShapes(cfg: Record<string, unknown>): Map<string, number[]> {
  const C = num(cfg, "hidden_size"), I = num(cfg, "intermediate_size"), V = num(cfg, "vocab_size");
  const NH = num(cfg, "num_attention_heads"), NKV = num(cfg, "num_key_value_heads"), HS = C / NH;
  const bias = cfg.model_type === "qwen2";
  const m = new Map<string, number[]>([["model.embed_tokens.weight", [V, C]], ["model.norm.weight", [C]]]);
  for (let i = 0; i < num(cfg, "num_hidden_layers"); i++) {
    const p = `model.layers.${i}.`;
    m.set(p + "input_layernorm.weight", [C]);
    m.set(p + "post_attention_layernorm.weight", [C]);
    for (const [proj, rows] of [["q_proj", NH * HS], ["k_proj", NKV * HS], ["v_proj", NKV * HS]] as const) {
      m.set(p + `self_attn.${proj}.weight`, [rows, C]);
      if (bias) m.set(p + `self_attn.${proj}.bias`, [rows]);
    }
    m.set(p + "self_attn.o_proj.weight", [C, NH * HS]);
    m.set(p + "mlp.gate_proj.weight", [I, C]);
    m.set(p + "mlp.up_proj.weight", [I, C]);
    m.set(p + "mlp.down_proj.weight", [C, I]);
  }
  if (!cfg.tie_word_embeddings) m.set("lm_head.weight", [V, C]);
  return m;
}

/** HF parameter names and shapes of a SigLIP / CLIP vision tower, from its config. */
function visionShapes(cfg: Record<string, unknown>): Map<string, number[]> {
  const C = num(cfg, "hidden_size"), I = num(cfg, "intermediate_size"), p = num(cfg, "patch_size");
  const N = (num(cfg, "image_size") / p) ** 2, clip = cfg.model_type === "clip_vision_model";
  const e = "vision_model.embeddings.";
  const m = new Map<string, number[]>([
    [e + "patch_embedding.weight", [C, num(cfg, "num_channels"), p, p]],
    [e + "position_embedding.weight", [clip ? N + 1 : N, C]],
    ["vision_model.post_layernorm.weight", [C]],
    ["vision_model.post_layernorm.bias", [C]],
  ]);
  if (clip) {
    m.set(e + "class_embedding", [C]);
    m.set("vision_model.pre_layrnorm.weight", [C]);
    m.set("vision_model.pre_layrnorm.bias", [C]);
  } else {
    m.set(e + "patch_embedding.bias", [C]);
  }
  for (let i = 0; i < num(cfg, "num_hidden_layers"); i++) {
    const l = `vision_model.encoder.layers.${i}.`;
    for (const ln of ["layer_norm1", "layer_norm2"]) {
      m.set(l + `${ln}.weight`, [C]);
      m.set(l + `${ln}.bias`, [C]);
    }
    for (const proj of ["q_proj", "k_proj", "v_proj", "out_proj"]) {
      m.set(l + `self_attn.${proj}.weight`, [C, C]);
      m.set(l + `self_attn.${proj}.bias`, [C]);
    }
    m.set(l + "mlp.fc1.weight", [I, C]);
    m.set(l + "mlp.fc1.bias", [I]);
    m.set(l + "mlp.fc2.weight", [C, I]);
    m.set(l + "mlp.fc2.bias", [C]);
  }
  return m;
}

function get(t: Map<string, StTensor>, name: string, dtype: "F32" | "I64", shape: number[]): StTensor {
  const x = t.get(name);
  assert.ok(x, `golden.safetensors lacks ${name}`);
  assert.equal(x.dtype, dtype, `${name}: dtype`);
  assert.deepEqual(x.shape, shape, `${name}: shape`);
  return x;
}

/**
 * Model params are exactly `expected`; golden has grad.<name> of the same shape for each, all finite.
 * `inputGrads` counts the grad.* entries of inputs rather than parameters (asvr_head's grad.hidden).
 */
function checkParamsAndGrads(f: Fixture, expected: Map<string, number[]>, inputGrads = 0): void {
  assert.deepEqual([...f.model.keys()].sort(), [...expected.keys()].sort(), "model.safetensors names");
  for (const [name, shape] of expected) {
    const p = f.model.get(name)!;
    assert.equal(p.dtype, "F32", `${name}: dtype`);
    assert.deepEqual(p.shape, shape, `${name}: shape vs config.json`);
    assert.ok((p.data as Float32Array).every(Number.isFinite), `${name}: non-finite value`);
    const g = get(f.golden, `grad.${name}`, "F32", shape);
    assert.ok((g.data as Float32Array).every(Number.isFinite), `grad.${name}: non-finite value`);
  }
  const grads = [...f.golden.keys()].filter((k) => k.startsWith("grad."));
  assert.equal(grads.length, expected.size + inputGrads, "golden.safetensors has a grad.* with no parameter");
}

const maxAbs = (a: Float32Array) => a.reduce((m, v) => Math.max(m, Math.abs(v)), 0);

for (const name of LLMS) {
  Deno.test(`golden ${name}: params match config.json, grads match params, loss follows logits`, async () => {
    const f = await loadFixture(name), cfg = f.config;
    assert.equal(cfg.model_type, name);
    assert.equal(num(cfg, "hidden_size") / num(cfg, "num_attention_heads"), num(cfg, "head_dim"));
    checkParamsAndGrads(f, llmShapes(cfg));
    assert.ok(f.bytes < 1 << 20, `${name}: ${f.bytes} bytes, want < 1 MiB`);
    const V = num(cfg, "vocab_size");
    const ids = get(f.golden, "input_ids", "I64", f.golden.get("input_ids")?.shape ?? []);
    const [B, T] = ids.shape;
    assert.equal(ids.shape.length, 2, "input_ids is [B, T]");
    const labels = get(f.golden, "labels", "I64", [B, T]).data as BigInt64Array;
    const logits = get(f.golden, "logits", "F32", [B, T, V]).data as Float32Array;
    const loss = get(f.golden, "loss", "F32", [1]).data[0] as number;
    for (let b = 0; b < B; b++) {
      for (let t = 0; t < T; t++) {
        const id = Number((ids.data as BigInt64Array)[b * T + t]), y = Number(labels[b * T + t]);
        assert.ok(id >= 0 && id < V, `input_ids[${b},${t}] = ${id} outside the vocabulary`);
        assert.equal(y, t < 3 ? -100 : id, `labels[${b},${t}]`);
      }
    }
    // HF causal-LM loss: logits[:, :-1] against labels[:, 1:], mean over supervised positions.
    let total = 0, count = 0;
    for (let b = 0; b < B; b++) {
      for (let t = 0; t + 1 < T; t++) {
        const y = Number(labels[b * T + t + 1]);
        if (y === -100) continue;
        const row = logits.subarray((b * T + t) * V, (b * T + t + 1) * V);
        const m = row.reduce((a, v) => Math.max(a, v), -Infinity);
        const lse = m + Math.log(row.reduce((a, v) => a + Math.exp(v - m), 0));
        total += lse - row[y];
        count++;
      }
    }
    assert.ok(Math.abs(total / count - loss) <= 1e-5 * Math.abs(loss), `loss ${loss} vs ${total / count}`);
    assert.ok(maxAbs(f.golden.get("grad.model.embed_tokens.weight")!.data as Float32Array) > 0);
    switch (name) {
      case "llama":
        assert.equal(cfg.tie_word_embeddings, false);
        break;
      case "mistral":
        assert.ok(num(cfg, "sliding_window") < T, "mistral: sliding_window must be < T to be tested");
        break;
      case "qwen2":
        assert.equal(cfg.tie_word_embeddings, true);
        assert.equal(cfg.use_sliding_window, false);
        break;
      default: {
        const never: never = name;
        throw new Error(`unknown LLM fixture ${never}`);
      }
    }
  });
}

for (const name of VISIONS) {
  Deno.test(`golden ${name}: params match config.json, grads match params, loss = sum(features.-2 * probe)`, async () => {
    const f = await loadFixture(name), cfg = f.config;
    const clip = name === "clip";
    assert.equal(cfg.model_type, clip ? "clip_vision_model" : "siglip_vision_model");
    checkParamsAndGrads(f, visionShapes(cfg));
    assert.ok(f.bytes < 1 << 20, `${name}: ${f.bytes} bytes, want < 1 MiB`);
    const S = num(cfg, "image_size"), C = num(cfg, "hidden_size"), L = num(cfg, "num_hidden_layers");
    const N = (S / num(cfg, "patch_size")) ** 2 + (clip ? 1 : 0);
    const px = get(f.golden, "pixel_values", "F32", f.golden.get("pixel_values")?.shape ?? []);
    const B = px.shape[0];
    assert.deepEqual(px.shape, [B, num(cfg, "num_channels"), S, S], "pixel_values shape");
    assert.ok((px.data as Float32Array).every((v) => v >= -1 && v <= 1), "pixel_values outside [-1, 1]");
    for (const k of ["features.0", "features.-1", "features.-2", "post_layernorm", "probe"]) {
      get(f.golden, k, "F32", [B, N, C]);
    }
    const feat = f.golden.get("features.-2")!.data as Float32Array;
    const probe = f.golden.get("probe")!.data as Float32Array;
    const loss = get(f.golden, "loss", "F32", [1]).data[0] as number;
    let dot = 0;
    for (let i = 0; i < feat.length; i++) dot += feat[i] * probe[i];
    assert.ok(Math.abs(dot - loss) <= 1e-5 * (1 + Math.abs(loss)), `loss ${loss} vs ${dot}`);
    // Nothing after layer L-2 reaches hidden_states[-2]: those gradients are stored, and zero.
    for (const [k, g] of f.golden) {
      if (!k.startsWith("grad.")) continue;
      const after = k.startsWith(`grad.vision_model.encoder.layers.${L - 1}.`) ||
        k.startsWith("grad.vision_model.post_layernorm.");
      const m = maxAbs(g.data as Float32Array);
      if (after) assert.equal(m, 0, `${k} should be zero`);
      else if (!k.endsWith("self_attn.k_proj.bias")) assert.ok(m > 0, `${k} should be nonzero`);
    }
  });
}

/** The `codebook_sizes` list of asvr_head/config.json (one positive integer per depth). */
function codebookSizes(cfg: Record<string, unknown>): number[] {
  const v = cfg.codebook_sizes;
  assert.ok(
    Array.isArray(v) && v.every((k) => Number.isInteger(k) && k > 0),
    `config.json: codebook_sizes must be a list of positive integers, got ${JSON.stringify(v)}`,
  );
  assert.equal(v.length, num(cfg, "depths"), "config.json: codebook_sizes needs one entry per depth");
  return v as number[];
}

/** Names and shapes of the ASVR projector + RQ depth-transformer head, from asvr_head/config.json. */
function headShapes(cfg: Record<string, unknown>): Map<string, number[]> {
  const Dl = num(cfg, "d_llm"), W = num(cfg, "width"), D = num(cfg, "depths"), Dc = num(cfg, "codebook_dim");
  const m = new Map<string, number[]>([
    ["projector.0.weight", [W, Dl]],
    ["projector.0.bias", [W]],
    ["projector.2.weight", [W, W]],
    ["projector.2.bias", [W]],
    ["in_mlp_1.weight", [W, Dc]],
    ["in_mlp_1.bias", [W]],
    ["headnorm.weight", [W]],
  ]);
  for (let i = 0; i < num(cfg, "layers"); i++) {
    const l = `head_transformer.${i}.`;
    m.set(l + "self_attention.in_proj_weight", [3 * W, W]);
    m.set(l + "self_attention.in_proj_bias", [3 * W]);
    m.set(l + "self_attention.out_proj.weight", [W, W]);
    m.set(l + "self_attention.out_proj.bias", [W]);
    m.set(l + "layernorm1.weight", [W]);
    m.set(l + "layernorm2.weight", [W]);
    m.set(l + "linear1.weight", [2 * W, D * W]);
    m.set(l + "linear1.bias", [2 * W]);
    m.set(l + "linear2.weight", [W, D * 2 * W]);
    m.set(l + "linear2.bias", [W]);
  }
  codebookSizes(cfg).forEach((V, d) => {
    m.set(`heads.${d}.weight`, [V, W]);
    m.set(`heads.${d}.bias`, [V]);
  });
  return m;
}

/** erf by Abramowitz & Stegun 7.1.26 (absolute error < 1.5e-7): enough for exact-GELU checks. */
function erf(x: number): number {
  const s = Math.sign(x), a = Math.abs(x), t = 1 / (1 + 0.3275911 * a);
  const p = ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t;
  return s * (1 - p * Math.exp(-a * a));
}

/** y [n, out] = x [n, in] W^T + b, with W [out, in] (HF Linear layout), in f64. */
function linear(x: ArrayLike<number>, n: number, w: Float32Array, b: Float32Array): Float64Array {
  const out = b.length, inF = w.length / out, y = new Float64Array(n * out);
  for (let r = 0; r < n; r++) {
    for (let o = 0; o < out; o++) {
      let acc = b[o];
      for (let i = 0; i < inF; i++) acc += x[r * inF + i] * w[o * inF + i];
      y[r * out + o] = acc;
    }
  }
  return y;
}

/** Cross-entropy of one logit row against class y (log-sum-exp minus the target logit). */
function crossEntropy(row: Float32Array, y: number): number {
  const m = row.reduce((a, v) => Math.max(a, v), -Infinity);
  return m + Math.log(row.reduce((a, v) => a + Math.exp(v - m), 0)) - row[y];
}

/** ASVR visual loss from stored logits: mean over depths d of the mean CE of logits.d rows vs codes[..., d]. */
function visualLoss(
  logits: Float32Array[],
  sizes: number[],
  codes: (row: number, d: number) => number,
): number {
  let total = 0;
  logits.forEach((lg, d) => {
    const V = sizes[d], rows = lg.length / V;
    let acc = 0;
    for (let r = 0; r < rows; r++) acc += crossEntropy(lg.subarray(r * V, (r + 1) * V), codes(r, d));
    total += acc / rows;
  });
  return total / logits.length;
}

const close = (got: number, want: number, tol: number) => Math.abs(got - want) <= tol * (1 + Math.abs(want));

Deno.test("golden asvr_head: params match config.json, projector, depth input and loss recompute", async () => {
  const f = await loadFixture("asvr_head"), cfg = f.config, g = f.golden;
  assert.equal(cfg.model_type, "asvr_rq_head");
  const Dl = num(cfg, "d_llm"), W = num(cfg, "width"), D = num(cfg, "depths"), Dc = num(cfg, "codebook_dim");
  const sizes = codebookSizes(cfg), K = sizes[0];
  assert.equal(W % num(cfg, "num_heads"), 0, "config.json: width must divide into num_heads heads");
  assert.ok(sizes.every((k) => k === K), "the fixture stores one [D, K, Dc] codebook tensor: equal sizes");
  checkParamsAndGrads(f, headShapes(cfg), 1);
  assert.ok(f.bytes < 1 << 20, `asvr_head: ${f.bytes} bytes, want < 1 MiB`);
  const p = (name: string) => f.model.get(name)!.data as Float32Array;
  const hiddenT = get(g, "hidden", "F32", g.get("hidden")?.shape ?? []);
  const [B, N] = hiddenT.shape, rows = B * N, hidden = hiddenT.data as Float32Array;
  assert.deepEqual(hiddenT.shape, [B, N, Dl], "hidden is [B, N, d_llm]");
  const codes = get(g, "codes", "I64", [B, N, D]).data as BigInt64Array;
  const code = (row: number, d: number) => Number(codes[row * D + d]);
  for (let r = 0; r < rows; r++) {
    for (let d = 0; d < D; d++) assert.ok(code(r, d) >= 0 && code(r, d) < sizes[d], `codes[${r}, ${d}]`);
  }
  const codebooks = get(g, "codebooks", "F32", [D, K, Dc]).data as Float32Array;

  // Projector: o = W2 gelu(W1 h + b1) + b2, exact (erf) GELU.
  const z = linear(hidden, rows, p("projector.0.weight"), p("projector.0.bias"));
  const act = z.map((v) => 0.5 * v * (1 + erf(v / Math.SQRT2)));
  const o = linear(act, rows, p("projector.2.weight"), p("projector.2.bias"));
  const projected = get(g, "projected", "F32", [B, N, W]).data as Float32Array;
  projected.forEach((v, i) => assert.ok(close(v, o[i], 1e-5), `projected[${i}] ${v} vs ${o[i]}`));

  // Depth input: slot 0 = o, slot d = in_mlp_1(sum_{j<d} codebooks[j][codes[..., j]]).
  const input = get(g, "depth_input", "F32", [B, N, D, W]).data as Float32Array;
  const cum = new Float64Array(rows * Dc);
  for (let d = 0; d < D; d++) {
    const slot = d === 0 ? o : linear(cum, rows, p("in_mlp_1.weight"), p("in_mlp_1.bias"));
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < W; c++) {
        const got = input[(r * D + d) * W + c], want = slot[r * W + c];
        assert.ok(close(got, want, 1e-5), `depth_input[row ${r}, slot ${d}, ${c}] ${got} vs ${want}`);
      }
      for (let c = 0; c < Dc; c++) cum[r * Dc + c] += codebooks[(d * K + code(r, d)) * Dc + c];
    }
  }

  // Losses from the stored logits ("same" and "next" alignment).
  const logits = sizes.map((V, d) => get(g, `logits.${d}`, "F32", [B, N, V]).data as Float32Array);
  const loss = get(g, "loss", "F32", [1]).data[0] as number;
  const want = visualLoss(logits, sizes, code);
  assert.ok(close(loss, want, 1e-5), `loss ${loss} vs ${want}`);
  const logitsNext = sizes.map((V, d) =>
    get(g, `logits_next.${d}`, "F32", [B, N - 1, V]).data as Float32Array
  );
  const lossNext = get(g, "loss_next", "F32", [1]).data[0] as number;
  // Row r of logits_next is (b, i) with i < N - 1; its target is patch i + 1 of the same image.
  const wantNext = visualLoss(logitsNext, sizes, (r, d) => {
    const b = Math.floor(r / (N - 1)), i = r % (N - 1);
    return code(b * N + i + 1, d);
  });
  assert.ok(close(lossNext, wantNext, 1e-5), `loss_next ${lossNext} vs ${wantNext}`);

  // d loss / d heads.{d}.bias = (softmax(row) - onehot(code)) summed over rows / (rows * D).
  sizes.forEach((V, d) => {
    const gb = get(g, `grad.heads.${d}.bias`, "F32", [V]).data as Float32Array, acc = new Float64Array(V);
    for (let r = 0; r < rows; r++) {
      const row = logits[d].subarray(r * V, (r + 1) * V), m = row.reduce((a, v) => Math.max(a, v), -Infinity);
      const s = row.reduce((a, v) => a + Math.exp(v - m), 0);
      for (let v = 0; v < V; v++) acc[v] += Math.exp(row[v] - m) / s - (v === code(r, d) ? 1 : 0);
    }
    acc.forEach((v, i) => assert.ok(Math.abs(gb[i] - v / (rows * D)) < 1e-6, `grad.heads.${d}.bias[${i}]`));
  });

  // The FFN biases exist but are unused: zero gradients; every other gradient is nonzero.
  for (const [k, t] of g) {
    if (!k.startsWith("grad.")) continue;
    const m = maxAbs(t.data as Float32Array);
    if (/^grad\.head_transformer\.\d+\.linear[12]\.bias$/.test(k)) assert.equal(m, 0, `${k} should be zero`);
    else assert.ok(m > 0, `${k} should be nonzero`);
  }
  get(g, "grad.hidden", "F32", [B, N, Dl]);
  // "next": the last patch of each image predicts nothing, so its hidden state gets no gradient.
  const gn = get(g, "grad_next.hidden", "F32", [B, N, Dl]).data as Float32Array;
  for (let b = 0; b < B; b++) {
    for (let i = 0; i < N; i++) {
      const m = maxAbs(gn.subarray((b * N + i) * Dl, (b * N + i + 1) * Dl));
      if (i === N - 1) assert.equal(m, 0, `grad_next.hidden[${b}, ${i}] should be zero`);
      else assert.ok(m > 0, `grad_next.hidden[${b}, ${i}] should be nonzero`);
    }
  }
});

Deno.test("golden rq: codes are the squared-L2 residual argmins, free of near-ties", async () => {
  const f = await loadFixture("rq"), cfg = f.config, g = f.golden;
  assert.equal(cfg.model_type, "asvr_rq");
  assert.equal(f.model.size, 0, "rq has no parameters");
  const R = num(cfg, "rows"), D = num(cfg, "depths"), K = num(cfg, "codebook_size");
  const Dc = num(cfg, "codebook_dim"), minGap = num(cfg, "min_relative_gap");
  const x = get(g, "features", "F32", [R, Dc]).data as Float32Array;
  const cb = get(g, "codebooks", "F32", [D, K, Dc]).data as Float32Array;
  const codes = get(g, "codes", "I64", [R, D]).data as BigInt64Array;
  const quantized = get(g, "quantized", "F32", [R, Dc]).data as Float32Array;
  const seen = new Set<number>();
  for (let row = 0; row < R; row++) {
    const { codes: want, gap } = rqRow(x.subarray(row * Dc, (row + 1) * Dc), cb, D, K);
    assert.ok(gap > minGap, `codes[${row}, *]: near-tie (relative gap ${gap})`);
    const q = new Float64Array(Dc);
    want.forEach((best, d) => {
      assert.equal(Number(codes[row * D + d]), best, `codes[${row}, ${d}]`);
      seen.add(d * K + best);
      for (let c = 0; c < Dc; c++) q[c] += cb[(d * K + best) * Dc + c];
    });
    q.forEach((v, c) => assert.ok(close(quantized[row * Dc + c], v, 1e-6), `quantized[${row}, ${c}]`));
  }
  assert.ok(seen.size >= 4 * D, "rq codes should be spread over the codebooks");
});

Deno.test("golden: all fixtures together stay under 4 MiB", async () => {
  let total = 0;
  for (const name of [...LLMS, ...VISIONS, ...ASVR]) total += (await loadFixture(name)).bytes;
  assert.ok(total < 4 << 20, `fixtures hold ${total} bytes, want < 4 MiB`);
});

/** Parameter-name prefixes of the composed VLM (models/asvr_model.ts PARAM_PREFIXES). */
const VLM_PREFIX = {
  projector: "model.mm_projector.",
  encoder: "model.vision_tower.vision_tower.",
  head: "visual_head.",
} as const;

/** `obj.key` as an object (config.json sections). */
function section(obj: Record<string, unknown>, key: string): Record<string, unknown> {
  const v = obj[key];
  assert.ok(
    typeof v === "object" && v !== null && !Array.isArray(v),
    `config.json: ${key} must be an object`,
  );
  return v as Record<string, unknown>;
}

/**
 * Residual quantization of one row x [Dc] by codebooks [D, K, Dc] (squared L2, lowest index on
 * ties): the codes and the smallest winning margin relative to |r|^2 + max_k |C_d[k]|^2.
 */
function rqRow(
  x: ArrayLike<number>,
  cb: Float32Array,
  D: number,
  K: number,
): { codes: number[]; gap: number } {
  const Dc = x.length, r = Float64Array.from(x), codes: number[] = [];
  let gap = Infinity;
  for (let d = 0; d < D; d++) {
    let best = -1, bestDist = Infinity, second = Infinity, maxNorm = 0;
    for (let k = 0; k < K; k++) {
      let dist = 0, norm = 0;
      for (let c = 0; c < Dc; c++) {
        const e = cb[(d * K + k) * Dc + c];
        dist += (r[c] - e) ** 2;
        norm += e * e;
      }
      maxNorm = Math.max(maxNorm, norm);
      if (dist < bestDist) [second, bestDist, best] = [bestDist, dist, k];
      else if (dist < second) second = dist;
    }
    gap = Math.min(gap, (second - bestDist) / (r.reduce((a, v) => a + v * v, 0) + maxNorm));
    codes.push(best);
    for (let c = 0; c < Dc; c++) r[c] -= cb[(d * K + best) * Dc + c];
  }
  return { codes, gap };
}

Deno.test("golden asvr_vlm: config parses, params and grads by part, batch layout, codes and losses recompute", async () => {
  const f = await loadFixture("asvr_vlm"), g = f.golden;
  const cfg = parseConfig(f.config, "asvr_vlm/config.json");
  assert.deepEqual(cfg, parseConfig(cfg, "again"), "config.json is complete: parsing fills no default");
  assert.deepEqual(cfg, f.config, "config.json holds every field explicitly");
  assert.ok(f.bytes < 1 << 20, `asvr_vlm: ${f.bytes} bytes, want < 1 MiB`);
  const encCfg = section(section(f.config, "encoder"), "config"),
    llmCfg = section(section(f.config, "llm"), "config");
  const head = section(f.config, "head"), tok = (f.config.visualTokenizers as Record<string, unknown>[])[0];
  const loss = section(f.config, "loss");
  assert.deepEqual(loss, { textWeight: 1, visualWeight: 1, alignment: "same", textOnlyRows: "mask" });

  // Expected names: the LLM's HF names, the projector, the encoder's and the head's under their prefixes.
  const Cv = num(encCfg, "hiddenSize"), C = num(llmCfg, "hiddenSize"), V = num(llmCfg, "vocabSize");
  const D = num(tok, "depths"), K = num(tok, "codebookSize");
  const shapes = llmShapes({
    model_type: "llama",
    hidden_size: C,
    intermediate_size: num(llmCfg, "intermediateSize"),
    vocab_size: V,
    num_attention_heads: num(llmCfg, "numHeads"),
    num_key_value_heads: num(llmCfg, "numKvHeads"),
    num_hidden_layers: num(llmCfg, "numLayers"),
    tie_word_embeddings: llmCfg.tieWordEmbeddings,
  });
  for (
    const [n, s] of [["0.weight", [C, Cv]], ["0.bias", [C]], ["2.weight", [C, C]], ["2.bias", [C]]] as const
  ) {
    shapes.set(VLM_PREFIX.projector + n, [...s]);
  }
  const vision = visionShapes({
    model_type: "siglip_vision_model",
    hidden_size: Cv,
    intermediate_size: num(encCfg, "intermediateSize"),
    patch_size: num(encCfg, "patchSize"),
    image_size: num(encCfg, "imageSize"),
    num_channels: 3,
    num_hidden_layers: num(encCfg, "numLayers"),
  });
  for (const [n, s] of vision) shapes.set(VLM_PREFIX.encoder + n, s);
  const headParams = headShapes({
    d_llm: C,
    width: num(head, "width"),
    depths: num(head, "depths"),
    codebook_dim: num(head, "codebookDim"),
    layers: num(head, "layers"),
    codebook_sizes: head.codebookSizes,
  });
  for (const [n, s] of headParams) shapes.set(VLM_PREFIX.head + n, s);
  // Frozen, so without a stored gradient: the encoder and the head's unused FFN biases.
  const frozen = (n: string) =>
    n.startsWith(VLM_PREFIX.encoder) || /^visual_head\.head_transformer\.\d+\.linear[12]\.bias$/.test(n);
  assert.deepEqual([...f.model.keys()].sort(), [...shapes.keys()].sort(), "model.safetensors names");
  for (const [name, shape] of shapes) {
    assert.deepEqual(f.model.get(name)!.shape, shape, `${name}: shape vs config.json`);
    if (frozen(name)) assert.ok(!g.has(`grad.${name}`), `grad.${name}: a frozen parameter has no gradient`);
    else {
      const m = maxAbs(get(g, `grad.${name}`, "F32", shape).data as Float32Array);
      assert.ok(m > 0 && Number.isFinite(m), `grad.${name}: max |g| = ${m}`);
    }
  }
  const trainable = [...shapes.keys()].filter((n) => !frozen(n)).length;
  assert.equal(
    [...g.keys()].filter((k) => k.startsWith("grad.")).length,
    trainable,
    "one grad.* per trainable",
  );

  // The batch: <s>, an image block of N contiguous positions (placeholder ids, -100 labels) in the
  // image rows; no image positions and a zero image in the text-only rows.
  const S = num(encCfg, "imageSize"), N = (S / num(encCfg, "patchSize")) ** 2;
  const ids = get(g, "input_ids", "I64", g.get("input_ids")?.shape ?? []);
  const [B, T] = ids.shape;
  const id = (b: number, t: number) => Number((ids.data as BigInt64Array)[b * T + t]);
  const labelsData = get(g, "labels", "I64", [B, T]).data as BigInt64Array;
  const label = (b: number, t: number) => Number(labelsData[b * T + t]);
  const pos = get(g, "image_positions", "I64", [B, N]).data as BigInt64Array;
  const hasImage = Array.from(get(g, "has_image", "I64", [B]).data as BigInt64Array, (v) => v === 1n);
  assert.deepEqual(hasImage, [true, false], "row 0 has an image, row 1 is text-only");
  const pixels = get(g, "pixel_values", "F32", [B, 3, S, S]).data as Float32Array;
  let supervised = 0;
  for (let b = 0; b < B; b++) {
    const start = hasImage[b] ? Number(pos[b * N]) : -1;
    const isImage = (t: number) => hasImage[b] && t >= start && t < start + N;
    const px = pixels.subarray(b * 3 * S * S, (b + 1) * 3 * S * S);
    if (hasImage[b]) {
      assert.equal(start, 1, `row ${b}: the image follows <s>`);
      for (let i = 0; i < N; i++) {
        assert.equal(Number(pos[b * N + i]), start + i, `image_positions[${b}, ${i}]`);
      }
      assert.ok(px.some((v) => v !== 0) && px.every((v) => v >= -1 && v <= 1), `pixel_values[${b}]`);
    } else {
      for (let i = 0; i < N; i++) assert.equal(Number(pos[b * N + i]), -1, `image_positions[${b}, ${i}]`);
      assert.ok(px.every((v) => v === 0), `pixel_values[${b}]: a text-only row's image is zero`);
    }
    assert.equal(id(b, 0), 1, `input_ids[${b}, 0] is <s>`);
    assert.equal(label(b, 0), -100, `labels[${b}, 0]`);
    for (let t = 1; t < T; t++) {
      if (isImage(t)) {
        assert.equal(id(b, t), -200, `input_ids[${b}, ${t}]: the image placeholder`);
        assert.equal(label(b, t), -100, `labels[${b}, ${t}] at an image position`);
      } else {
        assert.ok(id(b, t) >= 0 && id(b, t) < V, `input_ids[${b}, ${t}] in the vocabulary`);
        assert.ok(label(b, t) === -100 || label(b, t) === id(b, t), `labels[${b}, ${t}]`);
        if (label(b, t) !== -100) supervised++;
      }
    }
    // A prompt prefix is unsupervised: the first text token after <s> and the image.
    assert.equal(label(b, hasImage[b] ? start + N : 1), -100, `row ${b}: the prompt is unsupervised`);
  }
  assert.ok(supervised >= 10, `${supervised} supervised tokens`);

  // Codes: RQ of the tokenizer's features of the image rows, free of near-ties; -100 in text-only rows.
  const feats = get(g, "features.tokenizer", "F32", [B, N, Cv]).data as Float32Array;
  get(g, "features.projector", "F32", [B, N, Cv]);
  const cb = get(g, "codebooks", "F32", [D, K, Cv]).data as Float32Array;
  const codes = get(g, "codes", "I64", [B, N, D]).data as BigInt64Array;
  const code = (b: number, i: number, d: number) => Number(codes[(b * N + i) * D + d]);
  const imageRows = hasImage.flatMap((h, b) => (h ? [b] : []));
  const used = new Set<number>();
  for (let b = 0; b < B; b++) {
    for (let i = 0; i < N; i++) {
      if (!hasImage[b]) {
        for (let d = 0; d < D; d++) assert.equal(code(b, i, d), -100, `codes[${b}, ${i}, ${d}]: masked`);
        continue;
      }
      const r = rqRow(feats.subarray((b * N + i) * Cv, (b * N + i + 1) * Cv), cb, D, K);
      for (let d = 0; d < D; d++) assert.equal(code(b, i, d), r.codes[d], `codes[${b}, ${i}, ${d}]`);
      assert.ok(r.gap > 1e-3, `codes[${b}, ${i}]: near-tie (relative gap ${r.gap})`);
      r.codes.forEach((k, d) => used.add(d * K + k));
    }
  }
  assert.ok(used.size >= 4 * D, "codes should be spread over the codebooks");

  // Text loss from the logits; visual loss from the head's logits (image rows); total = text + visual.
  const logits = get(g, "logits", "F32", [B, T, V]).data as Float32Array;
  let text = 0;
  for (let b = 0; b < B; b++) {
    for (let t = 0; t + 1 < T; t++) {
      const y = label(b, t + 1);
      if (y !== -100) text += crossEntropy(logits.subarray((b * T + t) * V, (b * T + t + 1) * V), y);
    }
  }
  text /= supervised;
  const sizes = new Array(D).fill(K);
  const headLogits = sizes.map((k, d) =>
    get(g, `head_logits.${d}`, "F32", [imageRows.length, N, k]).data as Float32Array
  );
  const visual = visualLoss(headLogits, sizes, (r, d) => code(imageRows[Math.floor(r / N)], r % N, d));
  const stored = (k: string) => get(g, k, "F32", [1]).data[0] as number;
  assert.ok(close(stored("loss.text"), text, 1e-5), `loss.text ${stored("loss.text")} vs ${text}`);
  assert.ok(close(stored("loss.visual"), visual, 1e-5), `loss.visual ${stored("loss.visual")} vs ${visual}`);
  assert.ok(close(stored("loss.total"), text + visual, 1e-5), `loss.total ${stored("loss.total")}`);

  // d total / d heads.{d}.bias comes from the visual term alone: sum of (softmax - onehot) / (rows * D).
  const rows = imageRows.length * N;
  sizes.forEach((k, d) => {
    const gb = get(g, `grad.${VLM_PREFIX.head}heads.${d}.bias`, "F32", [k]).data as Float32Array;
    const acc = new Float64Array(k);
    for (let r = 0; r < rows; r++) {
      const row = headLogits[d].subarray(r * k, (r + 1) * k),
        m = row.reduce((a, v) => Math.max(a, v), -Infinity);
      const s = row.reduce((a, v) => a + Math.exp(v - m), 0);
      const y = code(imageRows[Math.floor(r / N)], r % N, d);
      for (let v = 0; v < k; v++) acc[v] += Math.exp(row[v] - m) / s - (v === y ? 1 : 0);
    }
    acc.forEach((v, i) => assert.ok(Math.abs(gb[i] - v / (rows * D)) < 1e-6, `grad heads.${d}.bias[${i}]`));
  });
});
