/**
 * The engine: one GPU device, its buffer pool and pipeline cache, the command encoder that ops
 * record into, the tidy scopes that free a step's intermediates, and the autograd tape.
 *
 * Nothing waits on the GPU until a value is read: ops encode compute passes into one command
 * encoder, which is submitted when a tensor is read (or every {@linkcode Engine.maxPendingDispatches}).
 * @module
 */

import { bytesPerElement, type DType, f16BitsToF32, f32ToF16Bits, type HostArray } from "./dtype.ts";
import { type DeviceInfo, openDevice, type OpenDeviceOptions } from "./device.ts";
import { BufferPool } from "./pool.ts";
import { KernelProfiler, type KernelTime } from "./profiler.ts";
import { Tensor } from "./tensor.ts";
import { rowsPerPiece, SplitTensor } from "./split_tensor.ts";

/** One recorded op of the autograd tape. */
export interface TapeNode {
  /** The op's inputs, in the order its backward returns their gradients. */
  inputs: Tensor[];
  /** Which inputs need a gradient. */
  needs: boolean[];
  /** The op's output. */
  output: Tensor;
  /** Given the gradient of the output, the gradients of the inputs (null where not needed). */
  backward: (grad: Tensor) => (Tensor | null)[];
}

/** A compute dispatch: a WGSL program, its storage bindings, its parameters and its grid. */
export interface KernelCall {
  /** A name for error messages and profiles. */
  label: string;
  /**
   * WGSL source with entry point `main`. Pipelines are cached by this text, or by `key` when given;
   * with a key, `code` may be a function, called only when the key's pipeline is not yet compiled.
   */
  code: string | (() => string);
  /**
   * A short name that fixes the WGSL text (e.g. a kernel's name and the parameters its generator
   * depends on): pipelines are then cached by it, so a cached call neither builds nor hashes the text.
   * Two calls with the same key must have the same code.
   */
  key?: string;
  /**
   * Resources bound at @binding(0..n-1) of @group(0), in order: tensors bind as storage buffers;
   * other resources (e.g. a texture view) bind as they are.
   */
  bindings: (Tensor | GPUBindingResource)[];
  /**
   * u32 words of a uniform block bound at @binding(n) (n = bindings.length); pass floats through
   * `f32Bits`. Omit when the kernel has no parameters.
   */
  params?: number[];
  /** Workgroup counts [x, y, z]. */
  workgroups: readonly [number, number?, number?];
}

/** Options of {@linkcode Engine.create}. */
export interface EngineOptions extends OpenDeviceOptions {}

/** Initial values or shape-only description of a new tensor. */
export type TensorData = ArrayLike<number> | HostArray;

/** Options of {@linkcode Engine.empty} and the factories built on it. */
export interface EmptyOptions {
  /**
   * Split by rows over several buffers (a {@linkcode SplitTensor}) when the tensor, counted at 4 bytes
   * per element, is larger than one binding (`maxStorageBufferBindingSize`) or buffer (`maxBufferSize`);
   * otherwise an ordinary tensor.
   * For parameters and their optimizer state: only some ops take split tensors.
   */
  split?: boolean;
}

/** The GPU engine. Create one with {@linkcode Engine.create}. */
export class Engine {
  /** The WebGPU device. */
  readonly device: GPUDevice;
  /** What was asked of the adapter and granted. */
  readonly info: DeviceInfo;
  /** The buffer pool. */
  readonly pool: BufferPool;
  /** True when f16 tensors can be used (the device has `shader-f16`). */
  readonly hasF16: boolean;
  /**
   * True when kernels use subgroup operations: the device has `subgroups` and
   * {@linkcode Engine.setSubgroups} has not turned them off.
   */
  get hasSubgroups(): boolean {
    return this.#subgroups;
  }
  /**
   * Submit automatically after this many dispatches, so one encoder never grows without bound and the
   * GPU starts on a long step while the host is still recording it.
   */
  maxPendingDispatches = 128;

  #subgroups: boolean;
  #pipelines = new Map<string, GPUComputePipeline>();
  #encoder: GPUCommandEncoder | null = null;
  /** The open compute pass of the current encoder, if any. */
  #pass: GPUComputePassEncoder | null = null;
  #pending = 0;
  #transient: GPUBuffer[] = [];
  /** Uniform params of the current encoder's dispatches: one buffer, filled at submit from `#paramWords`. */
  #paramBuffer: GPUBuffer | null = null;
  /** Host copy of the params block; each dispatch's words start at a multiple of `#paramAlign` bytes. */
  #paramWords = new Uint32Array(0);
  /** Bytes of `#paramWords` in use by the current encoder. */
  #paramBytes = 0;
  #scopes: Set<Tensor>[] = [];
  #errors: string[] = [];
  #submits = 0;
  #dispatches = 0;
  #waits = 0;
  #profiler: KernelProfiler | null = null;

