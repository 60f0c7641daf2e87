// Parity with PyTorch: tests/golden/make_golden.py wrote tiny SigLIP and CLIP vision towers in HF
// folders, with their hidden states, a probe loss on hidden_states[-2] and every parameter gradient.
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { backward } from "../core/autograd.ts";
import type { Engine } from "../core/engine.ts";
import { mul } from "../core/kernels/elementwise/elementwise.ts";
import { sum } from "../core/kernels/reduce/reduce.ts";
import type { Tensor } from "../core/tensor.ts";
import { assertClose, gpuTest } from "../core/testing.ts";
import { Checkpoint } from "../io/safetensors.ts";
import { VisionEncoder } from "./vit.ts";

const FIXTURES = fileURLToPath(new URL("../tests/golden/fixtures/", import.meta.url));

async function readGolden(name: string): Promise<Map<string, { data: Float32Array; shape: number[] }>> {
  const ckpt = await Checkpoint.open(`${FIXTURES}${name}/golden.safetensors`);
  const out = new Map<string, { data: Float32Array; shape: number[] }>();
  try {
    for (const n of ckpt.names()) {
      out.set(n, { data: (await ckpt.read(n)) as Float32Array, shape: ckpt.info(n).shape });
    }
  } finally {
    ckpt.close();
  }
  return out;
}

/** Absolute tolerance scaled to the reference's magnitude: rtol relative to its largest entry. */
function scaled(ref: Float32Array, rel: number): { atol: number; rtol: number } {
  let m = 0;
  for (const v of ref) m = Math.max(m, Math.abs(v));
  return { atol: rel * Math.max(m, 1e-6), rtol: rel };
}

function disposeAll(enc: VisionEncoder): void {
  for (const t of enc.params().values()) t.dispose();
}

async function features(
  e: Engine,
  enc: VisionEncoder,
  px: Tensor,
  opts: Parameters<VisionEncoder["forward"]>[1],
) {
  return await e.tidy(() => e.noGrad(() => enc.forward(px, opts).read())) as Float32Array;
}

