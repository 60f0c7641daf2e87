/**
 * A thin MPI binding through Deno's FFI: the collectives data-parallel training needs, on host arrays,
 * from an installed MPI (Open MPI or MPICH and its ABI kin: Intel MPI, MVAPICH). Linux only; needs
 * `--allow-ffi --allow-env` (`deno task` grants all).
 *
 * ```ts ignore
 * import { isLaunchedByMpi, Mpi } from "@asvr/asvr/dist";
 * if (isLaunchedByMpi()) { // mpirun -np 2 deno run -A script.ts
 *   const mpi = Mpi.init();
 *   const grads = new Float32Array(1024).fill(mpi.rank);
 *   await mpi.allReduce(grads); // every element: 0 + 1 + ... + (size - 1)
 *   await mpi.finalize();
 * }
 * ```
 *
 * - The library: `ASVR_MPI_LIB` (a path or a soname) when set, else `libmpi.so.40` (Open MPI),
 *   `libmpi.so.12` (MPICH, Intel MPI), `libmpich.so.12` (Debian's MPICH), `libmpi.so`, those of the
 *   launcher's implementation first; none loading is an `MpiNotFoundError` saying what to install.
 *   Nothing loads until {@linkcode Mpi.init}, so a single-process run needs no MPI.
 * - Handles: MPICH's are integer constants, Open MPI's the addresses of its exported globals
 *   (`ompi_mpi_comm_world`, ...), found through the C loader; the signatures are declared per ABI.
 * - Threads: MPI starts with `MPI_Init_thread(MPI_THREAD_SERIALIZED)`. The collectives are FFI calls
 *   declared `nonblocking`: each runs on a worker thread and returns a Promise, so the event loop (timers,
 *   signals, GPU callbacks) goes on while the ranks exchange. They run one at a time, in the order they were
 *   called, which is the order every rank must call them in. An array handed to a collective must not be
 *   read or written until its Promise resolves.
 * - Counts: MPI's counts are C `int`s; longer arrays go through several calls of at most 2^31 - 1 elements.
 * - Errors: MPI's default handler aborts the whole job on an MPI error; a call that returns an error code
 *   rejects with an {@linkcode MpiError} naming the call and MPI's text for the code.
 *   {@linkcode Mpi.abort} ends every rank with a code (for an error one rank sees alone); call
 *   {@linkcode Mpi.finalize} before a normal exit.
 * @module
 */

import { chunks, MPI_MAX_COUNT } from "./chunks.ts";
import {
  type MpiHandle,
  type MpiHandles,
  mpiHandles,
  type MpiImplementation,
  THREAD_LEVELS,
  type ThreadLevel,
} from "./handles.ts";
import { launcherWorldSize } from "./launcher.ts";
import { MPI_LIBRARY_VARIABLE, mpiLibraryCandidates, openMpiLibrary } from "./library.ts";

/** Options of {@linkcode Mpi.init}. */
export interface MpiOptions {
  /** The MPI library, a path or a soname; default: `ASVR_MPI_LIB`, else the usual sonames. */
  library?: string;
  /**
   * The most elements one MPI call moves (default and maximum 2^31 - 1, MPI's `int` count); longer arrays
   * are split. Lower only to exercise the splitting on small arrays.
   */
  maxCount?: number;
}

/** An MPI call that returned an error code; the message names the call and MPI's text for the code. */
export class MpiError extends Error {
  /** `code`: the MPI error code, 0 when the error is the binding's own. */
  constructor(message: string, readonly code = 0) {
    super(message);
    this.name = "MpiError";
  }
}

/** Host bytes handed to a collective at most at once when pieces must be gathered into one buffer. */
const STAGING_BYTES = 256 * 1024 * 1024;

/** The `MPI_THREAD_*` level requested: collectives run on worker threads, one at a time. */
const REQUIRED_LEVEL = THREAD_LEVELS.indexOf("serialized");

