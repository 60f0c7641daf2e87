import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { describeLaunch } from "../cli/info.ts";
import { findLaunchers, launchCommand } from "./testdata/launchers.ts";

const SCRIPT = fileURLToPath(new URL("./gpu_pin.sh", import.meta.url));
const INFO = fileURLToPath(new URL("../cli/info.ts", import.meta.url));
const ROOT = fileURLToPath(new URL("..", import.meta.url));

/** The first of `paths` that exists, else the bare name (left to PATH). */
function firstExisting(paths: string[], fallback: string): string {
  for (const p of paths) {
    try {
      if (Deno.statSync(p).isFile) return p;
    } catch {
      // not there
    }
  }
  return fallback;
}

const BASH = firstExisting(["/bin/bash", "/usr/bin/bash", "/usr/local/bin/bash"], "bash");
const ENV = firstExisting(["/usr/bin/env", "/bin/env"], "env");
const SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin";

/** A temporary folder holding a fake `nvidia-smi` that prints `stdout` and exits with `code`. */
function fakeNvidiaSmi(stdout: string, code = 0): string {
  const dir = Deno.makeTempDirSync({ prefix: "gpu_pin_test_" });
  const print = stdout === "" ? "" : `cat <<'END_OF_LIST'\n${stdout.replace(/\n?$/, "\n")}END_OF_LIST\n`;
  Deno.writeTextFileSync(`${dir}/nvidia-smi`, `#!/bin/sh\n${print}exit ${code}\n`, { mode: 0o755 });
  return dir;
}

const TWO_GPUS = "00000000:3B:00.0\n00000000:5E:00.0\n";

