/**
 * Finding the MPI library: the path in `ASVR_MPI_LIB` when set, else the usual sonames (`libmpi.so.40`
 * of Open MPI, `libmpi.so.12` of MPICH and Intel MPI, `libmpich.so.12` of Debian's MPICH, `libmpi.so`),
 * searched by the C loader the usual way (`LD_LIBRARY_PATH`, the ld.so cache with Debian's multiarch
 * folders). Under a launcher that says which implementation it is (`OMPI_*` variables: Open MPI; Hydra's
 * `PMI_SIZE`: MPICH), that implementation's sonames are tried first, so a machine with both installed loads
 * the library matching `mpirun`.
 * @module
 */

import { type LoadedLibrary, openGlobal } from "./dynamic_loader.ts";
import { type EnvReader, launcherKind } from "./launcher.ts";

/** The environment variable naming the MPI library to load (a path or a soname). */
export const MPI_LIBRARY_VARIABLE = "ASVR_MPI_LIB";

const OPEN_MPI_SONAMES = ["libmpi.so.40"];
const MPICH_SONAMES = ["libmpi.so.12", "libmpich.so.12"];

/**
 * The libraries tried, in order: `ASVR_MPI_LIB` alone when set; else the sonames, those of the launcher's
 * implementation first, `libmpi.so` (the development symlink) last.
 */
export function mpiLibraryCandidates(env: EnvReader = (name) => Deno.env.get(name)): string[] {
  const chosen = env(MPI_LIBRARY_VARIABLE)?.trim();
  if (chosen) return [chosen];
  const sonames = launcherKind(env) === "mpich"
    ? [...MPICH_SONAMES, ...OPEN_MPI_SONAMES]
    : [...OPEN_MPI_SONAMES, ...MPICH_SONAMES];
  return [...sonames, "libmpi.so"];
}

/** Thrown when no MPI library can be loaded; its message lists what was tried and what to install. */
export class MpiNotFoundError extends Error {
  /** `tried`: each library tried, with the loader's reason. */
  constructor(readonly tried: readonly string[]) {
    super(
      "No MPI library could be loaded. Tried:\n" + tried.map((t) => `  - ${t}`).join("\n") + "\n" +
        "Install an MPI implementation (Debian/Ubuntu: `apt-get install openmpi-bin libopenmpi-dev`, or\n" +
        "`apt-get install mpich libmpich-dev`), or set " + MPI_LIBRARY_VARIABLE +
        " to the path of its libmpi.so\n" +
        `(e.g. ${MPI_LIBRARY_VARIABLE}=/usr/lib/x86_64-linux-gnu/libmpi.so.40). A single-process run needs no MPI.`,
    );
    this.name = "MpiNotFoundError";
  }
}

/**
 * Opens the first of `candidates` (by default {@linkcode mpiLibraryCandidates}) that loads, with
 * `RTLD_GLOBAL`. Throws {@linkcode MpiNotFoundError} when none does.
 */
export function openMpiLibrary(candidates: readonly string[] = mpiLibraryCandidates()): LoadedLibrary {
  const tried: string[] = [];
  for (const name of candidates) {
    const opened = openGlobal(name);
    if ("handle" in opened) return opened;
    tried.push(opened.error.includes(name) ? opened.error : `${name}: ${opened.error}`);
  }
  throw new MpiNotFoundError(tried);
}
