import assert from "node:assert/strict";
import { parseProjectorSlot } from "./slot_config.ts";

Deno.test("parseProjectorSlot keeps the widths given; a parsed slot parses to itself", () => {
  assert.deepEqual(parseProjectorSlot({ kind: "linear" }, "projector"), { kind: "linear" });
  const given = parseProjectorSlot({ kind: "identity", inDim: 8, outDim: undefined }, "projector");
  assert.deepEqual(given, { kind: "identity", inDim: 8 });
  assert.deepEqual(parseProjectorSlot(given, "projector"), given);
});

Deno.test("parseProjectorSlot: errors name the path, the value and what is allowed", () => {
  assert.throws(
    () => parseProjectorSlot({ kind: "mlp3x" }, "projector"),
    /projector\.kind: unknown kind \(got "mlp3x"\); use one of "linear", "mlp2x_gelu", "identity"/,
  );
  assert.throws(
    () => parseProjectorSlot({ kind: "linear", inDim: 0 }, "projector"),
    /projector\.inDim: .*\(got 0\)/,
  );
  assert.throws(
    () => parseProjectorSlot({ kind: "linear", width: 3 }, "projector"),
    /projector\.width: unknown field; allowed fields: kind, inDim, outDim/,
  );
});
