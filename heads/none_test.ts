import assert from "node:assert/strict";
import { gpuTest } from "../core/testing.ts";
import { NoneHead } from "./none.ts";

gpuTest("NoneHead: no parameters, a zero loss and no terms, whatever the inputs", async (e) => {
  const head = new NoneHead(e);
  assert.equal(head.kind, "none");
  assert.equal(head.params().size, 0);
  const out = e.tidy(() => head.loss(e.zeros([2, 3, 4]), {}));
  assert.deepEqual(out.total.shape, []);
  assert.equal(out.total.dtype, "f32");
  assert.deepEqual(Object.keys(out.terms), []);
  assert.deepEqual([...await out.total.read()], [0]);
  out.total.dispose();
});
