import assert from "node:assert/strict";
import { parseLossConfig } from "./config.ts";

Deno.test("parseLossConfig: defaults fill an empty config", () => {
  assert.deepEqual(parseLossConfig({}, "config.loss"), {
    textWeight: 1,
    visualWeight: 1,
    alignment: "same",
    textOnlyRows: "mask",
  });
});

Deno.test("parseLossConfig: given values are kept", () => {
  const cfg = parseLossConfig(
    { textWeight: 0.5, visualWeight: 0, alignment: "next", textOnlyRows: "train", chunkRows: 256 },
    "run.json#loss",
  );
  assert.deepEqual(cfg, {
    textWeight: 0.5,
    visualWeight: 0,
    alignment: "next",
    textOnlyRows: "train",
    chunkRows: 256,
  });
});

Deno.test("parseLossConfig: errors name the path, the value and the allowed values", () => {
  const bad: [unknown, RegExp][] = [
    [{ alignment: "shifted" }, /config\.loss\.alignment: .*one of "same"\|"next" \(got "shifted"\)/],
    [{ textOnlyRows: "drop" }, /config\.loss\.textOnlyRows: .*one of "mask"\|"train" \(got "drop"\)/],
    [{ textWeight: -1 }, /config\.loss\.textWeight: .*expected number to be >=0 \(got -1\)/],
    [{ visualWeight: "1" }, /config\.loss\.visualWeight: .*expected number, received string \(got "1"\)/],
    [{ visualWeight: Infinity }, /config\.loss\.visualWeight: .*expected number, received Infinity/],
    [{ chunkRows: 1.5 }, /config\.loss\.chunkRows: .*expected int.* \(got 1\.5\)/],
    [{ chunkRows: 0 }, /config\.loss\.chunkRows: .*expected number to be >0 \(got 0\)/],
    [
      { textWieght: 1 },
      /config\.loss\.textWieght: unknown field; allowed fields: textWeight, visualWeight/,
    ],
    ["same", /config\.loss: .*expected object, received string \(got "same"\)/],
    [null, /config\.loss: .*expected object, received null \(got null\)/],
  ];
  for (const [value, re] of bad) {
    assert.throws(() => parseLossConfig(value, "config.loss"), re, JSON.stringify(value));
  }
});
