/**
 * The Web Worker behind `ImagePrefetcher` (prefetch.ts): loads each `ImageWorkerRequest`'s image
 * (read, decode, preprocess) and posts back an `ImageWorkerReply`, the pixels' buffer
 * transferred, not copied. A failed image is a reply with `ok: false`; the worker keeps going.
 *
 * Started by the prefetcher as `new Worker(new URL("./image_worker.ts", import.meta.url), { type: "module" })`;
 * importing it elsewhere does nothing useful.
 * @module
 */

import { type ImageWorkerReply, type ImageWorkerRequest, loadImageJob } from "./prefetch.ts";

/** The worker side of the message channel. */
interface WorkerScope {
  onmessage: ((e: MessageEvent<ImageWorkerRequest>) => void) | null;
  postMessage(message: ImageWorkerReply, transfer: Transferable[]): void;
}

const scope = globalThis as unknown as WorkerScope;

scope.onmessage = async (e: MessageEvent<ImageWorkerRequest>) => {
  const { seq, job } = e.data;
  const result = await loadImageJob(job);
  scope.postMessage({ seq, result }, result.ok ? [result.pixels.buffer as ArrayBuffer] : []);
};
