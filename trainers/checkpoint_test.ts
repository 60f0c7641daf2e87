import assert from "node:assert/strict";
import type { AdamWParamState, AdamWState } from "../core/kernels/adamw/adamw.ts";
import { AdamW } from "../core/kernels/adamw/adamw.ts";
import { gpuTest } from "../core/testing.ts";
import { SafetensorsFile, writeSafetensors } from "../io/safetensors.ts";
import { sha256File } from "../io/sha256.ts";
import {
  type HostParam,
  latestCheckpoint,
  listCheckpoints,
  loadCheckpoint,
  type LoadedCheckpoint,
  optimizerShardFile,
  restoreAdamW,
  saveCheckpoint,
  writeOptimizerShard,
} from "./checkpoint.ts";
import { shardOwners } from "./shard_owners.ts";
import { randn } from "../core/testing.ts";
import type { Tensor } from "../core/tensor.ts";

async function inTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "asvr_ckpt_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Two params whose values depend on `seed`, and an optimizer state over them (the second never updated). */
function fixture(seed: number): { params: Map<string, HostParam>; state: AdamWState; names: string[] } {
  const val = (n: number, k: number) =>
    Float32Array.from({ length: n }, (_, i) => seed * 100 + k * 10 + i * 0.5);
  const params = new Map<string, HostParam>([
    ["model.mm_projector.0.weight", { data: val(6, 1), shape: [2, 3] }],
    ["model.mm_projector.0.bias", { data: val(2, 2), shape: [2] }],
    ["visual_head.codebook", { data: val(4, 3), shape: [4, 1] }],
  ]);
  const state: AdamWState = {
    step: seed + 5,
    params: [
      { step: seed + 5, m: val(6, 4), v: val(6, 5) },
      null,
      { step: seed + 2, m: val(4, 6), v: val(4, 7), master: val(4, 8) },
    ],
  };
  return {
    params,
    state,
    names: ["model.mm_projector.0.weight", "model.mm_projector.0.bias", "visual_head.codebook"],
  };
}

async function save(runDir: string, step: number, keepLast = 2): Promise<string> {
  const { params, state, names } = fixture(step);
  return await saveCheckpoint(runDir, {
    step,
    params,
    optimizer: { names, state },
    trainerState: { step, stage: 1, epoch: 0, sample: step * 8, rng: [1, 2, 3] },
    keepLast,
  });
}

async function ls(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) out.push(e.name);
  return out.sort();
}

/** The saved optimizer state of each of `names` (null where none), read from disk. */
async function statesFor(names: string[], ck: LoadedCheckpoint): Promise<(AdamWParamState | null)[]> {
  const out: (AdamWParamState | null)[] = [];
  for (const n of names) out.push(await ck.optimizer.params.get(n)?.read() ?? null);
  return out;
}

Deno.test("round trip: params, optimizer state by name, trainer state", async () => {
  await inTempDir(async (run) => {
    const dir = await save(run, 7);
    assert.equal(dir, `${run}/checkpoints/step-00000007`);
    assert.deepEqual(await ls(dir), [
      "checksums.sha256",
      "model.safetensors",
      "optimizer.safetensors",
      "trainer_state.json",
    ]);
    assert.equal((await Deno.readTextFile(`${run}/checkpoints/latest`)).trim(), "step-00000007");

    const ck = await loadCheckpoint(run);
    const { params, state, names } = fixture(7);
    assert.equal(ck.dir, dir);
    assert.equal(ck.step, 7);
    assert.deepEqual(ck.trainerState, { step: 7, stage: 1, epoch: 0, sample: 56, rng: [1, 2, 3] });
    assert.deepEqual([...ck.params.keys()].sort(), [...params.keys()].sort());
    for (const [n, p] of params) {
      assert.deepEqual(ck.params.get(n)!.shape, [...p.shape], n);
      assert.deepEqual(await ck.params.get(n)!.read(), p.data, n);
    }
    assert.equal(ck.optimizer.step, 12);
    assert.deepEqual([...ck.optimizer.params.keys()].sort(), [
      "model.mm_projector.0.weight",
      "visual_head.codebook",
    ]);
    assert.deepEqual({ step: ck.optimizer.step, params: await statesFor(names, ck) }, state);
    // the same checkpoint, given as its folder, and names in another order
    const again = await loadCheckpoint(dir);
    assert.deepEqual(await statesFor([...names].reverse(), again), [...state.params].reverse());
    // the model file is a plain HF-named safetensors file
    const f = await SafetensorsFile.open(`${dir}/model.safetensors`);
    assert.equal(f.metadata.format, "pt");
    assert.equal(f.info("model.mm_projector.0.weight").dtype, "F32");
    f.close();
  });
});

