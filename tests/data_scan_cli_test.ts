/**
 * `deno task train` reads each stage's data once before any weight loads: a summary per stage, and a
 * run whose data would stop it (a malformed row, a missing image) stops there, before the adapter or
 * the run folder is touched.
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { pathExists } from "../io/path_exists.ts";
import { writeTinyRunFile } from "./tiny_run.ts";
import { runCli } from "./run_cli.ts";

Deno.test("train: the data pre-flight prints each stage's rows and steps, and stops bad data before loading", async () => {
  const dir = await Deno.makeTempDir({ prefix: "asvr_scan_cli_" });
  try {
    const { file } = await writeTinyRunFile(dir, { steps: 1 });
    let r = await runCli("train.ts", [file, "--check-images", "all"]);
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /data of stage 1\/2 pretrain: .*captions\.json: .* scanned in/);
    assert.match(
      r.out,
      /\n {2}8 rows: 8 with an image, 0 text-only, 0 malformed\n {2}images: 8 of 8 checked, 0 missing/,
    );
    assert.match(r.out, /\n {2}9 rows: 8 with an image, 1 text-only, 0 malformed/);
    assert.match(r.out, /optimizer steps: 1 \(maxSteps; 4 per epoch\), of which 1 warmup/);
    assert.match(
      r.out,
      /warning: the stage's one step is a warmup step \(warmupRatio 0\.03\), so it runs at lr 0/,
    );
    assert.ok(r.out.indexOf("data of stage 2/2") < r.out.indexOf("adapter:"), "the scan comes first");

    const captions = join(dir, "images", "captions.json");
    const rows = JSON.parse(await Deno.readTextFile(captions));
    await Deno.writeTextFile(captions, JSON.stringify([...rows, { id: "x", conversations: [] }]));
    await Deno.remove(join(dir, "images", "img7.png"));
    const out = join(dir, "fresh");
    r = await runCli("train.ts", [file, "--out", out]);
    assert.equal(r.code, 1, r.out);
    assert.match(
      r.out,
      /the data pre-flight found 3 problems that would stop the run \(no weights were loaded\)/,
    );
    assert.match(r.out, /stage pretrain: 1 malformed row, .*row 8 \(id "x"\): conversations is empty/);
    assert.match(r.out, /stage pretrain: 1 of 8 images checked are missing.*img7\.png is missing/);
    assert.match(r.out, /stage finetune: 1 of 8 images checked are missing/);
    assert.match(r.out, /--no-scan starts without this check/);
    assert.doesNotMatch(r.out, /adapter:/);
    assert.equal(await pathExists(out), false, "no run folder made");

    r = await runCli("train.ts", [file, "--check-images", "some"]);
    assert.equal(r.code, 1);
    assert.match(r.out, /--check-images: "all", "none" or a number of images to sample/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
