/**
 * GPU time per kernel label from timestamp queries: each dispatch's compute pass writes a timestamp
 * at its start and end; at every submit the engine resolves them and reads them back without waiting.
 * Needs the adapter's `timestamp-query` feature. Start with {@linkcode Engine.startProfiling}, read
 * with {@linkcode Engine.stopProfiling}.
 *
 * ```ts ignore
 * e.startProfiling();
 * await trainStep();
 * console.log(formatKernelTimes(await e.stopProfiling()));
 * ```
 * @module
 */

/** One kernel label's GPU time over the profiled dispatches. */
export interface KernelTime {
  /** The dispatch label (e.g. "matmul_texture", "attention_fwd"). */
  label: string;
  /** Dispatches. */
  calls: number;
  /** Total GPU milliseconds. */
  ms: number;
}

/**
 * Timestamp pairs one submit can hold: WebGPU caps a query set at 4096 queries. The engine submits every
 * 2000 dispatches; passes past the capacity in one submit go unmeasured and are counted.
 */
const CAPACITY = 2048;

/** Records pass timestamps per label; used by the engine. */
export class KernelProfiler {
  #device: GPUDevice;
  #queries: GPUQuerySet;
  #labels: string[] = [];
  #times = new Map<string, KernelTime>();
  #pending: Promise<void>[] = [];
  /** Dispatches not measured because a submit held more than the query set's capacity. */
  unmeasured = 0;

  /** Throws when the device lacks `timestamp-query`. */
  constructor(device: GPUDevice) {
    if (!device.features.has("timestamp-query")) {
      throw new Error(
        "profiling needs the adapter's timestamp-query feature, which this adapter does not offer",
      );
    }
    this.#device = device;
    this.#queries = device.createQuerySet({ type: "timestamp", count: 2 * CAPACITY });
  }

  /** The compute pass descriptor of one dispatch: with timestamp writes while capacity is left. */
  pass(label: string): GPUComputePassDescriptor {
    const i = this.#labels.length;
    if (i >= CAPACITY) {
      this.unmeasured++;
      return { label };
    }
    this.#labels.push(label);
    return {
      label,
      timestampWrites: {
        querySet: this.#queries,
        beginningOfPassWriteIndex: 2 * i,
        endOfPassWriteIndex: 2 * i + 1,
      },
    };
  }

  /** Before `encoder.finish()`: resolves this submit's timestamps and queues their readback. */
  resolve(encoder: GPUCommandEncoder): void {
    const n = this.#labels.length;
    if (n === 0) return;
    const bytes = 16 * n;
    const resolved = this.#device.createBuffer({
      size: bytes,
      usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
    });
    const staging = this.#device.createBuffer({
      size: bytes,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    encoder.resolveQuerySet(this.#queries, 0, 2 * n, resolved, 0);
    encoder.copyBufferToBuffer(resolved, 0, staging, 0, bytes);
    const labels = this.#labels;
    this.#labels = [];
    // Mapping waits for the submit that follows this call.
    queueMicrotask(() => {
      this.#pending.push(
        staging.mapAsync(GPUMapMode.READ).then(() => {
          const t = new BigUint64Array(staging.getMappedRange());
          labels.forEach((label, i) => {
            const k = this.#times.get(label) ?? { label, calls: 0, ms: 0 };
            k.calls++;
            k.ms += Number(t[2 * i + 1] - t[2 * i]) / 1e6;
            this.#times.set(label, k);
          });
          staging.unmap();
          staging.destroy();
          resolved.destroy();
        }),
      );
    });
  }

  /** Waits for every readback; the totals per label, largest first. */
  async finish(): Promise<KernelTime[]> {
    await new Promise((r) => setTimeout(r, 0));
    await Promise.all(this.#pending);
    this.#queries.destroy();
    return [...this.#times.values()].sort((a, b) => b.ms - a.ms);
  }
}

/** A table of kernel times: label, calls, total ms, mean microseconds per call, share of the total. */
export function formatKernelTimes(times: readonly KernelTime[], top = 30): string {
  const total = times.reduce((s, t) => s + t.ms, 0);
  const lines = [
    `${"kernel".padEnd(28)} ${"calls".padStart(7)} ${"total ms".padStart(10)} ${
      "us/call".padStart(9)
    }  share`,
  ];
  for (const t of times.slice(0, top)) {
    lines.push(
      `${t.label.padEnd(28)} ${String(t.calls).padStart(7)} ${t.ms.toFixed(1).padStart(10)} ${
        (1000 * t.ms / t.calls).toFixed(0).padStart(9)
      }  ${(100 * t.ms / Math.max(total, 1e-9)).toFixed(1).padStart(5)}%`,
    );
  }
  lines.push(
    `${"all".padEnd(28)} ${String(times.reduce((s, t) => s + t.calls, 0)).padStart(7)} ${
      total.toFixed(1).padStart(10)
    }`,
  );
  return lines.join("\n");
}
