/**
 * In-process data-parallel ranks for tests: {@linkcode Rendezvous} gives each rank a
 * {@linkcode FakeComm}, whose collectives meet the other ranks' calls as MPI's would.
 * @module
 */

import type { Collectives } from "../data_parallel.ts";

/** One collective call as an endpoint saw it: its name and its payload's length in elements/bytes. */
export interface Call {
  op: string;
  length: number;
}

/** The k-th collective call of every rank meets here. */
interface Slot {
  op: string;
  inputs: ArrayBufferView[];
  arrived: number;
  result?: Uint8Array;
  error?: Error;
  done: Promise<void>;
  resolve: () => void;
}

/**
 * In-process ranks: each endpoint's k-th collective waits for every rank's k-th call, then the last to
 * arrive computes the result for all (so in-place sums never read a half-written array).
 */
export class Rendezvous {
  readonly #slots: Slot[] = [];

  constructor(readonly size: number) {}

  /** The endpoints, rank 0 first. */
  endpoints(): FakeComm[] {
    return Array.from({ length: this.size }, (_, r) => new FakeComm(this, r));
  }

  /** Joins slot `k` with `input`; `finish` runs once, with every rank's input, when the last one arrives. */
  async meet(
    k: number,
    op: string,
    rank: number,
    input: ArrayBufferView,
    finish: (inputs: ArrayBufferView[]) => Uint8Array | void,
  ): Promise<Slot> {
    let slot = this.#slots[k];
    if (!slot) {
      let resolve!: () => void;
      const done = new Promise<void>((r) => resolve = r);
      slot = this.#slots[k] = { op, inputs: [], arrived: 0, done, resolve };
    }
    if (slot.op !== op) {
      slot.error = new Error(`collective ${k}: rank ${rank} called ${op}, another rank ${slot.op}`);
    }
    slot.inputs[rank] = input;
    if (++slot.arrived === this.size) {
      if (!slot.error) {
        try {
          slot.result = finish(slot.inputs) ?? undefined;
        } catch (err) {
          slot.error = err as Error;
        }
      }
      slot.resolve();
    }
    await slot.done;
    if (slot.error) throw slot.error;
    return slot;
  }
}

const bytesOf = (v: ArrayBufferView) => new Uint8Array(v.buffer, v.byteOffset, v.byteLength);

function sameLengths(op: string, inputs: ArrayBufferView[]): void {
  if (inputs.some((v) => v.byteLength !== inputs[0].byteLength)) {
    throw new Error(`${op}: lengths differ over the ranks: ${inputs.map((v) => v.byteLength)}`);
  }
}

/** One rank's end of a {@linkcode Rendezvous}; `calls` records what it was asked. */
export class FakeComm implements Collectives {
  readonly calls: Call[] = [];
  #next = 0;

  constructor(readonly world: Rendezvous, readonly rank: number) {}

  get size(): number {
    return this.world.size;
  }

  async allReduce(data: Float32Array): Promise<Float32Array> {
    this.calls.push({ op: "allReduce", length: data.length });
    await this.world.meet(this.#next++, "allReduce", this.rank, data, (inputs) => {
      sameLengths("allReduce", inputs);
      const all = inputs as Float32Array[];
      const sum = new Float32Array(data.length);
      for (const a of all) for (let i = 0; i < sum.length; i++) sum[i] += a[i];
      for (const a of all) a.set(sum);
    });
    return data;
  }

  async allGather(input: ArrayBufferView): Promise<Uint8Array> {
    this.calls.push({ op: "allGather", length: input.byteLength });
    const slot = await this.world.meet(this.#next++, "allGather", this.rank, input, (inputs) => {
      sameLengths("allGather", inputs);
      const out = new Uint8Array(inputs.length * input.byteLength);
      inputs.forEach((v, r) => out.set(bytesOf(v), r * input.byteLength));
      return out;
    });
    return slot.result!.slice();
  }

  async broadcast<T extends ArrayBufferView>(data: T, root = 0): Promise<T> {
    this.calls.push({ op: `broadcast from ${root}`, length: data.byteLength });
    await this.world.meet(this.#next++, `broadcast from ${root}`, this.rank, data, (inputs) => {
      sameLengths("broadcast", inputs);
      const from = bytesOf(inputs[root]).slice();
      for (const v of inputs) bytesOf(v).set(from);
    });
    return data;
  }

  async barrier(): Promise<void> {
    this.calls.push({ op: "barrier", length: 0 });
    await this.world.meet(this.#next++, "barrier", this.rank, new Uint8Array(0), () => {});
  }
}
