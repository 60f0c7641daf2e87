import assert from "node:assert/strict";
import { gpuTest } from "../core/testing.ts";
import {
  checkHeadTargets,
  fillHeadConfig,
  type HeadConfig,
  type HeadKind,
  headParamShapes,
  headTargets,
  NoneHead,
  parseHeadConfig,
  registeredHeadKinds,
  registerHead,
  type TokenizerSizes,
} from "./mod.ts";
import { buildHead } from "./mod.ts";

const none: HeadKind = { kind: "registry_test_head", build: (e) => new NoneHead(e) };

Deno.test("registerHead: kinds are snake_case, built-in kinds are taken, a kind keeps its descriptor", () => {
  assert.throws(() => registerHead({ ...none, kind: "MyHead" }), /kind "MyHead" must be snake_case/);
  assert.throws(() => registerHead({ ...none, kind: "asvr_depth" }), /"asvr_depth" is a built-in head kind/);
  assert.throws(
    () => registerHead({ kind: "no_build" } as unknown as HeadKind),
    /kind "no_build" needs a build\(e, cfg, ctx\) function/,
  );
  registerHead(none);
  registerHead(none); // the same descriptor again: a no-op (a module imported twice)
  assert.throws(
    () => registerHead({ ...none }),
    /kind "registry_test_head" is already registered by another module/,
  );
  const kinds = registeredHeadKinds();
  assert.deepEqual(kinds.slice(0, 4), ["none", "linear", "asvr_depth", "dual"]);
  assert.ok(kinds.includes("registry_test_head"));
});

const TOKS: TokenizerSizes[] = [
  { name: "semantic", depths: 3, codebookSize: 12, hasCodebooks: true },
  { name: "pixel", depths: 2, codebookSize: 5, hasCodebooks: true },
  { name: "onnx_codes", hasCodebooks: false },
];

Deno.test("fillHeadConfig + headTargets: classifier sizes come from the target, dual sides from their roles", () => {
  const fill = (v: unknown) => parseHeadConfig(fillHeadConfig(v, TOKS), "head");
  const h = fill({ kind: "asvr_depth", width: 16, codebookDim: 4 });
  assert.equal(h.depths, 3);
  assert.deepEqual(h.codebookSizes, [12, 12, 12]);
  assert.deepEqual(headTargets(h, TOKS), [
    { tokenizer: "semantic", at: "", depths: 3, codebookSizes: [12, 12, 12], codebookDim: 4 },
  ]);
  const d = fill({
    kind: "dual",
    appearance: { kind: "linear", width: 8 },
    semantic: { kind: "linear", width: 8, depths: 2 },
  });
  assert.deepEqual(headTargets(d, TOKS).map((t) => [t.tokenizer, t.at, t.depths, t.codebookSizes]), [
    ["pixel", ".appearance", 2, [5, 5]],
    ["semantic", ".semantic", 2, [12, 12]],
  ]);
  assert.deepEqual(headTargets(fill({ kind: "none" }), TOKS), []);
  // A kind without `targets` learns every tokenizer.
  registerHead({ kind: "registry_all_targets", build: (e) => new NoneHead(e) });
  assert.deepEqual(headTargets({ kind: "registry_all_targets" }, TOKS).map((t) => t.tokenizer), [
    "semantic",
    "pixel",
    "onnx_codes",
  ]);
});

Deno.test("checkHeadTargets: a target names a tokenizer with the sizes and codebooks the head needs", () => {
  const check = (v: HeadConfig) => checkHeadTargets(parseHeadConfig(v, "head"), TOKS, "head");
  check({ kind: "linear", target: "semantic", depths: 3, codebookSizes: [12, 12, 12] });
  assert.throws(
    () => check({ kind: "linear", target: "pixel", depths: 3 }),
    /head\.depths is 3 but visualTokenizers\[1\] \("pixel"\) has depths 2/,
  );
  assert.throws(
    () =>
      check({
        kind: "dual",
        appearance: { kind: "linear", depths: 2, codebookSizes: [5, 6] },
        semantic: { kind: "linear", depths: 3, codebookSizes: [12, 12, 12] },
      }),
    /head\.appearance\.codebookSizes\[1\] is 6 but visualTokenizers\[1\] \("pixel"\) has codebookSize 5/,
  );
  registerHead({
    kind: "registry_onnx_reader",
    build: (e) => new NoneHead(e),
    targets: () => [{ tokenizer: "onnx_codes", at: "", codebookDim: 8 }],
  });
  assert.throws(
    () => check({ kind: "registry_onnx_reader" }),
    /head\.target: visualTokenizers\[2\] \("onnx_codes"\) has no codebooks, but the registry_onnx_reader head teacher-forces/,
  );
  registerHead({
    kind: "registry_missing_target",
    build: (e) => new NoneHead(e),
    targets: () => [{ tokenizer: "depth", at: "" }],
  });
  assert.throws(
    () => check({ kind: "registry_missing_target" }),
    /head\.target is "depth", which names no visual tokenizer \(visualTokenizers has: "semantic", "pixel", "onnx_codes"\)/,
  );
});

gpuTest("headParamShapes: every built-in kind declares exactly the parameters it builds", (e) => {
  const configs: HeadConfig[] = [
    { kind: "none" },
    { kind: "linear", width: 8, depths: 2, codebookSizes: [3, 5] },
    {
      kind: "asvr_depth",
      width: 16,
      layers: 2,
      heads: 2,
      depths: 3,
      codebookSizes: [4, 5, 6],
      codebookDim: 6,
    },
    {
      kind: "dual",
      appearance: { kind: "linear", width: 8, depths: 2, codebookSizes: [3, 3] },
      semantic: {
        kind: "asvr_depth",
        width: 8,
        layers: 1,
        heads: 1,
        depths: 2,
        codebookSizes: [4, 4],
        codebookDim: 5,
      },
    },
  ];
  for (const cfg of configs) {
    const parsed = parseHeadConfig(cfg, "head");
    const head = buildHead(e, parsed, { llmWidth: 12, seed: 1 });
    const built = new Map(
      [...head.params()].map((
        [n, t],
      ) => [n, t.requiresGrad ? { shape: t.shape } : { shape: t.shape, frozen: true }]),
    );
    assert.deepEqual(headParamShapes(parsed, 12), built, `${cfg.kind}: declared vs built`);
    for (const t of head.params().values()) t.dispose();
  }
  registerHead({ kind: "registry_no_shapes", build: (eng) => new NoneHead(eng) });
  assert.equal(headParamShapes({ kind: "registry_no_shapes" }, 12), null);
});
