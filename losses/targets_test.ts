import assert from "node:assert/strict";
import { gpuTest } from "../core/testing.ts";
import {
  alignCodes,
  alignCodesHost,
  type CodesShape,
  depthTargets,
  maskRows,
  maskRowsHost,
  visualTargets,
  visualTargetsHost,
} from "./targets.ts";

// codes[b, i, d] = 100 b + 10 i + d: B = 2 samples, N = 3 patches, D = 2 depths.
const SHAPE: CodesShape = [2, 3, 2];
const CODES = [0, 1, 10, 11, 20, 21, 100, 101, 110, 111, 120, 121];
const X = -100;
// Position i holds patch i + 1's codes; the last patch of each sample predicts nothing.
const NEXT = [10, 11, 20, 21, X, X, 110, 111, 120, 121, X, X];
// Sample 1 has no image.
const MASKED = [0, 1, 10, 11, 20, 21, X, X, X, X, X, X];

Deno.test("alignCodesHost: same copies, next shifts by one patch within each sample", () => {
  const same = alignCodesHost(CODES, SHAPE, "same");
  assert.deepEqual([...same], CODES);
  assert.notEqual(same as unknown, CODES as unknown);
  assert.deepEqual([...alignCodesHost(CODES, SHAPE, "next")], NEXT);
  assert.deepEqual(
    [...alignCodesHost([5, 6, 7, 8], [2, 1, 2], "next")],
    [X, X, X, X],
    "one patch: nothing to predict",
  );
  assert.throws(() => alignCodesHost(CODES, [2, 3, 3], "same"), /12 ids for shape \[2,3,3\]/);
});

Deno.test("maskRowsHost: mask sets text-only samples to -100, train keeps them", () => {
  assert.deepEqual([...maskRowsHost(CODES, SHAPE, [true, false])], MASKED);
  assert.deepEqual([...maskRowsHost(CODES, SHAPE, [true, false], "train")], CODES);
  assert.deepEqual([...maskRowsHost(CODES, SHAPE, [false, false])], new Array(12).fill(X));
  assert.throws(() => maskRowsHost(CODES, SHAPE, [true]), /hasImage has 1 entries for 2 samples/);
});

Deno.test("visualTargetsHost: masks, then aligns", () => {
  const cfg = { alignment: "next", textOnlyRows: "mask" } as const;
  assert.deepEqual([...visualTargetsHost(CODES, SHAPE, [true, false], cfg)], [
    10,
    11,
    20,
    21,
    X,
    X,
    ...MASKED.slice(6),
  ]);
  const train = { alignment: "same", textOnlyRows: "train" } as const;
  assert.deepEqual([...visualTargetsHost(CODES, SHAPE, [false, false], train)], CODES);
});

gpuTest("alignCodes, maskRows, visualTargets on the GPU give the host results", async (e) => {
  const codes = e.tensor(CODES, SHAPE, "i32");
  assert.deepEqual([...await alignCodes(codes, "same").read()], CODES);
  const next = alignCodes(codes, "next");
  assert.deepEqual(next.shape, SHAPE);
  assert.deepEqual([...await next.read()], NEXT);
  assert.deepEqual([...await alignCodes(e.tensor([5, 6, 7, 8], [2, 1, 2], "i32"), "next").read()], [
    X,
    X,
    X,
    X,
  ]);
  assert.deepEqual([...await maskRows(codes, [true, false]).read()], MASKED);
  assert.deepEqual([...await maskRows(codes, [false, true]).read()], [
    ...new Array(6).fill(X),
    ...CODES.slice(6),
  ]);
  assert.deepEqual([...await maskRows(codes, [true, false], "train").read()], CODES);
  assert.deepEqual([...await maskRows(codes, [true, true]).read()], CODES);
  const cfg = { alignment: "next", textOnlyRows: "mask" } as const;
  const t = visualTargets(codes, [true, false], cfg);
  assert.deepEqual(t.shape, SHAPE);
  assert.deepEqual([...await t.read()], [...visualTargetsHost(CODES, SHAPE, [true, false], cfg)]);
  assert.deepEqual([...await codes.read()], CODES, "the input codes are left as they were");
  assert.throws(() => alignCodes(e.tensor(CODES, [2, 6], "i32"), "same"), /codes must be i32 \[B, N, D\]/);
  assert.throws(() => maskRows(codes, [true, true, false]), /hasImage has 3 entries for 2 samples/);
});

gpuTest("depthTargets: one depth's codes as [B*N] classifier targets", async (e) => {
  const codes = e.tensor(CODES, SHAPE, "i32");
  const d1 = depthTargets(codes, 1);
  assert.deepEqual(d1.shape, [6]);
  assert.deepEqual([...await d1.read()], [1, 11, 21, 101, 111, 121]);
  assert.deepEqual([...await depthTargets(codes, 0).read()], [0, 10, 20, 100, 110, 120]);
  assert.throws(() => depthTargets(codes, 2), /depth 2 out of range; .* depths 0\.\.1/);
});