for (const name of ["siglip", "clip"] as const) {
  gpuTest(`VisionEncoder ${name} f32: features, loss and every gradient match PyTorch`, async (e) => {
    const g = await readGolden(name);
    const enc = await VisionEncoder.load(e, `${FIXTURES}${name}`);
    assert.equal(enc.cfg.arch, name);
    const pv = g.get("pixel_values")!;
    const px = e.tensor(pv.data, pv.shape);
    const tol = (n: string) => scaled(g.get(n)!.data, 1e-4);

    // hidden_states[0], [-1] (raw) and the post-layernorm of the last layer.
    for (
      const [key, opts] of [["features.0", { layer: 0 }], ["features.-1", {
        layer: -1,
        postLayerNorm: false,
      }]] as const
    ) {
      assertClose(await features(e, enc, px, opts), g.get(key)!.data, {
        ...tol(key),
        label: `${name} ${key}`,
      });
    }
    // SigLIP's last layer comes post-normed by default (its last_hidden_state); CLIP's only on request.
    const postOpts = name === "siglip" ? { layer: -1 } : { layer: -1, postLayerNorm: true };
    assertClose(await features(e, enc, px, postOpts), g.get("post_layernorm")!.data, {
      ...tol("post_layernorm"),
      label: `${name} post_layernorm`,
    });
    if (name === "clip") {
      // LLaVA's "patch" select: the CLS row dropped.
      const [B, T, C] = g.get("features.-2")!.shape;
      const all = g.get("features.-2")!.data;
      const patches = new Float32Array(B * (T - 1) * C);
      for (let b = 0; b < B; b++) {
        patches.set(all.subarray((b * T + 1) * C, (b + 1) * T * C), b * (T - 1) * C);
      }
      const got = await features(e, enc, px, { layer: -2, keepCls: false });
      assertClose(got, patches, { ...tol("features.-2"), label: "clip features.-2 without CLS" });
    }

    // loss = sum(hidden_states[-2] * probe), then every parameter gradient.
    const pr = g.get("probe")!;
    const { feat, loss } = await e.tidy(async () => {
      const f = enc.forward(px, { layer: -2 });
      const l = sum(mul(f, e.tensor(pr.data, pr.shape)));
      backward(l);
      return { feat: await f.read(), loss: await l.read() };
    });
    assertClose(feat, g.get("features.-2")!.data, { ...tol("features.-2"), label: `${name} features.-2` });
    assertClose(loss, g.get("loss")!.data, { atol: 0, rtol: 1e-4, label: `${name} loss` });
    let checked = 0;
    for (const [pname, t] of enc.params()) {
      const ref = g.get(`grad.${pname}`);
      assert.ok(ref, `golden has grad.${pname}`);
      const got = t.grad ? await t.grad.read() : new Float32Array(t.size); // not on the path: zero
      // The key bias's gradient is 0 analytically (softmax ignores a shift shared by a query's
      // logits), so PyTorch stores ~1e-15 and f32 rounding gives ~1e-6: scale by the key weight's.
      const scale = pname.endsWith("k_proj.bias") ? g.get(`grad.${pname.replace(/bias$/, "weight")}`)! : ref;
      assertClose(got, ref.data, { ...scaled(scale.data, 1e-4), label: `${name} grad ${pname}` });
      checked++;
    }
    assert.equal(checked, [...g.keys()].filter((k) => k.startsWith("grad.")).length);
    px.dispose();
    disposeAll(enc);
  });

  gpuTest(
    `VisionEncoder ${name} f16: features, loss and gradients match PyTorch within f16 tolerance`,
    async (e) => {
      if (!e.hasF16) return;
      const g = await readGolden(name);
      const enc = await VisionEncoder.load(e, `${FIXTURES}${name}`, { dtype: "f16" });
      const pv = g.get("pixel_values")!;
      const px = e.tensor(pv.data, pv.shape);
      // f16 storage of weights, activations and gradients with f32 math: measured worst errors are
      // ~1.5e-3 (features) and ~5e-3 (gradients) of the largest reference entry; the bounds allow ~3x.
      const key0 = "features.0";
      assertClose(await features(e, enc, px, { layer: 0 }), g.get(key0)!.data, {
        ...scaled(g.get(key0)!.data, 5e-3),
        label: `${name} f16 ${key0}`,
      });
      const pr = g.get("probe")!;
      const { feat, loss } = await e.tidy(async () => {
        const f = enc.forward(px, { layer: -2 });
        const l = sum(mul(f, e.tensor(pr.data, pr.shape, "f16")));
        backward(l);
        return { feat: await f.read(), loss: await l.read() };
      });
      const ref2 = g.get("features.-2")!.data;
      assertClose(feat, ref2, { ...scaled(ref2, 5e-3), label: `${name} f16 features.-2` });
      assertClose(loss, g.get("loss")!.data, { atol: 0, rtol: 5e-3, label: `${name} f16 loss` });
      for (const [pname, t] of enc.params()) {
        const ref = g.get(`grad.${pname}`)!;
        const got = t.grad ? await t.grad.read() : new Float32Array(t.size);
        const scale = pname.endsWith("k_proj.bias")
          ? g.get(`grad.${pname.replace(/bias$/, "weight")}`)!
          : ref;
        assertClose(got, ref.data, { ...scaled(scale.data, 1.5e-2), label: `${name} f16 grad ${pname}` });
      }
      px.dispose();
      disposeAll(enc);
    },
  );
}

gpuTest("VisionEncoder.load: a wrong prefix names the missing tensors", async (e) => {
  await assert.rejects(
    () => VisionEncoder.load(e, `${FIXTURES}siglip`, { prefix: "model.vision_tower." }),
    /param\(s\) missing from the checkpoint: "model\.vision_tower\.vision_model\./,
  );
});
