/**
 * A pool of GPU storage buffers by size class. Released buffers are kept and handed out again, so
 * a training loop allocates during its first step and then reuses: memory stays flat.
 * @module
 */

const USAGE = 0x0080 /* STORAGE */ | 0x0004 /* COPY_SRC */ | 0x0008; /* COPY_DST */

/** Rounds a byte size up to its size class: 16-byte granularity, then steps of 2^k and 1.5 * 2^k. */
export function sizeClass(bytes: number): number {
  const b = Math.max(16, Math.ceil(bytes / 16) * 16);
  if (b <= 256) return b;
  const p = 2 ** Math.floor(Math.log2(b));
  if (b === p) return p;
  if (b <= p * 1.5) return p * 1.5;
  return p * 2;
}

/** Buffers by size class, with counts of what is handed out and what is held. */
export class BufferPool {
  #device: GPUDevice;
  #free = new Map<number, GPUBuffer[]>();
  #inUse = 0;
  #reserved = 0;
  #peak = 0;

  /** An empty pool allocating from `device`. */
  constructor(device: GPUDevice) {
    this.#device = device;
  }

  /** Bytes of the buffers currently handed out (live tensors). */
  get bytesInUse(): number {
    return this.#inUse;
  }
  /** Bytes of all buffers the pool holds, free or handed out. */
  get bytesReserved(): number {
    return this.#reserved;
  }
  /** The most bytes ever handed out at once. */
  get peakBytesInUse(): number {
    return this.#peak;
  }

  /** A buffer of at least `bytes` bytes (its size is the size class). */
  acquire(bytes: number): GPUBuffer {
    const size = sizeClass(bytes);
    const list = this.#free.get(size);
    let buf = list?.pop();
    if (!buf) {
      buf = this.#device.createBuffer({ size, usage: USAGE });
      this.#reserved += size;
    }
    this.#inUse += size;
    if (this.#inUse > this.#peak) this.#peak = this.#inUse;
    return buf;
  }

  /** Returns a buffer to the pool. GPU work already encoded on it still runs in order. */
  release(buf: GPUBuffer): void {
    this.#inUse -= buf.size;
    let list = this.#free.get(buf.size);
    if (!list) this.#free.set(buf.size, list = []);
    list.push(buf);
  }

  /** Destroys every free buffer (handed-out ones stay). */
  trim(): void {
    for (const list of this.#free.values()) {
      for (const b of list) {
        this.#reserved -= b.size;
        b.destroy();
      }
    }
    this.#free.clear();
  }

  /** Resets the peak counter to the current use. */
  resetPeak(): void {
    this.#peak = this.#inUse;
  }
}