  /** The current autograd tape (ops append while gradients are enabled). */
  tape: TapeNode[] = [];
  /** Whether ops record onto the tape. */
  gradEnabled = true;
  /** Set when an op saw an input needing a gradient while recording was off (used by checkpoint). */
  sawGradInput = false;

  private constructor(device: GPUDevice, info: DeviceInfo) {
    this.device = device;
    this.info = info;
    this.pool = new BufferPool(device);
    this.hasF16 = info.requestedFeatures.includes("shader-f16");
    this.#subgroups = info.requestedFeatures.includes("subgroups");
    device.addEventListener("uncapturederror", (ev) => {
      const msg = (ev as GPUUncapturedErrorEvent).error.message;
      this.#errors.push(msg);
    });
  }

  /**
   * Turns the kernels' subgroup operations off (false), or back on (true) where the device grants them;
   * returns the previous setting. Kernels recorded afterwards use the variants that reduce through
   * workgroup memory only; tests run both variants on one device this way.
   */
  setSubgroups(on: boolean): boolean {
    const was = this.#subgroups;
    this.#subgroups = on && this.info.requestedFeatures.includes("subgroups");
    return was;
  }

  /** Opens the GPU adapter and creates an engine; throws `NoAdapterError` with the fix when none. */
  static async create(options: EngineOptions = {}): Promise<Engine> {
    const { device, info } = await openDevice(options);
    return new Engine(device, info);
  }

  /**
   * Counters since creation: queue submits, dispatches, waits for the GPU (each read back or sync: the
   * host idles until the GPU catches up), pipelines compiled.
   */
  get stats(): { submits: number; dispatches: number; waits: number; pipelines: number } {
    return {
      submits: this.#submits,
      dispatches: this.#dispatches,
      waits: this.#waits,
      pipelines: this.#pipelines.size,
    };
  }

  /** The device limit `name` (as granted, after overrides). */
  limit(name: string): number {
    return this.info.limits[name];
  }

  // ---------------------------------------------------------------- tensors

  /** A new tensor holding `data` (converted to `dtype`). */
  tensor(data: TensorData, shape: readonly number[], dtype: DType = "f32", opts: EmptyOptions = {}): Tensor {
    const t = this.empty(shape, dtype, opts);
    if (data.length !== t.size) {
      throw new Error(`tensor: ${data.length} values given for shape [${shape}] (${t.size} elements)`);
    }
    this.write(t, data);
    return t;
  }

  /** A new tensor whose contents are undefined (for kernel outputs). */
  empty(shape: readonly number[], dtype: DType = "f32", opts: EmptyOptions = {}): Tensor {
    this.#checkDtype(dtype);
    const size = shape.reduce((a, b) => a * b, 1);
    const bytes = Math.max(4, Math.ceil((size * bytesPerElement(dtype)) / 4) * 4);
    // Decided at f32 size, so f32 state of a parameter (AdamW's moments) splits the same way and fits.
    if (opts.split && size * 4 > this.maxPieceBytes && shape.length > 0) {
      const rows = rowsPerPiece(shape, this.maxPieceBytes);
      if (rows < 1) {
        throw new Error(
          `tensor ${dtype}[${shape}]: one row of it is over this adapter's binding limit ` +
            `(${this.maxPieceBytes} bytes), so it cannot be split by rows`,
        );
      }
      const starts: number[] = [];
      for (let r = 0; r < shape[0]; r += rows) starts.push(r);
      return this.splitTensor(shape, dtype, starts);
    }
    if (bytes > this.info.limits.maxBufferSize) {
      throw new Error(
        `tensor ${dtype}[${shape}] needs ${bytes} bytes, over this adapter's maxBufferSize ` +
          `(${this.info.limits.maxBufferSize}); split it into smaller tensors`,
      );
    }
    const t = new Tensor(this, shape, dtype, this.pool.acquire(bytes));
    this.#track(t);
    return t;
  }

