import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import type * as Ort from "onnxruntime-web";
import { onnxFixturePath } from "../tests/fixtures/onnx/onnx_fixtures.ts";
import {
  loadOnnxRuntime,
  OnnxRunner,
  ONNXRUNTIME_WEB,
  type OrtModuleLike,
  type OrtSessionLike,
} from "./onnx_runner.ts";

const ROOT = new URL("../", import.meta.url);
const ENCODER = onnxFixturePath("encoder.onnx");
const TOKENIZER = onnxFixturePath("tokenizer.onnx");

// Compile-time: the real package's API fits the subset onnx_runner.ts declares (deno test type-checks).
const _fitsModule = (m: typeof Ort): OrtModuleLike => m;
const _fitsSession = (s: Ort.InferenceSession): OrtSessionLike => s;

Deno.test("ONNXRUNTIME_WEB is the onnxruntime-web pin of deno.json", async () => {
  const cfg = JSON.parse(await Deno.readTextFile(new URL("deno.json", ROOT)));
  assert.equal(ONNXRUNTIME_WEB, cfg.imports["onnxruntime-web"]);
  assert.match(ONNXRUNTIME_WEB, /^npm:onnxruntime-web@1\.\d+\.\d+$/);
  assert.equal(typeof _fitsModule, "function");
  assert.equal(typeof _fitsSession, "function");
});

/** Runs `deno <args>` in the repo root; returns stdout, throws with stderr on failure. */
async function deno(args: string[]): Promise<string> {
  const out = await new Deno.Command(Deno.execPath(), { args, cwd: ROOT, stdout: "piped", stderr: "piped" })
    .output();
  const text = new TextDecoder();
  if (!out.success) throw new Error(`deno ${args[0]} failed:\n${text.decode(out.stderr)}`);
  return text.decode(out.stdout);
}

/** The module specifiers of `deno info --json <file>`'s graph (npm packages as `npm:/name@version`). */
async function graphModules(file: string): Promise<string[]> {
  const config = fileURLToPath(new URL("deno.json", ROOT));
  const graph = JSON.parse(await deno(["info", "--json", "--config", config, file]));
  return graph.modules.map((m: { specifier: string }) => m.specifier);
}