/** Runs the wrapper around `env` in a clean environment: `PATH` is `path`, plus `vars`. */
function pin(vars: Record<string, string>, path: string, command: string[] = [ENV]) {
  const out = new Deno.Command(BASH, {
    args: [SCRIPT, ...command],
    env: { PATH: path, ...vars },
    clearEnv: true,
    stdout: "piped",
    stderr: "piped",
  }).outputSync();
  const stdout = new TextDecoder().decode(out.stdout);
  const env = new Map(
    stdout.split("\n").filter((l) => l.includes("=")).map((
      l,
    ) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
  );
  return { code: out.code, stdout, stderr: new TextDecoder().decode(out.stderr), env };
}

Deno.test("gpu_pin: each launcher's local rank picks its GPU from nvidia-smi", () => {
  const dir = fakeNvidiaSmi(TWO_GPUS);
  try {
    const path = `${dir}:${SYSTEM_PATH}`;
    const cases: [Record<string, string>, string][] = [
      [{ OMPI_COMM_WORLD_LOCAL_RANK: "1" }, "pci-0000_5e_00_0"],
      [{ OMPI_COMM_WORLD_LOCAL_RANK: "0" }, "pci-0000_3b_00_0"],
      [{ MPI_LOCALRANKID: "1" }, "pci-0000_5e_00_0"],
      [{ MV2_COMM_WORLD_LOCAL_RANK: "1" }, "pci-0000_5e_00_0"],
      [{ SLURM_LOCALID: "1" }, "pci-0000_5e_00_0"],
      [{ OMPI_COMM_WORLD_LOCAL_RANK: "0", SLURM_LOCALID: "1" }, "pci-0000_3b_00_0"],
      [{}, "pci-0000_3b_00_0"], // no launcher: local rank 0
    ];
    for (const [vars, tag] of cases) {
      const r = pin(vars, path);
      const what = `${JSON.stringify(vars)}: ${r.stderr}`;
      assert.equal(r.code, 0, what);
      assert.equal(r.env.get("DRI_PRIME"), tag, what);
      assert.equal(r.env.get("MESA_VK_DEVICE_SELECT_FORCE_DEFAULT_DEVICE"), "1", what);
      assert.equal(r.stderr, "", `silent on success: ${what}`);
    }
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("gpu_pin: ASVR_GPU_PIN_VERBOSE=1 says the choice on stderr", () => {
  const dir = fakeNvidiaSmi(TWO_GPUS);
  try {
    const r = pin({ OMPI_COMM_WORLD_LOCAL_RANK: "1", ASVR_GPU_PIN_VERBOSE: "1" }, `${dir}:${SYSTEM_PATH}`);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /local rank 1 \(OMPI_COMM_WORLD_LOCAL_RANK\)/);
    assert.match(r.stderr, /00000000:5E:00\.0 \(nvidia-smi\)/);
    assert.match(r.stderr, /DRI_PRIME=pci-0000_5e_00_0/);
    assert.doesNotMatch(r.stdout, /gpu_pin\.sh:/, "the report goes to stderr, not into the command's output");
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("gpu_pin: ASVR_GPU_BUS_IDS overrides nvidia-smi and takes lspci's and rocm-smi's forms", () => {
  const dir = fakeNvidiaSmi("00000000:01:00.0\n00000000:02:00.0\n00000000:03:00.0\n");
  try {
    const path = `${dir}:${SYSTEM_PATH}`;
    const ids = "0000:c1:00.0, 0001:AF:1f.7,3b:00.0";
    const expect = ["pci-0000_c1_00_0", "pci-0001_af_1f_7", "pci-0000_3b_00_0"];
    for (const [rank, tag] of expect.entries()) {
      const r = pin({ ASVR_GPU_BUS_IDS: ids, MPI_LOCALRANKID: String(rank) }, path);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.env.get("DRI_PRIME"), tag);
      assert.equal(r.env.get("MESA_VK_DEVICE_SELECT_FORCE_DEFAULT_DEVICE"), "1");
    }
    // Without nvidia-smi on PATH at all, the override alone is enough.
    const empty = Deno.makeTempDirSync({ prefix: "gpu_pin_test_empty_" });
    try {
      const r = pin({ ASVR_GPU_BUS_IDS: ids, SLURM_LOCALID: "1" }, empty);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.env.get("DRI_PRIME"), "pci-0001_af_1f_7");
    } finally {
      Deno.removeSync(empty, { recursive: true });
    }
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("gpu_pin: a local rank past the node's GPUs fails, naming the count and the fix", () => {
  const dir = fakeNvidiaSmi(TWO_GPUS);
  try {
    const r = pin({ OMPI_COMM_WORLD_LOCAL_RANK: "2" }, `${dir}:${SYSTEM_PATH}`);
    assert.notEqual(r.code, 0);
    assert.equal(r.stdout, "", "the command must not run");
    assert.match(r.stderr, /local rank 2 \(OMPI_COMM_WORLD_LOCAL_RANK\) has no GPU/);
    assert.match(r.stderr, /lists 2 GPU\(s\)/);
    assert.match(r.stderr, /ppr:2:node/);
    assert.match(r.stderr, /ASVR_GPU_BUS_IDS/);
    const over = pin({ ASVR_GPU_BUS_IDS: "0000:3b:00.0", SLURM_LOCALID: "1" }, `${dir}:${SYSTEM_PATH}`);
    assert.notEqual(over.code, 0);
    assert.match(over.stderr, /ASVR_GPU_BUS_IDS lists 1 GPU\(s\)/);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("gpu_pin: without nvidia-smi and without the override it fails, naming both fixes", () => {
  const empty = Deno.makeTempDirSync({ prefix: "gpu_pin_test_empty_" });
  try {
    const r = pin({ OMPI_COMM_WORLD_LOCAL_RANK: "0" }, empty);
    assert.notEqual(r.code, 0);
    assert.equal(r.stdout, "", "the command must not run");
    assert.match(r.stderr, /nvidia-smi not found/);
    assert.match(r.stderr, /export ASVR_GPU_BUS_IDS=/);
    assert.match(r.stderr, /rocm-smi/);
    assert.match(r.stderr, /lspci/);
  } finally {
    Deno.removeSync(empty, { recursive: true });
  }
});

Deno.test("gpu_pin: a failing nvidia-smi, an empty list, a bad bus id and a missing command are refused", () => {
  const broken = fakeNvidiaSmi(
    "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver",
    9,
  );
  const none = fakeNvidiaSmi("");
  try {
    const failed = pin({}, `${broken}:${SYSTEM_PATH}`);
    assert.notEqual(failed.code, 0);
    assert.equal(failed.stdout, "");
    assert.match(failed.stderr, /nvidia-smi --query-gpu=pci\.bus_id failed: NVIDIA-SMI has failed/);
    assert.match(failed.stderr, /ASVR_GPU_BUS_IDS/);

    const empty = pin({}, `${none}:${SYSTEM_PATH}`);
    assert.notEqual(empty.code, 0);
    assert.match(empty.stderr, /nvidia-smi listed no GPUs/);

    const bad = pin({ ASVR_GPU_BUS_IDS: "GPU-0" }, SYSTEM_PATH);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /'GPU-0'.*not a PCI bus id/);

    const bare = pin({ ASVR_GPU_BUS_IDS: "0000:3b:00.0" }, SYSTEM_PATH, []);
    assert.notEqual(bare.code, 0);
    assert.match(bare.stderr, /no command given/);
  } finally {
    Deno.removeSync(broken, { recursive: true });
    Deno.removeSync(none, { recursive: true });
  }
});

Deno.test("gpu_pin: the wrapped command's arguments and exit code pass through", () => {
  const r = pin({ ASVR_GPU_BUS_IDS: "0000:3b:00.0" }, SYSTEM_PATH, [
    BASH,
    "-c",
    'echo "$DRI_PRIME $1"; exit 7',
    "-",
    "a b",
  ]);
  assert.equal(r.code, 7, r.stderr);
  assert.equal(r.stdout, "pci-0000_3b_00_0 a b\n");
});

Deno.test("info: under a launcher, the rank line names the local rank and the pinned device", () => {
  const envOf = (vars: Record<string, string>) => (name: string) => vars[name];
  assert.equal(describeLaunch(envOf({ DRI_PRIME: "pci-0000_3b_00_0" })), undefined, "no launcher, no line");
  const pinned = describeLaunch(envOf({
    OMPI_COMM_WORLD_SIZE: "2",
    OMPI_COMM_WORLD_LOCAL_RANK: "1",
    DRI_PRIME: "pci-0000_5e_00_0",
    MESA_VK_DEVICE_SELECT_FORCE_DEFAULT_DEVICE: "1",
  }));
  assert.deepEqual(pinned, {
    prefix: "[local rank 1] ",
    line: "rank:      local rank 1 of 2 ranks (DRI_PRIME=pci-0000_5e_00_0, only that device visible)",
  });
  const unpinned = describeLaunch(envOf({ PMI_SIZE: "4", MPI_LOCALRANKID: "3" }));
  assert.equal(
    unpinned?.line,
    "rank:      local rank 3 of 4 ranks (not pinned: every rank may share one GPU; run under dist/gpu_pin.sh)",
  );
  assert.equal(
    describeLaunch(envOf({ PMIX_RANK: "0" }))?.line.startsWith("rank:      local rank unknown ("),
    true,
  );
});

const LAUNCHERS = findLaunchers();

if (LAUNCHERS.length === 0) {
  Deno.test({
    name: "gpu_pin: 2 ranks of `deno task info` under mpirun (skipped: no MPI launcher installed; " +
      "apt-get install openmpi-bin or mpich)",
    ignore: true,
    fn() {},
  });
}

for (const launcher of LAUNCHERS) {
  Deno.test(`gpu_pin: 2 ranks of cli/info.ts under ${launcher.command} (${launcher.implementation}) each get their own pci address`, async () => {
    const dir = fakeNvidiaSmi(TWO_GPUS);
    try {
      const env = Deno.env.toObject();
      for (const name of ["DRI_PRIME", "MESA_VK_DEVICE_SELECT_FORCE_DEFAULT_DEVICE", "ASVR_GPU_BUS_IDS"]) {
        delete env[name];
      }
      env.PATH = `${dir}:${env.PATH ?? SYSTEM_PATH}`;
      env.ASVR_GPU_PIN_VERBOSE = "1";
      const out = await launchCommand(launcher, 2, [BASH, SCRIPT, Deno.execPath(), "run", "-A", INFO], env, {
        cwd: ROOT,
      }).output();
      const stdout = new TextDecoder().decode(out.stdout);
      const stderr = new TextDecoder().decode(out.stderr);
      const text = `stdout:\n${stdout}\nstderr:\n${stderr}`;
      assert.equal(out.code, 0, text);
      const ranks = [
        ...stdout.matchAll(
          /^\[local rank (\d)\] rank: +local rank \1 of 2 ranks \(DRI_PRIME=(pci-[0-9a-f_]+)/gm,
        ),
      ]
        .map((m) => [Number(m[1]), m[2]] as const)
        .sort(([a], [b]) => a - b);
      assert.deepEqual(ranks, [[0, "pci-0000_3b_00_0"], [1, "pci-0000_5e_00_0"]], text);
      assert.match(stdout, /^\[local rank 0\] adapter: /m, text);
      assert.match(stdout, /^\[local rank 1\] adapter: /m, text);
      assert.match(stderr, /gpu_pin\.sh: local rank 0 .*DRI_PRIME=pci-0000_3b_00_0/, text);
      assert.match(stderr, /gpu_pin\.sh: local rank 1 .*DRI_PRIME=pci-0000_5e_00_0/, text);
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  });
}
