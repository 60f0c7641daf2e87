import assert from "node:assert/strict";
import { join } from "node:path";

const enc = new TextEncoder(), dec = new TextDecoder();

/** Reads `file` with streamRows in a fresh process; its rows and the growth of its peak resident memory. */
async function scanInChild(file: string): Promise<{ rows: number; grewBytes: number }> {
  const code = `
    import { streamRows } from ${JSON.stringify(new URL("./row_stream.ts", import.meta.url).href)};
    const hwm = () => Number(Deno.readTextFileSync("/proc/self/status").match(/VmHWM:\\s+(\\d+) kB/)[1]) * 1024;
    const before = hwm(), dec = new TextDecoder();
    let rows = 0;
    for await (const r of streamRows(${JSON.stringify(file)})) {
      if (r.index !== rows) throw new Error("row " + rows + " came as " + r.index);
      JSON.parse(dec.decode(r.bytes));
      rows++;
    }
    console.log(JSON.stringify({ rows, grewBytes: hwm() - before }));`;
  const out = await new Deno.Command(Deno.execPath(), { args: ["eval", code], stderr: "inherit" }).output();
  assert.ok(out.success, "the child failed");
  return JSON.parse(dec.decode(out.stdout));
}

Deno.test({
  name: "streamRows: a file much larger than a chunk is read with flat memory",
  ignore: Deno.build.os !== "linux", // reads /proc/self/status
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "asvr_row_stream_" });
    try {
      const file = join(dir, "big.json");
      const row = (i: number) =>
        JSON.stringify({
          id: i,
          image: `coco/${i}.jpg`,
          conversations: [
            { from: "human", value: `<image>\nq ${"w ".repeat(400)}` },
            { from: "gpt", value: 'a ] } " answer' },
          ],
        });
      const block = enc.encode(Array.from({ length: 1000 }, (_, k) => row(k)).join(","));
      const blocks = 280; // ~ 260 MB
      const f = await Deno.open(file, { write: true, create: true, truncate: true });
      await f.write(enc.encode("["));
      for (let b = 0; b < blocks; b++) {
        if (b) await f.write(enc.encode(","));
        await f.write(block);
      }
      await f.write(enc.encode("]"));
      f.close();
      const size = (await Deno.stat(file)).size;
      const { rows, grewBytes } = await scanInChild(file);
      assert.equal(rows, blocks * 1000);
      // A reader holding the file would grow by its size at least; the stream grows by V8's working set,
      // which does not depend on the file's size: 22-28 MB on an idle 2-core machine, 33-63 MB with three
      // busy processes beside it (the collector's threads starved), for files of 130 and 260 MB alike.
      assert.ok(
        grewBytes < size / 2,
        `peak memory grew by ${(grewBytes / 1e6).toFixed(1)} MB for a ${(size / 1e6).toFixed(0)} MB file`,
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