  /**
   * The largest piece of a split tensor, in bytes: the smaller of the binding and buffer limits.
   * Pieces are sized for f32 whatever their dtype, so f32 state split the same way fits too.
   */
  get maxPieceBytes(): number {
    return Math.min(this.info.limits.maxStorageBufferBindingSize, this.info.limits.maxBufferSize);
  }

  /**
   * A new {@linkcode SplitTensor} of undefined contents whose pieces start at rows `starts`
   * (starts[0] = 0, increasing). Most callers want `empty(shape, dtype, { split: true })`.
   */
  splitTensor(shape: readonly number[], dtype: DType, starts: readonly number[]): SplitTensor {
    const bounds = [...starts, shape[0]];
    const pieces = starts.map((r, i) => {
      const piece = this.empty([bounds[i + 1] - r, ...shape.slice(1)], dtype);
      this.untrack(piece); // the split tensor owns its pieces
      return piece;
    });
    const t = new SplitTensor(this, shape, dtype, pieces);
    this.#track(t);
    return t;
  }

  /** An empty tensor of `t`'s shape and `dtype`, split over the same rows when `t` is split. */
  emptyLike(t: Tensor, dtype: DType = t.dtype): Tensor {
    return t instanceof SplitTensor
      ? this.splitTensor(t.shape, dtype, t.rowStarts.slice(0, -1))
      : this.empty(t.shape, dtype);
  }

  /** A new tensor of zeros. */
  zeros(shape: readonly number[], dtype: DType = "f32", opts: EmptyOptions = {}): Tensor {
    const t = this.empty(shape, dtype, opts);
    for (const p of t.pieces) this.encoder.clearBuffer(p.buffer, 0, p.bindSize);
    return t;
  }

  /** A new tensor with every element `value`. */
  full(shape: readonly number[], value: number, dtype: DType = "f32", opts: EmptyOptions = {}): Tensor {
    const size = shape.reduce((a, b) => a * b, 1);
    return this.tensor(new Float32Array(size).fill(value), shape, dtype, opts);
  }

  /**
   * A trainable parameter: long-lived (never freed by a tidy scope), with `requiresGrad` set, split
   * over several buffers when larger than one binding. Its gradient accumulates into `param.grad`
   * (a split parameter's into its pieces') on {@linkcode backward}.
   */
  param(data: TensorData, shape: readonly number[], options: { dtype?: DType; name?: string } = {}): Tensor {
    const t = this.tensor(data, shape, options.dtype ?? "f32", { split: true });
    this.untrack(t);
    t.isParam = true;
    t.requiresGrad = true;
    t.name = options.name;
    return t;
  }

  /** Writes host values into a tensor (ordered after all work recorded so far). */
  write(t: Tensor, data: TensorData): void {
    if (t instanceof SplitTensor) {
      if (data.length !== t.size) {
        throw new Error(`write: ${data.length} values for ${t} (${t.size} elements)`);
      }
      const row = t.size / Math.max(1, t.shape[0]);
      t.pieces.forEach((p, i) =>
        this.write(p, slicePart(data, t.rowStarts[i] * row, t.rowStarts[i + 1] * row))
      );
      return;
    }
    const bytes = t.bindSize;
    const staging = this.device.createBuffer({
      size: bytes,
      usage: GPUBufferUsage.COPY_SRC,
      mappedAtCreation: true,
    });
    const range = staging.getMappedRange();
    switch (t.dtype) {
      case "f32":
        new Float32Array(range).set(data);
        break;
      case "i32":
        new Int32Array(range).set(data);
        break;
      case "u32":
        new Uint32Array(range).set(data);
        break;
      case "f16": {
        const h = new Uint16Array(range);
        for (let i = 0; i < data.length; i++) h[i] = f32ToF16Bits(data[i]);
        break;
      }
    }
    staging.unmap();
    this.encoder.copyBufferToBuffer(staging, 0, t.buffer, 0, bytes);
    this.#transient.push(staging);
  }

  /** Reads a tensor back to the host (f16 widens to f32). Submits pending work and waits for it. */
  async read(t: Tensor): Promise<HostArray> {
    if (t instanceof SplitTensor) {
      const parts = [];
      for (const p of t.pieces) parts.push(await this.read(p));
      const out = t.dtype === "i32"
        ? new Int32Array(t.size)
        : t.dtype === "u32"
        ? new Uint32Array(t.size)
        : new Float32Array(t.size);
      let at = 0;
      for (const part of parts) {
        out.set(part, at);
        at += part.length;
      }
      return out;
    }
    return (await this.readMany([t]))[0];
  }