Deno.test("a run folder is found by its checkpoints/ even beside an exported model; renamed folders", async () => {
  await inTempDir(async (run) => {
    await save(run, 4);
    await Deno.writeTextFile(`${run}/model.safetensors`, "an exported model, not a checkpoint");
    assert.equal((await loadCheckpoint(run)).step, 4);
    assert.equal((await loadCheckpoint(`${run}/checkpoints/`)).step, 4);
    await Deno.rename(`${run}/checkpoints/step-00000004`, `${run}/best`);
    assert.equal((await loadCheckpoint(`${run}/best`)).step, 4); // from trainer_state.json
    await Deno.writeTextFile(`${run}/best/trainer_state.json`, '{"stage": 1}');
    await Deno.remove(`${run}/best/checksums.sha256`); // edited by hand: no longer verifiable
    await assert.rejects(
      loadCheckpoint(`${run}/best`, { onNote: () => {} }),
      /not named step-<8 digits> and trainer_state\.json has no/,
    );
  });
});

Deno.test("keeps only the last K checkpoints, deleting after the new one is complete", async () => {
  await inTempDir(async (run) => {
    for (const s of [10, 20, 30, 40]) await save(run, s, 2);
    assert.deepEqual((await listCheckpoints(run)).map((c) => c.step), [30, 40]);
    await save(run, 50, 3);
    assert.deepEqual((await listCheckpoints(run)).map((c) => c.step), [30, 40, 50]);
    await save(run, 60, 1);
    assert.deepEqual(await ls(`${run}/checkpoints`), ["latest", "step-00000060"]);
    // saving the same step again replaces it
    await save(run, 60, 1);
    assert.equal((await loadCheckpoint(run)).step, 60);
    assert.deepEqual(await ls(`${run}/checkpoints`), ["latest", "step-00000060"]);
  });
});

Deno.test("a crash leaves the last good checkpoint loadable; the next save cleans up", async () => {
  await inTempDir(async (run) => {
    await save(run, 100);
    const ckDir = `${run}/checkpoints`;
    // a crash during a save: a partial temp folder and a half-written latest temp file
    await Deno.mkdir(`${ckDir}/.tmp-step-00000200-deadbeef`);
    await Deno.writeTextFile(`${ckDir}/.tmp-step-00000200-deadbeef/model.safetensors`, "partial");
    await Deno.writeTextFile(`${ckDir}/latest.tmp-0123456789ab`, "step-000");
    assert.equal((await loadCheckpoint(run)).step, 100);
    // a crash that left a final folder without trainer_state.json, and latest pointing at it
    await save(run, 200);
    await Deno.remove(`${ckDir}/step-00000200/trainer_state.json`);
    assert.equal((await Deno.readTextFile(`${ckDir}/latest`)).trim(), "step-00000200");
    assert.equal(await latestCheckpoint(run), `${ckDir}/step-00000100`);
    // falling back says which checkpoint was skipped and why, in one line
    const notes: string[] = [];
    const ck = await loadCheckpoint(run, { onNote: (l) => notes.push(l) });
    assert.equal(ck.step, 100);
    assert.equal(notes.length, 1, notes.join("\n"));
    assert.match(
      notes[0],
      /step-00000200: skipped: trainer_state\.json is missing .*; using .*step-00000100$/,
    );
    assert.deepEqual(
      await ck.params.get("visual_head.codebook")!.read(),
      fixture(100).params.get("visual_head.codebook")!.data,
    );
    // the incomplete folder itself, given directly, is an error naming the file and the fix
    await assert.rejects(loadCheckpoint(`${ckDir}/step-00000200`), (err: Error) => {
      assert.match(err.message, /step-00000200\/trainer_state\.json: missing/);
      assert.match(err.message, /delete .*step-00000200 to resume from .*step-00000100/);
      return true;
    });
    await save(run, 300, 5);
    const names = await ls(ckDir);
    assert.ok(!names.some((n) => n.includes(".tmp-")), `leftovers remain: ${names}`);
    assert.equal((await loadCheckpoint(run)).step, 300);
  });
});

