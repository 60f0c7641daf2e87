/**
 * Does a trained model read its images? The text loss of some batches with each row's own image and with
 * the images rotated by one row (every row gets another row's image), with no gradients. A model that
 * answers from priors scores the same on both; the relative gap measures how much the text depends on
 * the image.
 * @module
 */

import type { AsvrBatch, AsvrModel } from "../models/asvr_model.ts";

/** The text loss with own and with other rows' images. */
export interface ImageReliance {
  /** Mean text loss with each row's own image. */
  own: number;
  /** Mean text loss with the images rotated by one row. */
  shuffled: number;
  /** (shuffled - own) / own. */
  gap: number;
  /** Batches measured. */
  batches: number;
}

/** The image reliance of `model` on `batches` (rows without an image keep none; batches need 2+ image rows). */
export async function imageReliance(model: AsvrModel, batches: AsvrBatch[]): Promise<ImageReliance> {
  const e = model.engine;
  let own = 0, shuffled = 0, n = 0;
  for (const batch of batches) {
    const rows = batch.hasImage.flatMap((h, i) => (h ? [i] : []));
    if (!batch.pixels || rows.length < 2) continue;
    const size = batch.pixels.length / batch.hasImage.length;
    const rotated = new Float32Array(batch.pixels);
    rows.forEach((r, k) => {
      const from = rows[(k + 1) % rows.length];
      rotated.set(batch.pixels!.subarray(from * size, (from + 1) * size), r * size);
    });
    const loss = (b: AsvrBatch) => e.tidy(() => e.noGrad(() => model.forward(b).terms.text));
    const [a, b] = [loss(batch), loss({ ...batch, pixels: rotated })];
    own += (await a.read())[0];
    shuffled += (await b.read())[0];
    a.dispose();
    b.dispose();
    n++;
  }
  if (n === 0) throw new Error("imageReliance: no batch with two or more image rows");
  return { own: own / n, shuffled: shuffled / n, gap: (shuffled - own) / own, batches: n };
}