Deno.test("onnxruntime-web is not in the static module graph of the ONNX modules", async () => {
  for (const file of ["encoders/onnx_encoder.ts", "tokenizers/onnx_tokenizer.ts"]) {
    const modules = await graphModules(file);
    assert.ok(modules.some((m) => m.endsWith("/encoders/onnx_runner.ts")), `${file}: ${modules}`);
    assert.deepEqual(
      modules.filter((m) => m.includes("onnxruntime")),
      [],
      `${file} pulls in onnxruntime-web`,
    );
  }
  // Control: a literal dynamic import is in the graph (so Deno would download it for any run).
  const dir = await Deno.makeTempDir({ prefix: "asvr_onnx_graph_" });
  try {
    await Deno.writeTextFile(`${dir}/lit.ts`, 'export const f = () => import("onnxruntime-web");\n');
    assert.ok((await graphModules(`${dir}/lit.ts`)).some((m) => m.startsWith("npm:/onnxruntime-web@")));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("importing the modules does not load onnxruntime-web; the first load does, with no network", async () => {
  const dir = await Deno.makeTempDir({ prefix: "asvr_onnx_lazy_" });
  try {
    const url = (p: string) => new URL(p, ROOT).href;
    const script = `${dir}/lazy.ts`;
    await Deno.writeTextFile(
      script,
      [
        `import { onnxRuntimeLoaded } from "${url("encoders/onnx_runner.ts")}";`,
        `import { OnnxEncoder } from "${url("encoders/onnx_encoder.ts")}";`,
        `import { OnnxVisualTokenizer } from "${url("tokenizers/onnx_tokenizer.ts")}";`,
        `const before = onnxRuntimeLoaded();`,
        `const enc = await OnnxEncoder.load(${JSON.stringify(ENCODER)});`,
        `const out = await enc.run(new Float32Array(192), [1, 3, 8, 8]);`,
        `await enc.close();`,
        `console.log(JSON.stringify({ before, after: onnxRuntimeLoaded(), dims: out.dims, `,
        `  tok: typeof OnnxVisualTokenizer }));`,
      ].join("\n"),
    );
    // --deny-net: the .wasm must come from the package folder, not a CDN.
    const config = fileURLToPath(new URL("deno.json", ROOT));
    const stdout = await deno([
      "run",
      "--config",
      config,
      "--allow-read",
      "--allow-env",
      "--deny-net",
      script,
    ]);
    assert.deepEqual(JSON.parse(stdout.trim().split("\n").at(-1)!), {
      before: false,
      after: true,
      dims: [1, 4, 6],
      tok: "function",
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("loadOnnxRuntime points the wasm backend at the package's bundled files", async () => {
  const ort = await loadOnnxRuntime();
  assert.equal(await loadOnnxRuntime(), ort, "imported once");
  const paths = ort.env.wasm.wasmPaths;
  assert.equal(typeof paths, "string");
  assert.match(paths as string, /^file:\/\/.*onnxruntime-web\/1\.\d+\.\d+\/dist\/$/);
  const wasm = await Deno.stat(new URL("ort-wasm-simd-threaded.wasm", paths as string));
  assert.ok(wasm.isFile && wasm.size > 1e6);
  assert.equal(ort.env.wasm.numThreads, 1);
  assert.equal(ort.env.wasm.proxy, false);
});

Deno.test("OnnxRunner: names, declared shapes and output types of the fixtures", async () => {
  const enc = await OnnxRunner.load(ENCODER);
  const tok = await OnnxRunner.load(TOKENIZER, { inputName: "pixels", outputName: "codes" });
  try {
    assert.deepEqual(enc.inputNames, ["pixels"]);
    assert.deepEqual(enc.outputNames, ["features"]);
    assert.deepEqual(enc.inputShape, ["B", 3, 8, 8]);
    assert.equal(enc.outputType, "float32");
    assert.equal(tok.outputType, "int64");
    const out = await tok.run(new Float32Array(2 * 192), [2, 3, 8, 8]);
    assert.equal(out.type, "int64");
    assert.ok(out.data instanceof BigInt64Array);
    assert.deepEqual(out.dims, [2, 4, 2]);
  } finally {
    await enc.close();
    await tok.close();
  }
});

Deno.test("OnnxRunner: file errors name the path and the fix", async () => {
  await assert.rejects(
    OnnxRunner.load("no/such/model.onnx", { owner: "Tester" }),
    /^Error: Tester: model file not found: no\/such\/model\.onnx \(looked at \/.*no\/such\/model\.onnx\); .*torch\.onnx\.export/,
  );
  const dir = await Deno.makeTempDir({ prefix: "asvr_onnx_bad_" });
  try {
    await assert.rejects(OnnxRunner.load(dir), /is a folder; pass the path of the \.onnx file inside it/);
    const junk = `${dir}/junk.onnx`;
    await Deno.writeFile(junk, new TextEncoder().encode("this is not a protobuf"));
    await assert.rejects(
      OnnxRunner.load(junk),
      new RegExp(
        `OnnxRunner: ${junk} could not be loaded as an ONNX model \\(.+\\); check that it is an \\.onnx`,
      ),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("OnnxRunner: input/output names and shapes are checked, naming the expected ones", async () => {
  await assert.rejects(
    OnnxRunner.load(ENCODER, { inputName: "image" }),
    /has no input named "image"; its inputs are "pixels": set inputName to one of them/,
  );
  await assert.rejects(
    OnnxRunner.load(ENCODER, { outputName: "last_hidden_state" }),
    /has no output named "last_hidden_state"; its outputs are "features": set outputName/,
  );
  const m = await OnnxRunner.load(ENCODER);
  try {
    await assert.rejects(
      m.run(new Float32Array(3 * 16 * 16), [1, 3, 16, 16]),
      /input "pixels" expects shape \[B, 3, 8, 8\] \(names are free dims\); got \[1, 3, 16, 16\]/,
    );
    await assert.rejects(
      m.run(new Float32Array(3 * 64), [3, 64]),
      /expects shape \[B, 3, 8, 8\].*got \[3, 64\]/,
    );
    await assert.rejects(
      m.run(new Float32Array(10), [1, 3, 8, 8]),
      /dims \[1, 3, 8, 8\] hold 192 values but the data has 10/,
    );
    await assert.rejects(m.run(new Float32Array(0), [0, 3, 8, 8]), /must be positive integers/);
  } finally {
    await m.close();
  }
  await m.close(); // twice is fine
  await assert.rejects(m.run(new Float32Array(192), [1, 3, 8, 8]), /is closed; load it again/);
});