/** The MPI functions the binding calls, with handle arguments of type `handle`. */
function mpiSymbols(handle: "pointer" | "i32") {
  return {
    MPI_Get_library_version: { parameters: ["buffer", "buffer"], result: "i32" },
    MPI_Init_thread: { parameters: ["pointer", "pointer", "i32", "buffer"], result: "i32" },
    MPI_Finalize: { parameters: [], result: "i32" },
    MPI_Abort: { parameters: [handle, "i32"], result: "i32" },
    MPI_Error_string: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
    MPI_Comm_rank: { parameters: [handle, "buffer"], result: "i32" },
    MPI_Comm_size: { parameters: [handle, "buffer"], result: "i32" },
    MPI_Comm_split_type: { parameters: [handle, "i32", "i32", handle, "buffer"], result: "i32" },
    MPI_Comm_free: { parameters: ["buffer"], result: "i32" },
    // (const void *sendbuf, void *recvbuf, int count, MPI_Datatype, MPI_Op, MPI_Comm)
    MPI_Allreduce: {
      parameters: ["pointer", "buffer", "i32", handle, handle, handle],
      result: "i32",
      nonblocking: true,
    },
    // (const void *sendbuf, void *recvbuf, int recvcount, MPI_Datatype, MPI_Op, MPI_Comm)
    MPI_Reduce_scatter_block: {
      parameters: ["buffer", "buffer", "i32", handle, handle, handle],
      result: "i32",
      nonblocking: true,
    },
    // (const void *sendbuf, int sendcount, MPI_Datatype, void *recvbuf, int recvcount, MPI_Datatype, MPI_Comm)
    MPI_Allgather: {
      parameters: ["buffer", "i32", handle, "buffer", "i32", handle, handle],
      result: "i32",
      nonblocking: true,
    },
    // (void *buffer, int count, MPI_Datatype, int root, MPI_Comm)
    MPI_Bcast: { parameters: ["buffer", "i32", handle, "i32", handle], result: "i32", nonblocking: true },
    MPI_Barrier: { parameters: [handle], result: "i32", nonblocking: true },
  } as const;
}

type MpiSymbols = Deno.DynamicLibrary<ReturnType<typeof mpiSymbols>>["symbols"];

/** The bytes of a view, as a `buffer` argument (FFI reads the view's own range). */
function bytesOf(view: ArrayBufferView): Uint8Array<ArrayBuffer> {
  return new Uint8Array(view.buffer as ArrayBuffer, view.byteOffset, view.byteLength);
}

/** True when two views share bytes (MPI forbids a send buffer aliasing a receive buffer). */
function overlap(a: ArrayBufferView, b: ArrayBufferView): boolean {
  return a.buffer === b.buffer && a.byteLength > 0 && b.byteLength > 0 &&
    a.byteOffset < b.byteOffset + b.byteLength && b.byteOffset < a.byteOffset + a.byteLength;
}

/**
 * MPI started in this process, over `MPI_COMM_WORLD`. {@linkcode Mpi.init} starts it (once per process);
 * the collectives return Promises and run one at a time in call order; a collective called with arrays of
 * the wrong length rejects with a `RangeError` before any MPI call.
 */
export class Mpi {
  static #current: Mpi | undefined;

  /** This process's rank in `MPI_COMM_WORLD`, 0 .. size - 1. */
  readonly rank: number;
  /** The number of processes in `MPI_COMM_WORLD`. */
  readonly size: number;
  /** This process's rank among the processes of its node (`MPI_Comm_split_type(MPI_COMM_TYPE_SHARED)`). */
  readonly localRank: number;
  /** The number of processes on this node. */
  readonly localSize: number;
  /** The thread support MPI granted (`"serialized"` or `"multiple"`). */
  readonly threadLevel: ThreadLevel;
  /** The ABI of the library: `"openmpi"` or `"mpich"` (MPICH, Intel MPI, MVAPICH). */
  readonly implementation: MpiImplementation;
  /** The library loaded, as named (a soname such as `libmpi.so.40`, or `ASVR_MPI_LIB`'s path). */
  readonly library: string;
  /** The library's `MPI_Get_library_version` text, first line (e.g. "Open MPI v4.1.4, ..."). */
  readonly version: string;

  readonly #fn: MpiSymbols;
  readonly #h: MpiHandles;
  readonly #maxCount: number;
  #queue: Promise<void> = Promise.resolve();
  #closing = false;
  #finalized = false;

