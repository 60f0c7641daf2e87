/**
 * Multi-process training's communication: a thin MPI binding ({@linkcode Mpi}) through Deno's FFI, and
 * what the launcher's environment says ({@linkcode isLaunchedByMpi}) without loading MPI. Nothing here
 * loads a library until {@linkcode Mpi.init}.
 *
 * ```ts ignore
 * import { isLaunchedByMpi, Mpi } from "@asvr/asvr/dist";
 * if (isLaunchedByMpi()) {
 *   const mpi = Mpi.init(); // ASVR_MPI_LIB, else libmpi.so.40 (Open MPI), libmpi.so.12 / libmpich.so.12 (MPICH)
 *   console.log(`rank ${mpi.rank} of ${mpi.size} (${mpi.version})`);
 *   await mpi.allReduce(new Float32Array(16).fill(1)); // every element: size
 *   await mpi.finalize();
 * }
 * ```
 * @module
 */

export { Mpi, MpiError, type MpiOptions } from "./mpi.ts";
export { MPI_LIBRARY_VARIABLE, mpiLibraryCandidates, MpiNotFoundError } from "./library.ts";
export {
  type EnvReader,
  isLaunchedByMpi,
  LAUNCHER_VARIABLES,
  type LauncherKind,
  launcherKind,
  launcherLocalRank,
  launcherWorldSize,
} from "./launcher.ts";
export { type MpiImplementation, THREAD_LEVELS, type ThreadLevel } from "./handles.ts";
export { chunks, MPI_MAX_COUNT } from "./chunks.ts";
