import assert from "node:assert/strict";
import type { Engine } from "../core/engine.ts";
import { gpuTest } from "../core/testing.ts";
import { AsvrDepthHead } from "./asvr_depth.ts";
import { buildHead } from "./mod.ts";
import type { HeadConfig } from "./mod.ts";
import type { HeadContext, VisualHead } from "./head.ts";
import { LinearHead } from "./linear.ts";
import { NoneHead } from "./none.ts";
import { registerHead } from "./mod.ts";

const dispose = (h: VisualHead) => {
  for (const t of h.params().values()) t.dispose();
};

gpuTest("buildHead: each built-in kind, with defaults filled and the context applied", (e) => {
  const ctx = { llmWidth: 12, seed: 1 };
  assert.ok(buildHead(e, { kind: "none" }, ctx) instanceof NoneHead);
  const lin = buildHead(e, { kind: "linear", width: 8, depths: 2, codebookSizes: [3, 4] }, ctx);
  assert.ok(lin instanceof LinearHead);
  assert.deepEqual(lin.params().get("proj.weight")!.shape, [8, 12]);
  // A hand-written config without its defaults still builds (buildHead validates and fills them).
  const asvr = buildHead(
    e,
    { kind: "asvr_depth", width: 16, depths: 2, codebookSizes: [3, 3], codebookDim: 4 } as HeadConfig,
    {
      ...ctx,
      dtype: e.hasF16 ? "f16" : "f32",
    },
  ) as AsvrDepthHead;
  assert.ok(asvr instanceof AsvrDepthHead);
  assert.equal(asvr.cfg.layers, 3);
  assert.equal(asvr.cfg.heads, 1);
  assert.equal(asvr.params().get("projector.0.weight")!.dtype, asvr.dtype);
  assert.equal([...asvr.params().keys()].filter((n) => n.startsWith("head_transformer.")).length, 3 * 10);
  assert.throws(() => buildHead(e, { kind: "linear", depths: 0 } as HeadConfig, ctx), /head\.depths/);
  assert.throws(() => buildHead(e, { kind: "none" }, { llmWidth: 0 }), /ctx\.llmWidth is 0/);
  for (const h of [lin, asvr]) dispose(h);
});

gpuTest(
  "buildHead: a registered kind is built by its factory; an unknown kind lists the registered ones",
  (e) => {
    let seen: { cfg: HeadConfig; ctx: HeadContext } | null = null;
    registerHead({
      kind: "build_test_head",
      build: (eng: Engine, cfg, ctx) => {
        seen = { cfg, ctx };
        return new NoneHead(eng);
      },
    });
    const head = buildHead(e, { kind: "build_test_head", size: 3 }, { llmWidth: 4 });
    assert.ok(head instanceof NoneHead);
    assert.deepEqual(seen, { cfg: { kind: "build_test_head", size: 3 }, ctx: { llmWidth: 4 } });
    assert.throws(
      () => buildHead(e, { kind: "no_such_head" }, { llmWidth: 4 }),
      /head\.kind: unknown head kind "no_such_head"; use one of "none", "linear", "asvr_depth", "dual", .*"build_test_head"/,
    );
  },
);
