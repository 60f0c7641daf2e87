import assert from "node:assert/strict";
import { gpuTest } from "../core/testing.ts";
import { buildEncoderSlot, disposeEncoderSlot, encoderPositions, isGpuEncoderPart } from "./slot.ts";
import { parseEncoderSlot } from "./slot_config.ts";

const SIZES = { hiddenSize: 16, intermediateSize: 24, numLayers: 2, numHeads: 2, imageSize: 8, patchSize: 4 };

gpuTest("buildEncoderSlot: a random-init ViT, frozen; its positions count CLIP's kept CLS row", async (e) => {
  for (
    const [slot, N] of [
      [{ kind: "siglip", config: SIZES }, 4],
      [{ kind: "clip", config: SIZES }, 4],
      [{ kind: "clip", config: SIZES, keepCls: true }, 5],
    ] as const
  ) {
    const part = await buildEncoderSlot(e, parseEncoderSlot(slot, "encoder"), { dtype: "f32", seed: 1 });
    assert.ok(isGpuEncoderPart(part));
    assert.equal(part.enc.cfg.arch, slot.kind);
    assert.equal(encoderPositions(part), N, JSON.stringify(slot));
    assert.ok([...part.enc.params().values()].every((t) => !t.requiresGrad));
    await disposeEncoderSlot(part);
  }
});

gpuTest("buildEncoderSlot: a missing ONNX file is refused naming it", async (e) => {
  const cfg = parseEncoderSlot({ kind: "onnx", path: "/nonexistent/enc.onnx" }, "encoder");
  await assert.rejects(buildEncoderSlot(e, cfg, { dtype: "f32", seed: 1 }), /\/nonexistent\/enc\.onnx/);
});
