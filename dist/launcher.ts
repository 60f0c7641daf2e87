/**
 * What an MPI launcher (`mpirun`, `mpiexec`, `srun`) tells its processes through environment variables,
 * read without loading any MPI library: whether this process was launched by one, which implementation's
 * launcher it was, the world size and this process's rank on its node.
 * @module
 */

/** Reads one environment variable; `Deno.env.get` by default, a record in tests. */
export type EnvReader = (name: string) => string | undefined;

const processEnv: EnvReader = (name) => Deno.env.get(name);

/** Variables whose presence means an MPI launcher started this process. */
export const LAUNCHER_VARIABLES: readonly string[] = [
  "OMPI_COMM_WORLD_SIZE", // Open MPI's mpirun
  "PMI_SIZE", // MPICH's and Intel MPI's Hydra (mpiexec), srun --mpi=pmi2
  "PMIX_RANK", // PMIx launchers: Open MPI 5's prterun, srun --mpi=pmix
  "MV2_COMM_WORLD_SIZE", // MVAPICH's mpirun_rsh
];

/** Which implementation's launcher started this process, as far as its variables tell. */
export type LauncherKind = "openmpi" | "mpich";

/**
 * True when an MPI launcher started this process (one of {@linkcode LAUNCHER_VARIABLES} is set). A
 * single-process run reads `false` here and needs no MPI library at all.
 */
export function isLaunchedByMpi(env: EnvReader = processEnv): boolean {
  return LAUNCHER_VARIABLES.some((name) => env(name) !== undefined);
}

/**
 * The launcher's implementation: `"openmpi"` under Open MPI's `mpirun` (`OMPI_COMM_WORLD_SIZE`),
 * `"mpich"` under Hydra's `mpiexec` (`PMI_SIZE` or `MPI_LOCALNRANKS`, MPICH and Intel MPI), else
 * `undefined` (no launcher, or one that does not say).
 */
export function launcherKind(env: EnvReader = processEnv): LauncherKind | undefined {
  if (env("OMPI_COMM_WORLD_SIZE") !== undefined) return "openmpi";
  if (env("PMI_SIZE") !== undefined || env("MPI_LOCALNRANKS") !== undefined) return "mpich";
  return undefined;
}

/** The number of processes the launcher started, when its variables say (else `undefined`). */
export function launcherWorldSize(env: EnvReader = processEnv): number | undefined {
  return firstInteger(env, ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE"]);
}

/**
 * This process's rank among those of its node, when the launcher says: `OMPI_COMM_WORLD_LOCAL_RANK`
 * (Open MPI), `MPI_LOCALRANKID` (Hydra), `MV2_COMM_WORLD_LOCAL_RANK` (MVAPICH), `SLURM_LOCALID` (srun).
 * Readable before MPI starts, e.g. to pick this process's GPU; after `Mpi.init()`, `Mpi.localRank`
 * is MPI's own answer.
 */
export function launcherLocalRank(env: EnvReader = processEnv): number | undefined {
  return firstInteger(env, [
    "OMPI_COMM_WORLD_LOCAL_RANK",
    "MPI_LOCALRANKID",
    "MV2_COMM_WORLD_LOCAL_RANK",
    "SLURM_LOCALID",
  ]);
}

function firstInteger(env: EnvReader, names: readonly string[]): number | undefined {
  for (const name of names) {
    const value = env(name);
    if (value !== undefined && /^\d+$/.test(value.trim())) return Number(value.trim());
  }
  return undefined;
}