Deno.test("corrupt or mismatched files are named in the errors", async () => {
  await inTempDir(async (run) => {
    await save(run, 1);
    const dir = await save(run, 2);
    await Deno.remove(`${dir}/checksums.sha256`); // what follows checks each file's own validation
    const quiet = { onNote: () => {} }; // no note that step 2 is unverified
    // bad JSON: the file, the line and the way back to step 1
    await Deno.writeTextFile(`${dir}/trainer_state.json`, '{"step": 2,\n "stage": }');
    await assert.rejects(loadCheckpoint(run, quiet), (err: Error) => {
      assert.match(err.message, /step-00000002\/trainer_state\.json.*invalid JSON at line 2/);
      assert.match(err.message, /to resume from .*step-00000001/);
      return true;
    });
    await Deno.writeTextFile(`${dir}/trainer_state.json`, "[1, 2]");
    await assert.rejects(loadCheckpoint(run, quiet), /trainer_state\.json: must hold a JSON object/);
    await Deno.writeTextFile(`${dir}/trainer_state.json`, "{}");

    // a truncated model file
    const good = await Deno.readFile(`${dir}/model.safetensors`);
    await Deno.writeFile(`${dir}/model.safetensors`, good.subarray(0, good.length - 4));
    await assert.rejects(loadCheckpoint(run, quiet), /step-00000002\/model\.safetensors.*truncated/);
    await Deno.writeFile(`${dir}/model.safetensors`, good);

    // optimizer state for a parameter the model file lacks
    await writeSafetensors(`${dir}/optimizer.safetensors`, [
      { name: "exp_avg.visual_head.codebok", dtype: "F32", shape: [4, 1], data: new Float32Array(4) },
      { name: "exp_avg_sq.visual_head.codebok", dtype: "F32", shape: [4, 1], data: new Float32Array(4) },
    ], { format: "asvr-adamw", step: "3", param_steps: '{"visual_head.codebok": 3}' });
    await assert.rejects(loadCheckpoint(run, quiet), (err: Error) => {
      assert.match(err.message, /optimizer\.safetensors: tensor "exp_avg\.visual_head\.codebok"/);
      assert.match(err.message, /closest: "visual_head\.codebook"/);
      return true;
    });
    // a shape mismatch between the optimizer state and its parameter
    await writeSafetensors(`${dir}/optimizer.safetensors`, [
      { name: "exp_avg.visual_head.codebook", dtype: "F32", shape: [1, 4], data: new Float32Array(4) },
      { name: "exp_avg_sq.visual_head.codebook", dtype: "F32", shape: [1, 4], data: new Float32Array(4) },
    ], { format: "asvr-adamw", step: "3", param_steps: '{"visual_head.codebook": 3}' });
    await assert.rejects(
      loadCheckpoint(run, quiet),
      /exp_avg\.visual_head\.codebook" has shape \[1,4\].*\[4,1\]/,
    );
    // a missing step count
    await writeSafetensors(`${dir}/optimizer.safetensors`, [
      { name: "exp_avg.visual_head.codebook", dtype: "F32", shape: [4, 1], data: new Float32Array(4) },
      { name: "exp_avg_sq.visual_head.codebook", dtype: "F32", shape: [4, 1], data: new Float32Array(4) },
    ], { format: "asvr-adamw", step: "3", param_steps: "{}" });
    await assert.rejects(loadCheckpoint(run, quiet), /param_steps\["visual_head\.codebook"\] is undefined/);
    await Deno.remove(`${dir}/optimizer.safetensors`);
    // the run folder falls back to step 1, the folder itself names the missing file
    assert.equal((await loadCheckpoint(run, quiet)).step, 1);
    await assert.rejects(loadCheckpoint(dir, quiet), /step-00000002\/optimizer\.safetensors: missing/);
  });
});

Deno.test("expectParams and restoreAdamW check names and shapes against the model", async () => {
  await inTempDir(async (run) => {
    await save(run, 3);
    const want = new Map<string, { shape: number[] }>([
      ["model.mm_projector.0.weight", { shape: [3, 2] }],
      ["model.mm_projector.0.bias", { shape: [2] }],
      ["visual_head.extra", { shape: [1] }],
    ]);
    await assert.rejects(loadCheckpoint(run, { expectParams: want }), (err: Error) => {
      assert.match(err.message, /model\.safetensors: does not match the model/);
      assert.match(err.message, /1 parameter\(s\) missing: "visual_head\.extra"/);
      assert.match(err.message, /1 parameter\(s\) the model lacks: "visual_head\.codebook"/);
      assert.match(
        err.message,
        /"model\.mm_projector\.0\.weight" is \[2,3\] in the checkpoint, \[3,2\] in the model/,
      );
      return true;
    });
    const ck = await loadCheckpoint(run);
    const opt = { params: [] } as unknown as AdamW; // refused before the optimizer is touched
    await assert.rejects(
      restoreAdamW(opt, ["model.mm_projector.0.weight"], ck),
      /optimizer state for 1 parameter\(s\) the optimizer does not train: "visual_head\.codebook"/,
    );
  });
});