  /**
   * Reads several tensors back with one wait (f16 widens to f32): one staging buffer, one submit, one
   * map. For the small values a step reads together (loss terms, the gradient norm). Split tensors are
   * not taken: read those with {@linkcode read}.
   */
  async readMany(ts: readonly Tensor[]): Promise<HostArray[]> {
    if (ts.length === 0) return [];
    const offsets: number[] = [];
    let bytes = 0;
    for (const t of ts) {
      if (t instanceof SplitTensor) throw new Error(`readMany: ${t} is split; read it with read()`);
      offsets.push(bytes);
      bytes += t.bindSize; // a multiple of 4, as copies need
    }
    const staging = this.device.createBuffer({
      size: bytes,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    ts.forEach((t, i) => this.encoder.copyBufferToBuffer(t.buffer, 0, staging, offsets[i], t.bindSize));
    this.flush();
    this.#waits++;
    await staging.mapAsync(GPUMapMode.READ);
    this.#throwErrors();
    const range = staging.getMappedRange();
    const out = ts.map((t, i) => decodeHost(range, offsets[i], t));
    staging.unmap();
    staging.destroy();
    return out;
  }

  /** Copies `src` into `dst` (same byte size; split tensors must be split over the same rows). */
  copy(src: Tensor, dst: Tensor): void {
    const from = src.pieces, to = dst.pieces;
    if (src.bindSize !== dst.bindSize || from.length !== to.length) {
      throw new Error(`copy: ${src} into ${dst}: sizes differ`);
    }
    from.forEach((s, i) => {
      if (s.bindSize !== to[i].bindSize) throw new Error(`copy: ${src} into ${dst}: split over other rows`);
      this.encoder.copyBufferToBuffer(s.buffer, 0, to[i].buffer, 0, s.bindSize);
    });
  }

  // ---------------------------------------------------------------- execution

  /**
   * The command encoder that ops record into (created on demand). Taking it ends the compute pass that
   * consecutive dispatches share, so copies and clears recorded on it land between dispatches in order.
   */
  get encoder(): GPUCommandEncoder {
    this.#endPass();
    return this.#encoder ??= this.device.createCommandEncoder();
  }

  #endPass(): void {
    this.#pass?.end();
    this.#pass = null;
  }

  /** Records one compute dispatch. */
  run(call: KernelCall): void {
    const cacheKey = call.key !== undefined
      ? "\0" + call.key // never WGSL text
      : typeof call.code === "string"
      ? call.code
      : call.code();
    let pipeline = this.#pipelines.get(cacheKey);
    if (!pipeline) {
      const code = typeof call.code === "string" ? call.code : call.code();
      const module = this.device.createShaderModule({ label: call.label, code });
      pipeline = this.device.createComputePipeline({
        label: call.label,
        layout: "auto",
        compute: { module, entryPoint: "main" },
      });
      this.#pipelines.set(cacheKey, pipeline);
    }
    const maxBinding = this.info.limits.maxStorageBufferBindingSize;
    for (const t of call.bindings) {
      if (t instanceof SplitTensor) {
        throw new Error(
          `${call.label}: ${t} is split over ${t.pieces.length} buffers, and this kernel binds one tensor ` +
            `whole; run it once per piece (t.pieces)`,
        );
      }
      if (t instanceof Tensor && t.bindSize > maxBinding) {
        throw new Error(
          `${call.label}: ${t} is ${t.bindSize} bytes, over this adapter's maxStorageBufferBindingSize ` +
            `(${maxBinding}); kernels cannot bind it whole`,
        );
      }
    }
    // Placed before the bindings are built: a full params block submits the encoder first.
    const params = call.params ? this.#placeParams(call.params) : null;
    const entries: GPUBindGroupEntry[] = call.bindings.map((t, i) => ({
      binding: i,
      resource: t instanceof Tensor ? { buffer: t.buffer, offset: 0, size: t.bindSize } : t,
    }));
    if (params) entries.push({ binding: call.bindings.length, resource: params });
    const bindGroup = this.device.createBindGroup({
      label: call.label,
      layout: pipeline.getBindGroupLayout(0),
      entries,
    });
    // Consecutive dispatches share one compute pass (each dispatch still sees the writes of the ones
    // before it); a profiled dispatch gets its own pass, whose timestamps measure it alone.
    const pass = this.#profiler
      ? this.encoder.beginComputePass(this.#profiler.pass(call.label))
      : this.#pass ??= this.encoder.beginComputePass({ label: "kernels" });
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bindGroup);
    pass.dispatchWorkgroups(call.workgroups[0], call.workgroups[1] ?? 1, call.workgroups[2] ?? 1);
    if (this.#profiler) pass.end();
    this.#dispatches++;
    if (++this.#pending >= this.maxPendingDispatches) this.flush();
  }

  /** Offset alignment of params within the uniform block (the device's minUniformBufferOffsetAlignment). */
  get #paramAlign(): number {
    return this.info.limits.minUniformBufferOffsetAlignment ?? 256;
  }

  /**
   * Copies `params` into the current encoder's params block and returns their binding. The block's GPU
   * buffer holds `maxPendingDispatches` aligned slots (more when one dispatch's params need more); when
   * it is full, the encoder is submitted and the next one gets a new block.
   */
  #placeParams(params: readonly number[]): GPUBufferBinding {
    const align = this.#paramAlign;
    const size = Math.max(16, Math.ceil(params.length / 4) * 16);
    const slot = Math.ceil(size / align) * align;
    if (this.#paramBuffer && this.#paramBytes + slot > this.#paramBuffer.size) this.flush();
    if (!this.#paramBuffer) {
      const bytes = Math.max(slot, Math.max(1, this.maxPendingDispatches) * align);
      this.#paramBuffer = this.device.createBuffer({
        label: "params",
        size: bytes,
        usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
      });
      this.#paramBytes = 0;
    }
    const offset = this.#paramBytes;
    const end = offset + slot;
    if (end > this.#paramWords.byteLength) {
      const grown = new Uint32Array(
        Math.max(end, this.#paramBuffer.size, 2 * this.#paramWords.byteLength) / 4,
      );
      grown.set(this.#paramWords.subarray(0, offset / 4));
      this.#paramWords = grown;
    }
    this.#paramWords.set(params, offset / 4);
    // Words up to `size` past the params read as 0, as in a new buffer.
    this.#paramWords.fill(0, offset / 4 + params.length, (offset + size) / 4);
    this.#paramBytes = end;
    return { buffer: this.#paramBuffer, offset, size };
  }

  /** Submits everything recorded so far (does not wait). */
  flush(): void {
    if (!this.#encoder) return;
    this.#endPass();
    this.#profiler?.resolve(this.#encoder);
    const paramBuffer = this.#paramBuffer;
    if (paramBuffer) {
      this.device.queue.writeBuffer(paramBuffer, 0, this.#paramWords, 0, this.#paramBytes / 4);
      this.#transient.push(paramBuffer);
      this.#paramBuffer = null;
      this.#paramBytes = 0;
    }
    this.device.queue.submit([this.#encoder.finish()]);
    this.#submits++;
    this.#encoder = null;
    this.#pending = 0;
    for (const b of this.#transient) b.destroy();
    this.#transient = [];
  }

  /**
   * Starts measuring the GPU time of every dispatch by label (timestamp queries; throws when the adapter
   * lacks `timestamp-query`). Work recorded before the call is not measured.
   */
  startProfiling(): void {
    this.flush();
    this.#profiler = new KernelProfiler(this.device);
  }

  /** Stops profiling; waits for the measured work and returns GPU time per label, largest first. */
  async stopProfiling(): Promise<KernelTime[]> {
    const p = this.#profiler;
    if (!p) throw new Error("stopProfiling: profiling was not started (call startProfiling first)");
    this.flush();
    this.#profiler = null;
    await this.device.queue.onSubmittedWorkDone();
    return await p.finish();
  }

  /** Submits pending work and waits until the GPU has finished it. Throws recorded GPU errors. */
  async sync(): Promise<void> {
    this.flush();
    this.#waits++;
    await this.device.queue.onSubmittedWorkDone();
    this.#throwErrors();
  }

  #throwErrors(): void {
    if (this.#errors.length) {
      const msgs = this.#errors.splice(0);
      throw new Error(`WebGPU error: ${msgs.join("\n")}`);
    }
  }

  #checkDtype(dtype: DType): void {
    if (dtype === "f16" && !this.hasF16) {
      throw new Error(
        `f16 tensors need the adapter feature "shader-f16", which ${this.info.description} lacks`,
      );
    }
  }

  // ---------------------------------------------------------------- scopes

  #track(t: Tensor): void {
    this.#scopes.at(-1)?.add(t);
  }

  /** Removes a tensor from the tidy scopes, so it outlives them (e.g. parameters, optimizer state). */
  untrack(t: Tensor): void {
    for (const s of this.#scopes) s.delete(t);
  }

  /**
   * Runs `fn`, then frees every tensor created inside it except those it returns (a tensor, or an
   * array or object of tensors) and those {@linkcode untrack}ed. Returned tensors move to the
   * enclosing scope. An async `fn` frees when its promise settles.
   */
  tidy<T>(fn: () => T): T {
    const scope = new Set<Tensor>();
    this.#scopes.push(scope);
    let result: T;
    try {
      result = fn();
    } catch (e) {
      this.#endScope(scope, undefined);
      throw e;
    }
    if (result instanceof Promise) {
      return result.then(
        (v) => {
          this.#endScope(scope, v);
          return v;
        },
        (e) => {
          this.#endScope(scope, undefined);
          throw e;
        },
      ) as T;
    }
    this.#endScope(scope, result);
    return result;
  }

  #endScope(scope: Set<Tensor>, result: unknown): void {
    const i = this.#scopes.lastIndexOf(scope);
    if (i >= 0) this.#scopes.splice(i, 1);
    const kept = new Set<Tensor>();
    collectTensors(result, kept);
    const parent = this.#scopes.at(-1);
    for (const t of scope) {
      if (kept.has(t)) parent?.add(t);
      else t.dispose();
    }
    if (this.#scopes.length === 0 && this.tape.length) {
      this.tape = this.tape.filter((n) => !n.output.disposed);
    }
  }

  /** Runs `fn` without recording gradients (evaluation, frozen encoders). */
  noGrad<T>(fn: () => T): T {
    const prev = this.gradEnabled;
    this.gradEnabled = false;
    try {
      return fn();
    } finally {
      this.gradEnabled = prev;
    }
  }

  /** Runs `fn` recording onto `tape` with gradients enabled, then restores the previous tape. */
  withTape<T>(tape: TapeNode[], fn: () => T): T {
    const prevTape = this.tape, prevGrad = this.gradEnabled;
    this.tape = tape;
    this.gradEnabled = true;
    try {
      return fn();
    } finally {
      this.tape = prevTape;
      this.gradEnabled = prevGrad;
    }
  }

  /**
   * Waits for the work submitted so far, then frees pooled buffers and destroys the device: the way to
   * end an engine (destroying a device whose work is still running can crash the process at exit).
   */
  async close(): Promise<void> {
    this.flush();
    await this.device.queue.onSubmittedWorkDone();
    this.destroy();
  }

  /**
   * Frees pooled buffers not in use and destroys the device at once, without waiting for submitted work
   * (for unload handlers, which cannot wait; elsewhere use {@linkcode Engine.close}).
   */
  destroy(): void {
    this.flush();
    this.pool.trim();
    this.device.destroy();
  }
}

/** Elements start .. end of host data (a view of typed arrays). */
function slicePart(data: TensorData, start: number, end: number): TensorData {
  return ArrayBuffer.isView(data)
    ? (data as HostArray).subarray(start, end)
    : Array.prototype.slice.call(data, start, end);
}

function collectTensors(v: unknown, out: Set<Tensor>): void {
  if (v instanceof Tensor) {
    out.add(v);
    if (v.base) out.add(v.base);
  } else if (Array.isArray(v)) { for (const x of v) collectTensors(x, out); }
  else if (v && typeof v === "object" && Object.getPrototypeOf(v) === Object.prototype) {
    for (const x of Object.values(v)) collectTensors(x, out);
  }
}

/** A tensor's values at byte `offset` of a mapped read-back range, as host values (f16 widened). */
function decodeHost(range: ArrayBuffer, offset: number, t: Tensor): HostArray {
  const bytes = t.size * 4;
  switch (t.dtype) {
    case "f32":
      return new Float32Array(range.slice(offset, offset + bytes));
    case "i32":
      return new Int32Array(range.slice(offset, offset + bytes));
    case "u32":
      return new Uint32Array(range.slice(offset, offset + bytes));
    case "f16": {
      const h = new Uint16Array(range, offset, t.size);
      const out = new Float32Array(t.size);
      for (let i = 0; i < t.size; i++) out[i] = f16BitsToF32(h[i]);
      return out;
    }
  }
}

/** Workgroup counts covering `n` invocations with `wg` threads per group, spread over x and y. */
export function grid1d(n: number, wg: number): [number, number] {
  const groups = Math.max(1, Math.ceil(n / wg));
  if (groups <= 65535) return [groups, 1];
  const y = Math.ceil(groups / 65535);
  return [Math.ceil(groups / y), y];
}