  private constructor(
    fields: Pick<
      Mpi,
      "rank" | "size" | "localRank" | "localSize" | "threadLevel" | "implementation" | "library" | "version"
    >,
    fn: MpiSymbols,
    handles: MpiHandles,
    maxCount: number,
  ) {
    this.rank = fields.rank;
    this.size = fields.size;
    this.localRank = fields.localRank;
    this.localSize = fields.localSize;
    this.threadLevel = fields.threadLevel;
    this.implementation = fields.implementation;
    this.library = fields.library;
    this.version = fields.version;
    this.#fn = fn;
    this.#h = handles;
    this.#maxCount = maxCount;
  }

  /**
   * Loads the MPI library, starts MPI (`MPI_Init_thread`, asking `MPI_THREAD_SERIALIZED`) and reads the
   * ranks. Called again, returns the same instance. Throws `MpiNotFoundError` without a library, an
   * {@linkcode MpiError} when MPI grants less than `MPI_THREAD_SERIALIZED`, when it was finalized already
   * (MPI starts once per process), or when the launcher started more processes than this library sees (a
   * library of another implementation than the launcher's: set `ASVR_MPI_LIB` to the launcher's own).
   */
  static init(options: MpiOptions = {}): Mpi {
    if (Mpi.#current) {
      if (Mpi.#current.#closing) {
        throw new MpiError("MPI was finalized in this process and cannot start again: call Mpi.init() once");
      }
      return Mpi.#current;
    }
    const maxCount = options.maxCount ?? MPI_MAX_COUNT;
    chunks(0, maxCount); // validates maxCount
    const loaded = openMpiLibrary(options.library ? [options.library] : mpiLibraryCandidates());
    const h = mpiHandles(loaded);
    let fn: MpiSymbols;
    try {
      fn = Deno.dlopen(loaded.name, mpiSymbols(h.handleType)).symbols;
    } catch (e) {
      throw new MpiError(
        `${loaded.name} loaded but lacks MPI-3 functions (${
          (e as Error).message
        }); set ${MPI_LIBRARY_VARIABLE} ` +
          `to the libmpi.so of Open MPI or MPICH`,
      );
    }
    const check = (code: number, call: string) => {
      if (code !== 0) throw new MpiError(`${call} failed with MPI error ${code}`, code);
    };
    const text = new Uint8Array(8192); // MPI_MAX_LIBRARY_VERSION_STRING: 8192 in MPICH, 256 in Open MPI
    const length = new Int32Array(1);
    check(fn.MPI_Get_library_version(text, length), "MPI_Get_library_version");
    const version = new TextDecoder().decode(text.subarray(0, Math.max(0, length[0]))).replace(/\0.*$/s, "")
      .trim().split("\n")[0].replace(/\s+/g, " ");

    const provided = new Int32Array(1);
    check(fn.MPI_Init_thread(null, null, REQUIRED_LEVEL, provided), "MPI_Init_thread");
    const threadLevel = THREAD_LEVELS[provided[0]] ?? "single";
    if (provided[0] < REQUIRED_LEVEL) {
      fn.MPI_Finalize();
      throw new MpiError(
        `${version} (${loaded.name}) granted MPI_THREAD_${threadLevel.toUpperCase()}, and the collectives need ` +
          `MPI_THREAD_SERIALIZED (they run on worker threads): use an MPI built with thread support (Debian's ` +
          `openmpi-bin and mpich are) through ${MPI_LIBRARY_VARIABLE}`,
      );
    }
    const out = new Int32Array(1);
    const read = (call: "MPI_Comm_rank" | "MPI_Comm_size", comm: MpiHandle) => {
      check(fn[call](comm, out), call);
      return out[0];
    };
    const rank = read("MPI_Comm_rank", h.commWorld);
    const size = read("MPI_Comm_size", h.commWorld);
    const node = new Uint8Array(h.handleBytes);
    check(
      fn.MPI_Comm_split_type(h.commWorld, h.commTypeShared, 0, h.infoNull, node),
      "MPI_Comm_split_type(MPI_COMM_TYPE_SHARED)",
    );
    const nodeComm = h.handleType === "pointer"
      ? Deno.UnsafePointer.create(new BigUint64Array(node.buffer)[0])
      : new Int32Array(node.buffer)[0];
    const localRank = read("MPI_Comm_rank", nodeComm);
    const localSize = read("MPI_Comm_size", nodeComm);
    check(fn.MPI_Comm_free(node), "MPI_Comm_free");

    const launched = launcherWorldSize();
    if (launched !== undefined && launched !== size) {
      fn.MPI_Finalize();
      throw new MpiError(
        `the launcher started ${launched} processes but ${loaded.name} (${version}) sees ${size}: it is not ` +
          `the launcher's MPI. Set ${MPI_LIBRARY_VARIABLE} to the library of the implementation whose mpirun ` +
          `you ran (e.g. /usr/lib/x86_64-linux-gnu/libmpi.so.40 for Open MPI, libmpich.so.12 for Debian's MPICH)`,
      );
    }
    Mpi.#current = new Mpi(
      {
        rank,
        size,
        localRank,
        localSize,
        threadLevel,
        implementation: h.implementation,
        library: loaded.name,
        version,
      },
      fn,
      h,
      maxCount,
    );
    return Mpi.#current;
  }

  /**
   * Sums `data` over all ranks, in place (`MPI_Allreduce(MPI_IN_PLACE, MPI_FLOAT, MPI_SUM)`): afterwards
   * every rank holds the same sums. Every rank passes an array of the same length. Resolves to `data`.
   */
  allReduce(data: Float32Array): Promise<Float32Array> {
    return this.#serial(async () => {
      for (const [start, count] of chunks(data.length, this.#maxCount)) {
        const piece = bytesOf(data.subarray(start, start + count));
        const h = this.#h;
        await this.#check(
          this.#fn.MPI_Allreduce(h.inPlace, piece, count, h.float, h.sum, h.commWorld),
          "MPI_Allreduce",
        );
      }
      return data;
    });
  }

  /**
   * Sums `input` over all ranks and leaves to each rank its block (`MPI_Reduce_scatter_block`, MPI_FLOAT,
   * MPI_SUM): `input` holds `size` blocks of `n = input.length / size` floats, and rank r receives, in
   * `output` (n floats, allocated when not given, not overlapping `input`), the sum over ranks of their
   * block r. Resolves to `output`.
   */
  async reduceScatter(input: Float32Array, output?: Float32Array): Promise<Float32Array> {
    if (input.length % this.size !== 0) {
      throw new RangeError(
        `reduceScatter: the input's ${input.length} floats do not split into ${this.size} equal blocks`,
      );
    }
    const n = input.length / this.size;
    const out = output ?? new Float32Array(n);
    if (out.length !== n) {
      throw new RangeError(`reduceScatter: the output holds ${out.length} floats, and a block is ${n}`);
    }
    if (overlap(input, out)) throw new RangeError("reduceScatter: the output overlaps the input");
    const h = this.#h;
    const call = (send: Float32Array, recv: Float32Array, count: number) =>
      this.#check(
        this.#fn.MPI_Reduce_scatter_block(bytesOf(send), bytesOf(recv), count, h.float, h.sum, h.commWorld),
        "MPI_Reduce_scatter_block",
      );
    return await this.#serial(async () => {
      if (n <= this.#maxCount) {
        await call(input, out, n);
        return out;
      }
      // Blocks longer than one call: each call reduces the same piece of every block, gathered contiguously.
      const step = this.#stagedCount(4);
      const send = new Float32Array(step * this.size);
      for (const [start, count] of chunks(n, step)) {
        for (let r = 0; r < this.size; r++) {
          send.set(input.subarray(r * n + start, r * n + start + count), r * count);
        }
        await call(send.subarray(0, count * this.size), out.subarray(start, start + count), count);
      }
      return out;
    });
  }

  /**
   * Gathers every rank's bytes into every rank (`MPI_Allgather`, MPI_BYTE): `output` (allocated when not
   * given) receives rank r's `input` at byte `r * input.byteLength`. Bytes, so any element type works (f16
   * weights as a `Uint16Array`). Every rank passes the same length; `output` holds `size` times it and does
   * not overlap `input`. Resolves to the bytes of `output`.
   */
  async allGather(input: ArrayBufferView, output?: ArrayBufferView): Promise<Uint8Array> {
    const src = bytesOf(input);
    const n = src.length;
    const dst = output ? bytesOf(output) : new Uint8Array(n * this.size);
    if (dst.length !== n * this.size) {
      throw new RangeError(`allGather: the output holds ${dst.length} bytes, and ${this.size} x ${n} arrive`);
    }
    if (overlap(src, dst)) throw new RangeError("allGather: the output overlaps the input");
    const h = this.#h;
    const call = (send: Uint8Array<ArrayBuffer>, recv: Uint8Array<ArrayBuffer>, count: number) =>
      this.#check(
        this.#fn.MPI_Allgather(send, count, h.byte, recv, count, h.byte, h.commWorld),
        "MPI_Allgather",
      );
    return await this.#serial(async () => {
      if (n <= this.#maxCount) {
        await call(src, dst, n);
        return dst;
      }
      // Inputs longer than one call: each call gathers the same piece of every rank's input, then spreads it.
      const step = this.#stagedCount(1);
      const recv = new Uint8Array(step * this.size);
      for (const [start, count] of chunks(n, step)) {
        await call(src.subarray(start, start + count), recv.subarray(0, count * this.size), count);
        for (let r = 0; r < this.size; r++) {
          dst.set(recv.subarray(r * count, (r + 1) * count), r * n + start);
        }
      }
      return dst;
    });
  }

  /**
   * Copies `data`'s bytes from rank `root` into every other rank's `data`, in place (`MPI_Bcast`,
   * MPI_BYTE). Every rank passes the same length. Resolves to `data`.
   */
  async broadcast<T extends ArrayBufferView>(data: T, root = 0): Promise<T> {
    if (!Number.isInteger(root) || root < 0 || root >= this.size) {
      throw new RangeError(`broadcast: root ${root} is not a rank (0 .. ${this.size - 1})`);
    }
    const bytes = bytesOf(data);
    return await this.#serial(async () => {
      for (const [start, count] of chunks(bytes.length, this.#maxCount)) {
        await this.#check(
          this.#fn.MPI_Bcast(
            bytes.subarray(start, start + count),
            count,
            this.#h.byte,
            root,
            this.#h.commWorld,
          ),
          "MPI_Bcast",
        );
      }
      return data;
    });
  }

  /** Resolves when every rank has called `barrier()` (`MPI_Barrier`). */
  barrier(): Promise<void> {
    return this.#serial(async () => {
      await this.#check(this.#fn.MPI_Barrier(this.#h.commWorld), "MPI_Barrier");
    });
  }

  /**
   * Ends every process of the job with exit code `code` (`MPI_Abort`): for an error one rank sees alone,
   * which would leave the others waiting in a collective. Does not return.
   */
  abort(code = 1): never {
    if (!this.#finalized) this.#fn.MPI_Abort(this.#h.commWorld, code);
    Deno.exit(code);
  }

  /**
   * Waits for the collectives already called, then ends MPI (`MPI_Finalize`, on the main thread that
   * started it). Every rank calls it before a normal exit; no collective may follow.
   */
  async finalize(): Promise<void> {
    if (this.#closing) return;
    this.#closing = true;
    await this.#queue;
    this.#finalized = true;
    const code = this.#fn.MPI_Finalize();
    if (code !== 0) throw new MpiError(`MPI_Finalize failed: ${this.#errorText(code)}`, code);
  }

  /** Runs `job` after the collectives called before it, so at most one MPI call is in flight. */
  #serial<T>(job: () => Promise<T>): Promise<T> {
    if (this.#closing) {
      return Promise.reject(
        new MpiError("MPI is finalized (or finalizing): no collective may follow finalize()"),
      );
    }
    const run = this.#queue.then(job);
    this.#queue = run.then(() => {}, () => {});
    return run;
  }

  async #check(result: Promise<number>, call: string): Promise<void> {
    const code = await result;
    if (code !== 0) throw new MpiError(`${call} failed: ${this.#errorText(code)}`, code);
  }

  /** The elements of one piece when pieces are gathered into a staging buffer of `size` pieces. */
  #stagedCount(elementBytes: number): number {
    return Math.max(1, Math.min(this.#maxCount, Math.floor(STAGING_BYTES / (this.size * elementBytes))));
  }

  #errorText(code: number): string {
    const text = new Uint8Array(1024); // MPI_MAX_ERROR_STRING: 512 in MPICH, 256 in Open MPI
    const length = new Int32Array(1);
    if (this.#fn.MPI_Error_string(code, text, length) !== 0) return `MPI error ${code}`;
    return `MPI error ${code}: ${new TextDecoder().decode(text.subarray(0, Math.max(0, length[0])))}`;
  }
}
