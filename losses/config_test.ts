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
    [{ alignment: "shifted" }, /config\.loss\.alignment is "shifted"; it must be one of "same", "next"/],
    [{ textOnlyRows: "drop" }, /config\.loss\.textOnlyRows is "drop"; it must be one of "mask", "train"/],
    [{ textWeight: -1 }, /config\.loss\.textWeight is -1; it must be a finite number >= 0/],
    [{ visualWeight: "1" }, /config\.loss\.visualWeight is "1"; it must be a finite number >= 0/],
    [{ visualWeight: Infinity }, /config\.loss\.visualWeight is Infinity; it must be a finite number >= 0/],
    [{ chunkRows: 1.5 }, /config\.loss\.chunkRows is 1\.5; it must be a positive integer/],
    [{ chunkRows: 0 }, /config\.loss\.chunkRows is 0; it must be a positive integer/],
    [
      { textWieght: 1 },
      /config\.loss\.textWieght: unknown loss field; the fields are textWeight, visualWeight/,
    ],
    ["same", /config\.loss: the loss config must be an object, got "same"/],
    [null, /config\.loss: the loss config must be an object, got null/],
  ];
  for (const [value, re] of bad) {
    assert.throws(() => parseLossConfig(value, "config.loss"), re, JSON.stringify(value));
  }
});
