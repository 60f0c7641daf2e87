/**
 * MPI's predefined handles, for the two ABIs in use. MPICH (and Intel MPI, MVAPICH, which share its ABI)
 * defines `MPI_Comm`, `MPI_Datatype`, `MPI_Op`, `MPI_Info` as `int` and the predefined handles as integer constants (`MPI_COMM_WORLD` = 0x44000000). Open MPI defines them as
 * pointers to structs, the predefined ones being the addresses of exported globals (`MPI_COMM_WORLD` =
 * `&ompi_mpi_comm_world`), found here through the loader. Which ABI a library has is told by the
 * presence of `ompi_mpi_comm_world`.
 * @module
 */

import { findSymbol, type LoadedLibrary } from "./dynamic_loader.ts";

/** Which ABI an MPI library has: Open MPI's (pointer handles) or MPICH's (integer handles). */
export type MpiImplementation = "openmpi" | "mpich";

/** A communicator, datatype, op or info handle: a pointer (Open MPI) or an `int` (MPICH). */
export type MpiHandle = Deno.PointerValue | number;

/** The predefined handles the binding uses, for one library. */
export interface MpiHandles {
  implementation: MpiImplementation;
  /** The FFI type of a handle argument. */
  handleType: "pointer" | "i32";
  /** The bytes of a handle written through an out-parameter (`MPI_Comm*`). */
  handleBytes: 8 | 4;
  commWorld: MpiHandle;
  infoNull: MpiHandle;
  float: MpiHandle;
  byte: MpiHandle;
  sum: MpiHandle;
  /** `MPI_IN_PLACE`: `(void*)1` in Open MPI, `(void*)-1` in MPICH. */
  inPlace: Deno.PointerValue;
  /** `MPI_COMM_TYPE_SHARED`: 0 in Open MPI, 1 in MPICH. */
  commTypeShared: number;
}

/** The thread support levels of `MPI_Init_thread`, in order (the same values in both ABIs). */
export const THREAD_LEVELS = ["single", "funneled", "serialized", "multiple"] as const;

/** A thread support level: `MPI_THREAD_SINGLE` ... `MPI_THREAD_MULTIPLE`. */
export type ThreadLevel = (typeof THREAD_LEVELS)[number];

/** The predefined handles of `library`, built for its ABI. */
export function mpiHandles(library: LoadedLibrary): MpiHandles {
  if (findSymbol(library, "ompi_mpi_comm_world") === null) {
    return {
      implementation: "mpich",
      handleType: "i32",
      handleBytes: 4,
      commWorld: 0x44000000,
      infoNull: 0x1c000000,
      float: 0x4c00040a,
      byte: 0x4c00010d,
      sum: 0x58000003,
      inPlace: Deno.UnsafePointer.create(0xffffffffffffffffn),
      commTypeShared: 1,
    };
  }
  const global = (name: string): Deno.PointerObject => {
    const p = findSymbol(library, name);
    if (p === null) {
      throw new Error(
        `${library.name} exports ompi_mpi_comm_world but not ${name}: an Open MPI this binding does not know; ` +
          `set ASVR_MPI_LIB to another MPI library`,
      );
    }
    return p;
  };
  return {
    implementation: "openmpi",
    handleType: "pointer",
    handleBytes: 8,
    commWorld: global("ompi_mpi_comm_world"),
    infoNull: global("ompi_mpi_info_null"),
    float: global("ompi_mpi_float"),
    byte: global("ompi_mpi_byte"),
    sum: global("ompi_mpi_op_sum"),
    inPlace: Deno.UnsafePointer.create(1n),
    commTypeShared: 0,
  };
}
