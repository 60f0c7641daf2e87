import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import {
  chunks,
  isLaunchedByMpi,
  launcherKind,
  launcherLocalRank,
  launcherWorldSize,
  Mpi,
  MPI_MAX_COUNT,
  mpiLibraryCandidates,
  MpiNotFoundError,
} from "./mod.ts";
import { openMpiLibrary } from "./library.ts";
import { findLaunchers, launchCommand, type Launcher } from "./testdata/launchers.ts";

const envOf = (vars: Record<string, string>) => (name: string) => vars[name];

Deno.test("mpi: chunks cover a length in pieces of at most maxCount", () => {
  assert.deepEqual(chunks(0, 3), []);
  assert.deepEqual(chunks(3, 3), [[0, 3]]);
  assert.deepEqual(chunks(10, 3), [[0, 3], [3, 3], [6, 3], [9, 1]]);
  assert.deepEqual(chunks(2 ** 32), [[0, MPI_MAX_COUNT], [MPI_MAX_COUNT, MPI_MAX_COUNT], [
    2 * MPI_MAX_COUNT,
    2,
  ]]);
  assert.throws(() => chunks(4, 0), /maxCount/);
  assert.throws(() => chunks(4, 2 ** 31), /maxCount/);
  assert.throws(() => chunks(-1, 3), /length/);
});

Deno.test("mpi: the launcher's variables say whether, which, how many and which local rank", () => {
  assert.equal(isLaunchedByMpi(envOf({})), false);
  assert.equal(
    isLaunchedByMpi(envOf({ SLURM_LOCALID: "0" })),
    false,
    "a Slurm job alone is not an MPI launch",
  );
  const openMpi = envOf({ OMPI_COMM_WORLD_SIZE: "4", OMPI_COMM_WORLD_LOCAL_RANK: "2", PMIX_RANK: "2" });
  assert.equal(isLaunchedByMpi(openMpi), true);
  assert.equal(launcherKind(openMpi), "openmpi");
  assert.equal(launcherWorldSize(openMpi), 4);
  assert.equal(launcherLocalRank(openMpi), 2);
  const hydra = envOf({ PMI_SIZE: "2", PMI_RANK: "1", MPI_LOCALRANKID: "1", MPI_LOCALNRANKS: "2" });
  assert.equal(isLaunchedByMpi(hydra), true);
  assert.equal(launcherKind(hydra), "mpich");
  assert.equal(launcherWorldSize(hydra), 2);
  assert.equal(launcherLocalRank(hydra), 1);
  const srunPmix = envOf({ PMIX_RANK: "3", SLURM_LOCALID: "1" });
  assert.equal(isLaunchedByMpi(srunPmix), true);
  assert.equal(launcherKind(srunPmix), undefined);
  assert.equal(launcherWorldSize(srunPmix), undefined);
  assert.equal(launcherLocalRank(srunPmix), 1);
});

Deno.test("mpi: the library is ASVR_MPI_LIB, else the launcher's sonames first", () => {
  assert.deepEqual(mpiLibraryCandidates(envOf({ ASVR_MPI_LIB: "/opt/mpi/lib/libmpi.so" })), [
    "/opt/mpi/lib/libmpi.so",
  ]);
  assert.deepEqual(mpiLibraryCandidates(envOf({})), [
    "libmpi.so.40",
    "libmpi.so.12",
    "libmpich.so.12",
    "libmpi.so",
  ]);
  assert.deepEqual(mpiLibraryCandidates(envOf({ OMPI_COMM_WORLD_SIZE: "2" })), [
    "libmpi.so.40",
    "libmpi.so.12",
    "libmpich.so.12",
    "libmpi.so",
  ]);
  assert.deepEqual(mpiLibraryCandidates(envOf({ PMI_SIZE: "2" })), [
    "libmpi.so.12",
    "libmpich.so.12",
    "libmpi.so.40",
    "libmpi.so",
  ]);
});

Deno.test({
  name: "mpi: without a library, the error says what was tried and what to install",
  ignore: Deno.build.os !== "linux",
}, () => {
  const error = (() => {
    try {
      openMpiLibrary(["/nonexistent/libmpi.so.40", "libasvr-no-such-mpi.so"]);
    } catch (e) {
      return e;
    }
    return undefined;
  })();
  assert.ok(error instanceof MpiNotFoundError, `expected MpiNotFoundError, got ${error}`);
  assert.equal(error.tried.length, 2);
  assert.match(error.message, /\/nonexistent\/libmpi\.so\.40/);
  assert.match(error.message, /libasvr-no-such-mpi\.so/);
  assert.match(error.message, /apt-get install openmpi-bin libopenmpi-dev/);
  assert.match(error.message, /apt-get install mpich/);
  assert.match(error.message, /ASVR_MPI_LIB/);
  assert.throws(() => Mpi.init({ library: "/nonexistent/libmpi.so" }), MpiNotFoundError);
});

Deno.test({
  name: "mpi: a library that is not MPI, and a bad maxCount, are refused before MPI starts",
  ignore: Deno.build.os !== "linux",
}, () => {
  assert.throws(() => Mpi.init({ maxCount: 0 }), /maxCount/);
  assert.throws(
    () => Mpi.init({ library: "libc.so.6" }),
    /libc\.so\.6 loaded but lacks MPI-3 functions.*ASVR_MPI_LIB/s,
  );
});

const LAUNCHERS = findLaunchers();
const SCRIPT = fileURLToPath(new URL("./testdata/collectives.ts", import.meta.url));

if (LAUNCHERS.length === 0) {
  console.log(
    "mpi: no MPI launcher (mpirun, mpiexec) found: the multi-process tests are skipped. " +
      "Install one: apt-get install openmpi-bin libopenmpi-dev (or mpich libmpich-dev)",
  );
  Deno.test({
    name: "mpi: 2 ranks under mpirun (skipped: no MPI launcher installed)",
    ignore: true,
    fn() {},
  });
}

/** Runs the collectives script on 2 processes; ASVR_MPI_LIB is left out, so the launcher picks the library. */
async function launch(launcher: Launcher, scriptArgs: string[]) {
  const env = Deno.env.toObject();
  delete env.ASVR_MPI_LIB;
  const out = await launchCommand(launcher, 2, [Deno.execPath(), "run", "-A", SCRIPT, ...scriptArgs], env)
    .output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  return { code: out.code, text };
}

for (const launcher of LAUNCHERS) {
  Deno.test(`mpi: 2 ranks under ${launcher.command} (${launcher.implementation}) all-reduce, reduce-scatter, all-gather, broadcast`, async () => {
    const { code, text } = await launch(launcher, ["--max-count", "5"]);
    assert.equal(code, 0, text);
    for (const rank of [0, 1]) {
      assert.match(text, new RegExp(`rank ${rank} ok \\(${launcher.implementation}, `), text);
    }
  });

  Deno.test(`mpi: abort on one rank ends the job under ${launcher.command} with its code`, async () => {
    const { code, text } = await launch(launcher, ["--abort", "3"]);
    assert.equal(code, 3, text);
    assert.doesNotMatch(text, /passed a barrier/, text);
  });
}
