/**
 * The C dynamic loader (`dlopen`, `dlsym`, `dlerror` of glibc's `libc.so.6`, or `libdl.so.2` before glibc
 * 2.34), called through FFI. `Deno.dlopen` binds functions only and opens libraries with `RTLD_LOCAL`;
 * this opens a library with `RTLD_GLOBAL` (Open MPI loads plugins that need libmpi's symbols global) and
 * finds the address of a data symbol (Open MPI's `ompi_mpi_comm_world` and other predefined handles).
 * @module
 */

const RTLD_NOW = 0x2;
const RTLD_GLOBAL = 0x100;

const LOADER_SYMBOLS = {
  dlopen: { parameters: ["buffer", "i32"], result: "pointer" },
  dlsym: { parameters: ["pointer", "buffer"], result: "pointer" },
  dlerror: { parameters: [], result: "pointer" },
} as const;

type Loader = Deno.DynamicLibrary<typeof LOADER_SYMBOLS>["symbols"];

let loader: Loader | undefined;

function cString(s: string): Uint8Array<ArrayBuffer> {
  return new TextEncoder().encode(s + "\0");
}

function openLoader(): Loader {
  if (loader) return loader;
  if (Deno.build.os !== "linux") {
    throw new Error(`the MPI binding runs on Linux only (this is ${Deno.build.os})`);
  }
  const errors: string[] = [];
  for (const name of ["libc.so.6", "libdl.so.2"]) {
    try {
      loader = Deno.dlopen(name, LOADER_SYMBOLS).symbols;
      return loader;
    } catch (e) {
      errors.push(`${name}: ${(e as Error).message}`);
    }
  }
  throw new Error(`cannot reach the C dynamic loader (dlopen, dlsym) in libc: ${errors.join("; ")}`);
}

/** The loader's message for the last failure, or "" when it has none. */
function lastError(dl: Loader): string {
  const p = dl.dlerror();
  return p === null ? "" : Deno.UnsafePointerView.getCString(p);
}

/** A library opened by the C loader with `RTLD_NOW | RTLD_GLOBAL`: its handle, for {@linkcode findSymbol}. */
export interface LoadedLibrary {
  /** The name or path it was opened by (a soname such as `libmpi.so.40`, or a path). */
  name: string;
  /** The loader's handle. */
  handle: Deno.PointerObject;
}

/**
 * Opens `name` (a soname searched the loader's usual way: `LD_LIBRARY_PATH`, the ld.so cache with
 * Debian's multiarch folders, /usr/lib; or a path) with `RTLD_NOW | RTLD_GLOBAL`. Returns the library, or
 * the loader's message saying why it could not.
 */
export function openGlobal(name: string): LoadedLibrary | { error: string } {
  const dl = openLoader();
  const handle = dl.dlopen(cString(name), RTLD_NOW | RTLD_GLOBAL);
  if (handle === null) return { error: lastError(dl) || `${name}: not found` };
  return { name, handle };
}

/** The address of the symbol `symbol` (a function or data) in `library`, or `null` when it has none. */
export function findSymbol(library: LoadedLibrary, symbol: string): Deno.PointerObject | null {
  const dl = openLoader();
  dl.dlerror(); // clear any earlier message
  return dl.dlsym(library.handle, cString(symbol));
}
