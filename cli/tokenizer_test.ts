import assert from "node:assert/strict";
import { randn } from "../core/random.ts";
import { writeSafetensors } from "../io/safetensors.ts";
import { Codebooks } from "../tokenizers/codebooks.ts";

const CLI = new URL("./tokenizer.ts", import.meta.url).pathname;

/** Runs `deno run -A cli/tokenizer.ts ...args`; returns the exit code and the output. */
async function tokenizer(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", CLI, ...args],
    stdout: "piped",
    stderr: "piped",
  })
    .output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

Deno.test("deno task tokenizer fit: fits codebooks on a features file, one line per iteration; info reads them", async () => {
  const dir = await Deno.makeTempDir();
  try {
    // Features [2, 40, 6] (leading dims are flattened to 80 rows) with provenance metadata.
    const feats = `${dir}/feats.safetensors`;
    await writeSafetensors(
      feats,
      [{ name: "hidden", dtype: "F16", shape: [2, 40, 6], data: randn(480, 3) }],
      {
        layer: "26",
        encoder: "tiny-siglip",
      },
    );
    const out = `${dir}/sub/cb.safetensors`;
    const r = await tokenizer(
      "fit",
      "--features",
      feats,
      "--tensor",
      "hidden",
      "--depths",
      "2",
      "--codebook-size",
      "8",
      "--iters",
      "3",
      "--seed",
      "1",
      "--out",
      out,
    );
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.split("\n").filter((l) => l.startsWith("depth "));
    assert.equal(lines.length, 2 * (3 + 1), r.stdout);
    assert.match(lines[0], /^depth 1\/2 +iter +1\/3 +mse \d\.\d+e[-+]\d+ +dead \d+ +rows 80 /);
    assert.match(lines[3], /^depth 1\/2 +final +mse .* dead 0 /);
    const cb = await Codebooks.load(out);
    assert.deepEqual(cb.info, {
      depths: 2,
      codebookSize: 8,
      dim: 6,
      shared: false,
      layer: 26,
      encoder: "tiny-siglip",
    });
    assert.ok(r.stdout.includes(`identity ${cb.identity()}`));
    const i = await tokenizer("info", out);
    assert.equal(i.code, 0, i.stderr);
    assert.match(i.stdout, /codebooks \[2,8,6\] \(one per 2 depths\)/);
    assert.ok(i.stdout.includes(cb.identity()));
    assert.ok(i.stdout.includes("layer: 26  encoder: tiny-siglip"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("deno task tokenizer: a missing or bad flag names the flag and the fix (exit 2)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const feats = `${dir}/f.safetensors`;
    await writeSafetensors(feats, [{ name: "features", dtype: "F32", shape: [10, 4], data: randn(40, 1) }]);
    const cases: [string[], RegExp][] = [
      [["fit", "--depths", "2", "--codebook-size", "4", "--out", "x"], /--features is required/],
      [["fit", "--features", feats, "--codebook-size", "4", "--out", "x"], /--depths is required/],
      [
        ["fit", "--features", feats, "--depths", "two", "--codebook-size", "4", "--out", "x"],
        /--depths must be an integer >= 1, got "two"/,
      ],
      [
        ["fit", "--features", feats, "--depths", "2", "--codebook-size", "70000", "--out", "x"],
        /--codebook-size 70000 is over 65536/,
      ],
      [["fit", "--features", feats, "--depths", "2", "--codebook-size", "4"], /--out is required/],
      [
        ["fit", "--features", feats, "--tensor", "h", "--depths", "2", "--codebook-size", "4", "--out", "x"],
        /no tensor "h" \(it holds: features\); choose one with --tensor/,
      ],
      [
        ["fit", "--features", feats, "--depths", "2", "--codebook-size", "4", "--out", "x", "--bogus"],
        /bogus/,
      ],
      [["frobnicate"], /unknown command "frobnicate"; use fit or info/],
    ];
    for (const [args, re] of cases) {
      const r = await tokenizer(...args);
      assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
      assert.match(r.stderr, re);
      assert.match(r.stderr, /--help/);
    }
    const help = await tokenizer("--help");
    assert.equal(help.code, 0);
    assert.match(help.stdout, /data pipeline/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
