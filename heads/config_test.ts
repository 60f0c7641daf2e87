import assert from "node:assert/strict";
import { z } from "zod";
import {
  type AsvrDepthHeadConfig,
  type DualHeadConfig,
  type LinearHeadConfig,
  parseHeadConfig,
} from "./mod.ts";
import { registerHead } from "./mod.ts";

const throwsAt = (value: unknown, re: RegExp) => assert.throws(() => parseHeadConfig(value, "head"), re);

Deno.test("parseHeadConfig: asvr_depth defaults are the paper's recipe", () => {
  const c = parseHeadConfig({ kind: "asvr_depth" }, "head") as AsvrDepthHeadConfig;
  assert.deepEqual(c, {
    kind: "asvr_depth",
    width: 2048,
    layers: 3,
    heads: 16,
    depths: 8,
    codebookSizes: new Array(8).fill(16384),
    codebookDim: 1152,
    target: "semantic",
    chunkRows: null,
    checkpointLayers: true,
  });
  // heads follows width (width / 128), codebookSizes follows depths.
  const d = parseHeadConfig({ kind: "asvr_depth", width: 512, depths: 3 }, "head") as AsvrDepthHeadConfig;
  assert.equal(d.heads, 4);
  assert.deepEqual(d.codebookSizes, [16384, 16384, 16384]);
  // Parsing a parsed config changes nothing.
  assert.deepEqual(parseHeadConfig(c, "head"), c);
});

Deno.test("parseHeadConfig: linear, none and dual", () => {
  const l = parseHeadConfig({ kind: "linear", width: 64, depths: 2, target: "pixel", chunkRows: 128 }, "h");
  assert.deepEqual(
    l,
    {
      kind: "linear",
      width: 64,
      depths: 2,
      codebookSizes: [16384, 16384],
      target: "pixel",
      chunkRows: 128,
    } satisfies LinearHeadConfig,
  );
  assert.deepEqual(parseHeadConfig({ kind: "none" }, "h"), { kind: "none" });
  const d = parseHeadConfig({
    kind: "dual",
    appearance: { kind: "linear", width: 8 },
    semantic: { kind: "asvr_depth", width: 256 },
  }, "head") as DualHeadConfig;
  assert.equal(d.appearance.kind, "linear");
  assert.equal((d.appearance as LinearHeadConfig).target, "pixel"); // the side's role is its default target
  assert.equal((d.semantic as AsvrDepthHeadConfig).target, "semantic");
  assert.equal((d.semantic as AsvrDepthHeadConfig).heads, 2);
  assert.deepEqual(parseHeadConfig(d, "head"), d);
});

Deno.test("parseHeadConfig: errors name the path and what is allowed", () => {
  throwsAt({ kind: "asvr_depth", layers: 0 }, /^Error: head\.layers: Too small.*\(got 0\)/);
  throwsAt({ kind: "asvr_depth", layers: 2.5 }, /head\.layers: .*int.*\(got 2\.5\)/);
  throwsAt({ kind: "asvr_depth", target: "pixels" }, /head\.target: .*"semantic"\|"pixel".*\(got "pixels"\)/);
  throwsAt(
    { kind: "asvr_depth", depths: 2, codebookSizes: [8, 8, 8] },
    /head\.codebookSizes: has 3 entries but depths is 2/,
  );
  throwsAt({ kind: "linear", codebookSizes: [8, -1] }, /head\.codebookSizes\[1\]: .*\(got -1\)/);
  throwsAt({ kind: "asvr_depth", widht: 64 }, /head\.widht: unknown field; allowed fields: kind, width, /);
  throwsAt({ kind: "asvr_depth", width: 96, heads: 5 }, /head\.heads: width 96 is not a multiple of heads 5/);
  throwsAt(
    { kind: "asvr_depth", width: 512, heads: 2 },
    /head\.heads: head size width \/ heads = 256 is over 128/,
  );
  throwsAt({ kind: "asvr_depth", chunkRows: 0 }, /head\.chunkRows/);
  throwsAt(
    { kind: "asvr" },
    /head\.kind: unknown head kind "asvr"; use one of "none", "linear", "asvr_depth", "dual"/,
  );
  throwsAt({ width: 8 }, /head\.kind: missing; use one of "none", "linear"/);
  throwsAt("asvr_depth", /head: expected an object with a "kind" field/);
  throwsAt({ kind: "none", width: 3 }, /head\.width: unknown field/);
  // Dual: each side under its own path.
  const side = { kind: "asvr_depth" };
  throwsAt(
    { kind: "dual", appearance: side, semantic: { kind: "asvr_depth", layers: -1 } },
    /head\.semantic\.layers/,
  );
  throwsAt(
    { kind: "dual", appearance: { kind: "linear", target: "semantic" }, semantic: side },
    /head\.appearance\.target: is "semantic", but this side of a dual head learns the "pixel" codes/,
  );
  throwsAt(
    { kind: "dual", appearance: { kind: "none" }, semantic: side },
    /head\.appearance\.kind: .*cannot be "none"/,
  );
  throwsAt({ kind: "dual", appearance: side }, /head\.semantic: expected a head config object/);
});

Deno.test("parseHeadConfig: a registered kind parses with its own schema", () => {
  throwsAt({ kind: "config_test_probe" }, /unknown head kind "config_test_probe"/);
  registerHead({
    kind: "config_test_probe",
    build: () => {
      throw new Error("not built in this test");
    },
    schema: z.strictObject({
      kind: z.literal("config_test_probe"),
      dim: z.number().int().positive().default(64),
    }),
  });
  assert.deepEqual(parseHeadConfig({ kind: "config_test_probe" }, "head"), {
    kind: "config_test_probe",
    dim: 64,
  });
  throwsAt({ kind: "config_test_probe", dim: "wide" }, /head\.dim: .*number.*\(got "wide"\)/);
  throwsAt({ kind: "config_test_probe", extra: 1 }, /head\.extra: unknown field; allowed fields: kind, dim/);
  throwsAt({ kind: "nope" }, /use one of .*"dual", "config_test_probe"/);
  // Without a schema, a registered kind's config passes through.
  registerHead({
    kind: "config_test_free",
    build: () => {
      throw new Error("not built in this test");
    },
  });
  assert.deepEqual(parseHeadConfig({ kind: "config_test_free", anything: [1] }, "head"), {
    kind: "config_test_free",
    anything: [1],
  });
});