Deno.test("save rejects inputs that do not fit, before writing anything", async () => {
  await inTempDir(async (run) => {
    const { params, state, names } = fixture(1);
    const base = { step: 1, params, optimizer: { names, state }, trainerState: {} };
    await assert.rejects(
      saveCheckpoint(run, { ...base, optimizer: { names: names.slice(1), state } }),
      /2 names for 3 state entries/,
    );
    const fewer = new Map(params);
    fewer.delete("visual_head.codebook");
    await assert.rejects(saveCheckpoint(run, { ...base, params: fewer }), /trains "visual_head\.codebook"/);
    await assert.rejects(saveCheckpoint(run, { ...base, keepLast: 0 }), /keepLast is 0/);
    await assert.rejects(saveCheckpoint(run, { ...base, step: -1 }), /step must be an integer/);
    // deno-lint-ignore no-explicit-any
    await assert.rejects(saveCheckpoint(run, { ...base, trainerState: [1] as any }), /plain object/);
    assert.deepEqual(await listCheckpoints(run), []);
    await assert.rejects(
      loadCheckpoint(run),
      /neither a run folder \(no checkpoints\/ in it\) nor a checkpoint folder/,
    );
    await Deno.mkdir(`${run}/checkpoints/step-00000001`, { recursive: true });
    await assert.rejects(loadCheckpoint(run), /no complete checkpoint in .*\(step-00000001 lack some of/);
  });
});

gpuTest("GPU tensors and a real AdamW state restore to the same next update", async (e) => {
  await inTempDir(async (run) => {
    const w = e.param(Float32Array.from([0.5, -1, 2, 0.25]), [2, 2]);
    const b = e.param(Float32Array.from([0.1, 0.2]), [2]);
    const opt = new AdamW([w, b], { lr: 0.1 });
    const grads = (k: number) => {
      for (const [p, n] of [[w, 4], [b, 2]] as const) {
        p.grad?.dispose();
        p.grad = e.tensor(Float32Array.from({ length: n }, (_, i) => (i + 1) * k), p.shape);
        e.untrack(p.grad);
      }
    };
    grads(1);
    opt.step();
    const names = ["w", "b"];
    await saveCheckpoint(run, {
      step: 1,
      params: new Map([["w", w], ["b", b]]),
      optimizer: { names, state: await opt.state() },
      trainerState: { step: 1 },
    });
    // Given the optimizer itself, the save reads its state tensor by tensor: the same file.
    await saveCheckpoint(`${run}/live`, {
      step: 1,
      params: new Map([["w", w], ["b", b]]),
      optimizer: { names, state: opt },
      trainerState: { step: 1 },
    });
    const file = (r: string) => Deno.readFile(`${r}/checkpoints/step-00000001/optimizer.safetensors`);
    assert.deepEqual(await file(`${run}/live`), await file(run));
    if (e.hasF16) { // an f16 parameter's f32 master weights are saved as well, either way
      const h = e.param(Float32Array.from([0.5, -1, 2]), [3], { dtype: "f16" });
      const hopt = new AdamW([h], { lr: 0.1 });
      h.grad = e.tensor(Float32Array.from([1, 2, 3]), [3], "f16");
      e.untrack(h.grad);
      hopt.step();
      for (const [r, state] of [[`${run}/f16`, await hopt.state()], [`${run}/f16live`, hopt]] as const) {
        await saveCheckpoint(r, {
          step: 1,
          params: new Map([["h", h]]),
          optimizer: { names: ["h"], state },
          trainerState: {},
        });
      }
      assert.deepEqual(await file(`${run}/f16live`), await file(`${run}/f16`));
      const back = await (await loadCheckpoint(`${run}/f16live`)).optimizer.params.get("h")!.read();
      assert.equal(back.master?.length, 3);
      hopt.dispose();
      h.dispose();
    }
    grads(-2);
    opt.step();
    const expected = await w.read();

    const ck = await loadCheckpoint(run, { expectParams: new Map([["w", w], ["b", b]]) });
    e.write(w, await ck.params.get("w")!.read());
    e.write(b, await ck.params.get("b")!.read());
    const opt2 = new AdamW([w, b], { lr: 0.1 });
    await restoreAdamW(opt2, names, ck);
    assert.equal(opt2.stepCount, 1);
    grads(-2);
    opt2.step();
    assert.deepEqual(await w.read(), expected);
    opt.dispose();
    opt2.dispose();
  });
});

/** A checkpoint of one 1000-value parameter (4000 bytes of data) and no optimizer state. */
async function saveBig(runDir: string, step: number, data?: Float32Array): Promise<string> {
  return await saveCheckpoint(runDir, {
    step,
    params: new Map([["w", {
      data: data ?? Float32Array.from({ length: 1000 }, (_, i) => i / 1000),
      shape: [1000],
    }]]),
    optimizer: { names: [], state: { step: 0, params: [] } },
    trainerState: { step, stage: 0 },
  });
}

Deno.test("checksums: each file's SHA-256 is saved; flipped bytes in any file are refused on load", async () => {
  await inTempDir(async (run) => {
    await saveBig(run, 1);
    const dir = await saveBig(run, 2);
    const sums = await Deno.readTextFile(`${dir}/checksums.sha256`);
    for (const f of ["model.safetensors", "optimizer.safetensors", "trainer_state.json"]) {
      assert.match(sums, new RegExp(`^${await sha256File(`${dir}/${f}`)}  ${f.replace(".", "\\.")}$`, "m"));
    }
    // 1000 flipped bytes inside the weights: the header still parses, the values are wrong
    const model = `${dir}/model.safetensors`;
    const good = await Deno.readFile(model);
    const bad = good.slice();
    for (let i = bad.length - 1000; i < bad.length; i++) bad[i] ^= 0x10;
    await Deno.writeFile(model, bad);
    await assert.rejects(loadCheckpoint(run), (err: Error) => {
      assert.match(err.message, /step-00000002\/model\.safetensors: its SHA-256 .* differs from the one in/);
      assert.match(err.message, /checksums\.sha256/);
      assert.match(err.message, /delete .*step-00000002 to resume from .*step-00000001/);
      return true;
    });
    await Deno.writeFile(model, good);
    // a changed value in the trainer state, still valid JSON
    const statePath = `${dir}/trainer_state.json`;
    const state = await Deno.readTextFile(statePath);
    await Deno.writeTextFile(statePath, state.replace('"stage": 0', '"stage": 1'));
    await assert.rejects(loadCheckpoint(dir), /step-00000002\/trainer_state\.json: its SHA-256/);
    await Deno.writeTextFile(statePath, state);
    // a truncated optimizer file
    const opt = await Deno.readFile(`${dir}/optimizer.safetensors`);
    await Deno.writeFile(`${dir}/optimizer.safetensors`, opt.subarray(0, opt.length - 1));
    await assert.rejects(loadCheckpoint(run), /step-00000002\/optimizer\.safetensors: its SHA-256/);
    await Deno.writeFile(`${dir}/optimizer.safetensors`, opt);
    // a damaged checksums file, and one that lacks a file
    await Deno.writeTextFile(`${dir}/checksums.sha256`, sums.replace(/^[0-9a-f]{10}/, "zz"));
    await assert.rejects(loadCheckpoint(run), /checksums\.sha256: line 1 is not "<64 hex digits> {2}<file>"/);
    await Deno.writeTextFile(`${dir}/checksums.sha256`, sums.split("\n").slice(1).join("\n"));
    await assert.rejects(loadCheckpoint(run), /checksums\.sha256: no checksum for model\.safetensors/);
    await Deno.writeTextFile(`${dir}/checksums.sha256`, sums);
    const notes: string[] = [];
    assert.equal((await loadCheckpoint(run, { onNote: (l) => notes.push(l) })).step, 2);
    assert.deepEqual(notes, []);
  });
});

Deno.test("a checkpoint saved without checksums loads, noting once that it is unverified", async () => {
  await inTempDir(async (run) => {
    const dir = await saveBig(run, 3);
    await Deno.remove(`${dir}/checksums.sha256`);
    const notes: string[] = [];
    const ck = await loadCheckpoint(run, { onNote: (l) => notes.push(l) });
    assert.equal(ck.step, 3);
    assert.equal(notes.length, 1);
    assert.match(
      notes[0],
      /step-00000003: no checksums\.sha256 \(saved by an older version\): files unverified$/,
    );
  });
});

Deno.test("NaN or Inf in a checkpoint's parameters or optimizer state is refused unless allowed", async () => {
  await inTempDir(async (run) => {
    const data = Float32Array.from({ length: 1000 }, (_, i) => i);
    data[617] = NaN;
    await saveBig(run, 1);
    await saveBig(run, 2, data);
    const ck = await loadCheckpoint(run);
    await assert.rejects(ck.params.get("w")!.read(), (err: Error) => {
      assert.match(
        err.message,
        /step-00000002\/model\.safetensors: tensor "w" \(F32 \[1000\]\) holds NaN at index 617 \(of 1000\)/,
      );
      assert.match(err.message, /resume from .*step-00000001.*allowNonFinite: true/);
      return true;
    });
    const allowed = await loadCheckpoint(run, { allowNonFinite: true });
    assert.ok(Number.isNaN((await allowed.params.get("w")!.read())[617]));
    // optimizer moments too
    const { params, state, names } = fixture(5);
    state.params[0]!.v[3] = Infinity;
    await saveCheckpoint(run, { step: 5, params, optimizer: { names, state }, trainerState: {} });
    const five = await loadCheckpoint(run);
    await assert.rejects(
      five.optimizer.params.get(names[0])!.read(),
      /optimizer\.safetensors: tensor "exp_avg_sq\.model\.mm_projector\.0\.weight" \(F32 \[2,3\]\) holds Infinity at index 3/,
    );
    const v =
      (await (await loadCheckpoint(run, { allowNonFinite: true })).optimizer.params.get(names[0])!.read()).v;
    assert.equal(v[3], Infinity);
  });
});

Deno.test("checkState: a refused trainer state names the checkpoint, the reason and the older one", async () => {
  await inTempDir(async (run) => {
    await saveBig(run, 1);
    const dir = await saveBig(run, 2);
    const seen: [unknown, string, number | null][] = [];
    const checkState = (state: Record<string, unknown>, file: string, step: number | null) => {
      seen.push([state, file, step]);
      if (state.stage !== 0) throw new Error(`${file}: stage: must be 0`);
    };
    assert.equal((await loadCheckpoint(run, { checkState })).step, 2);
    assert.deepEqual(seen, [[{ step: 2, stage: 0 }, `${dir}/trainer_state.json`, 2]]);
    await Deno.writeTextFile(`${dir}/trainer_state.json`, '{"stage": 7}');
    await Deno.remove(`${dir}/checksums.sha256`);
    await assert.rejects(loadCheckpoint(run, { checkState, onNote: () => {} }), (err: Error) => {
      assert.match(err.message, /step-00000002\/trainer_state\.json: stage: must be 0/);
      assert.match(err.message, /delete .*step-00000002 to resume from .*step-00000001, or give that folder/);
      return true;
    });
  });
});

// ------------------------------------------------------------------ a sharded optimizer state

gpuTest(
  "a sharded optimizer state: the ranks' shards join the checkpoint and a load merges them",
  async (e) => {
    await inTempDir(async (run) => {
      const names = ["embed.weight", "layer.0.weight", "layer.0.bias", "head.weight", "head.bias"];
      const shapes = [[6, 4], [4, 4], [4], [3, 4], [2]];
      const dtypes = ["f32", "f32", "f32", e.hasF16 ? "f16" : "f32", "f32"] as const;
      const sizes = shapes.map((s) => s.reduce((a, b) => a * b, 1));
      const make = () => shapes.map((s, i) => e.param(randn(sizes[i], 40 + i), s, { dtype: dtypes[i] }));
      const sharded = make(), whole = make(); // the same values: two ranks' halves, and one optimizer
      const owners = shardOwners(sizes, 2);
      const mine = [0, 1].map((r) => names.flatMap((_, i) => owners[i] === r ? [i] : []));
      assert.ok(mine.every((m) => m.length > 0), `owners ${owners}`);
      const hp = { lr: 0.05, weightDecay: 0.1 };
      const halves = mine.map((m) => new AdamW(m.map((i) => sharded[i]), hp));
      const full = new AdamW(whole, hp);
      // Two steps; "head.bias" never has a gradient, so neither optimizer holds state for it.
      for (const k of [1, -0.5]) {
        for (const set of [sharded, whole]) {
          set.forEach((p, i) => {
            p.grad?.dispose();
            p.grad = null;
            if (i === 4) return;
            p.grad = e.tensor(randn(sizes[i], 7 + i).map((g) => g * k), shapes[i], dtypes[i]);
            e.untrack(p.grad);
          });
        }
        halves.forEach((o) => o.step());
        full.step();
      }
      const params = new Map<string, Tensor>(names.map((n, i) => [n, sharded[i]]));
      const shardFiles = [0, 1].map((r) => optimizerShardFile(r, 2));
      assert.deepEqual(shardFiles, ["optimizer-0-of-2.safetensors", "optimizer-1-of-2.safetensors"]);
      let written = new Map<string, string>();
      const dir = await saveCheckpoint(run, {
        step: 2,
        params,
        optimizer: { shards: 2, step: 2 },
        addFiles: async (tmp) => {
          assert.match(tmp, /checkpoints\/\.tmp-step-00000002-/);
          const out = new Map<string, string>();
          for (const r of [0, 1]) {
            // rank 0 hands the optimizer itself (read tensor by tensor), rank 1 its host state
            const state = r === 0 ? halves[0] : await halves[1].state();
            const shardNames = mine[r].map((i) => names[i]);
            out.set(
              shardFiles[r],
              await writeOptimizerShard(`${tmp}/${shardFiles[r]}`, { names: shardNames, state }, params),
            );
          }
          written = out;
          return out;
        },
        trainerState: { step: 2 },
      });
      assert.deepEqual(await ls(dir), [
        "checksums.sha256",
        "model.safetensors",
        ...shardFiles,
        "optimizer.safetensors",
        "trainer_state.json",
      ]);
      const sums = await Deno.readTextFile(`${dir}/checksums.sha256`);
      for (const f of shardFiles) {
        const sum = await sha256File(`${dir}/${f}`);
        assert.equal(written.get(f), sum);
        assert.match(sums, new RegExp(`^${sum}  ${f.replaceAll(".", "\\.")}$`, "m"));
      }
      // The index holds no tensors, only the shard count and the step.
      const index = await SafetensorsFile.open(`${dir}/optimizer.safetensors`);
      try {
        assert.deepEqual(index.names(), []);
        assert.equal(index.metadata.shards, "2");
        assert.equal(index.metadata.step, "2");
      } finally {
        index.close();
      }

      const ck = await loadCheckpoint(run, { expectParams: params });
      assert.equal(ck.optimizer.step, 2);
      assert.deepEqual([...ck.optimizer.params.keys()].sort(), names.slice(0, 4).sort());
      // One optimizer over every parameter (one process resuming) gets the unsharded optimizer's state.
      const restored = new AdamW(make(), hp);
      await restoreAdamW(restored, names, ck);
      const want = await full.state();
      assert.equal(want.params[4], null);
      assert.ok(!e.hasF16 || want.params[3]?.master, "the f16 parameter has master weights");
      assert.deepEqual(await restored.state(), want);
      // One rank restores its own half, knowing every name that trains.
      const again = mine[1].map((i) => e.param(new Float32Array(sizes[i]), shapes[i], { dtype: dtypes[i] }));
      const half = new AdamW(again, hp);
      const names1 = mine[1].map((i) => names[i]);
      await restoreAdamW(half, names1, ck, { trains: new Set(names) });
      assert.deepEqual(await half.state(), await halves[1].state());
      // Without `trains`, the other half's state is foreign: refused, naming it.
      const others = mine[0].map((i) => names[i]).filter((n) => n !== "head.bias");
      await assert.rejects(restoreAdamW(new AdamW(again, hp), names1, ck), (err: Error) => {
        assert.match(err.message, new RegExp(`holds optimizer state for ${others.length} parameter\\(s\\)`));
        assert.match(err.message, /the optimizer does not train/);
        for (const n of others) assert.ok(err.message.includes(`"${n}"`), `${n} in: ${err.message}`);
        for (const n of names1) assert.ok(!err.message.includes(`"${n}"`), `${n} in: ${err.message}`);
        return true;
      });
      // `trains` that lacks a saved name is refused too.
      await assert.rejects(
        restoreAdamW(new AdamW(again, hp), names1, ck, { trains: new Set(names.slice(1)) }),
        /1 parameter\(s\) the optimizer does not train: "embed\.weight"/,
      );
      for (const o of [...halves, full, restored, half]) o.dispose();
      for (const p of [...sharded, ...whole, ...restored.params, ...again]) {
        p.grad?.dispose();
        p.dispose();
      }
    });
  },
);

/**
 * Saves fixture(step) with its optimizer state in two shards: "model.mm_projector.0.weight" in shard 0,
 * the other two (one never updated) in shard 1. `shard1` changes what shard 1 holds.
 */
async function saveSharded(
  runDir: string,
  step: number,
  opts: { index?: { shards: number; step: number }; shard1?: "dup" } = {},
): Promise<string> {
  const { params, state, names } = fixture(step);
  const parts = opts.shard1 === "dup" ? [[0], [0, 2]] : [[0], [1, 2]];
  return await saveCheckpoint(runDir, {
    step,
    params,
    optimizer: opts.index ?? { shards: 2, step: state.step },
    addFiles: async (tmp) => {
      const out = new Map<string, string>();
      for (const [r, idx] of parts.entries()) {
        const file = optimizerShardFile(r, 2);
        const shard = { step: state.step, params: idx.map((i) => state.params[i]) };
        out.set(
          file,
          await writeOptimizerShard(`${tmp}/${file}`, {
            names: idx.map((i) => names[i]),
            state: shard,
          }, params),
        );
      }
      return out;
    },
    trainerState: { step },
  });
}

Deno.test("a sharded state from host arrays loads as the unsharded one does", async () => {
  await inTempDir(async (run) => {
    await saveSharded(`${run}/sharded`, 4);
    await save(`${run}/whole`, 4);
    const [a, b] = [await loadCheckpoint(`${run}/sharded`), await loadCheckpoint(`${run}/whole`)];
    const { names } = fixture(4);
    assert.equal(a.optimizer.step, b.optimizer.step);
    assert.deepEqual([...a.optimizer.params.keys()].sort(), [...b.optimizer.params.keys()].sort());
    assert.deepEqual(await statesFor(names, a), await statesFor(names, b));
  });
});

Deno.test("a sharded state with a missing, unlisted or damaged shard is refused, naming the file", async () => {
  await inTempDir(async (run) => {
    await save(run, 1);
    const dir = await saveSharded(run, 2);
    const shard = (r: number) => `${dir}/${optimizerShardFile(r, 2)}`;
    const sums = await Deno.readTextFile(`${dir}/checksums.sha256`);
    const good = await Deno.readFile(shard(1));
    assert.equal((await loadCheckpoint(run)).step, 2);

    // the file gone, its checksum still listed
    await Deno.remove(shard(1));
    await assert.rejects(loadCheckpoint(run), (err: Error) => {
      assert.match(err.message, /step-00000002\/optimizer-1-of-2\.safetensors: missing/);
      assert.match(err.message, /delete .*step-00000002 to resume from .*step-00000001/);
      return true;
    });
    // the file gone and its line too
    const without = sums.split("\n").filter((l) => !l.endsWith("optimizer-1-of-2.safetensors")).join("\n");
    assert.notEqual(without, sums);
    await Deno.writeTextFile(`${dir}/checksums.sha256`, without);
    await assert.rejects(loadCheckpoint(dir), /step-00000002\/optimizer-1-of-2\.safetensors: missing/);
    // the file back, its line still missing
    await Deno.writeFile(shard(1), good);
    await assert.rejects(
      loadCheckpoint(dir),
      /checksums\.sha256: no checksum for optimizer-1-of-2\.safetensors/,
    );
    await Deno.writeTextFile(`${dir}/checksums.sha256`, sums);
    assert.equal((await loadCheckpoint(dir)).step, 2);

    // one flipped byte in the values of a shard
    const bytes = await Deno.readFile(shard(0));
    const bad = bytes.slice();
    bad[bad.length - 3] ^= 0x01;
    await Deno.writeFile(shard(0), bad);
    await assert.rejects(loadCheckpoint(run), (err: Error) => {
      assert.match(err.message, /step-00000002\/optimizer-0-of-2\.safetensors: its SHA-256 .* differs/);
      assert.match(err.message, /to resume from .*step-00000001/);
      return true;
    });
    await Deno.writeFile(shard(0), bytes);
    assert.equal((await loadCheckpoint(run)).step, 2);
  });
});

Deno.test("sharded states that do not add up are refused: a shard count < 1, a state twice, another step", async () => {
  await inTempDir(async (run) => {
    await assert.rejects(
      saveSharded(`${run}/zero`, 1, { index: { shards: 0, step: 1 } }),
      /optimizer\.shards is 0/,
    );
    assert.deepEqual(await listCheckpoints(`${run}/zero`), []);
    await saveSharded(`${run}/dup`, 1, { shard1: "dup" });
    await assert.rejects(
      loadCheckpoint(`${run}/dup`),
      /optimizer-1-of-2\.safetensors: holds "model\.mm_projector\.0\.weight", which an earlier shard holds too/,
    );
    await saveSharded(`${run}/step`, 1, { index: { shards: 2, step: 9 } });
    await assert.rejects(
      loadCheckpoint(`${run}/step`),
      /optimizer-0-of-2\.safetensors: its step 6 differs from the index's 9/,
    );
    // An index of 3 shards where two were written: the save refuses to seal it.
    await assert.rejects(
      saveSharded(`${run}/three`, 1, { index: { shards: 3, step: 6 } }),
      /in 3 shards, but addFiles did not write optimizer-0-of-3\.safetensors, optimizer-1-of-3\.safetensors, optimizer-2-of-3\.safetensors; nothing was saved/,
    );
    assert.equal(await latestCheckpoint(`${run}/three`), null);
  });
});

Deno.test({
  name: "a sharded checkpoint without checksums notes it once, through onNote only",
  fn: async () => {
    await inTempDir(async (run) => {
      const dir = await saveSharded(run, 1);
      await Deno.remove(`${dir}/checksums.sha256`);
      const notes: string[] = [], warned: unknown[][] = [];
      const warn = console.warn;
      console.warn = (...args: unknown[]) => warned.push(args);
      try {
        assert.equal((await loadCheckpoint(run, { onNote: (l) => notes.push(l) })).step, 1);
      } finally {
        console.warn = warn;
      }
      assert.equal(notes.length, 1);
      assert.match(notes[0], /no checksums\.sha256 .*unverified/);
      assert.deepEqual(warned, []);
    });
  },
});
