import assert from "node:assert/strict";
import { registeredHeadKinds, registerHead } from "./registry.ts";
import { NoneHead } from "./none.ts";

Deno.test("registerHead: kinds are snake_case, built-in kinds are taken, a kind keeps its factory", () => {
  const factory = (e: Parameters<Parameters<typeof registerHead>[1]>[0]) => new NoneHead(e);
  assert.throws(() => registerHead("MyHead", factory), /kind "MyHead" must be snake_case/);
  assert.throws(() => registerHead("asvr_depth", factory), /"asvr_depth" is a built-in head kind/);
  registerHead("registry_test_head", factory);
  registerHead("registry_test_head", factory); // the same factory again: a no-op (a module imported twice)
  assert.throws(
    () => registerHead("registry_test_head", (e) => new NoneHead(e)),
    /kind "registry_test_head" is already registered with another factory/,
  );
  const kinds = registeredHeadKinds();
  assert.deepEqual(kinds.slice(0, 4), ["none", "linear", "asvr_depth", "dual"]);
  assert.ok(kinds.includes("registry_test_head"));
});
