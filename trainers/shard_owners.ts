/**
 * Which rank keeps each trainable tensor's optimizer state when the state is sharded
 * (`train.distributed.shardOptimizer`): whole tensors, largest first, each to the rank holding the fewest
 * elements so far (ties: the lowest rank). Every rank computes the same answer from the sizes alone, so
 * nothing is exchanged; a resume on another world size recomputes it.
 *
 * ```ts
 * import { shardOwners } from "./shard_owners.ts";
 * shardOwners([10, 40, 30, 20], 2); // [0, 0, 1, 1]: rank 0 keeps 40 + 10, rank 1 keeps 30 + 20
 * ```
 * @module
 */

/** The owner rank of each tensor of `sizes` (elements) among `world` ranks; see the module doc. */
export function shardOwners(sizes: readonly number[], world: number): number[] {
  if (!Number.isInteger(world) || world < 1) throw new RangeError(`shardOwners: world ${world} is not >= 1`);
  const order = sizes.map((_, i) => i).sort((a, b) => sizes[b] - sizes[a] || a - b);
  const load = new Array<number>(world).fill(0);
  const owners = new Array<number>(sizes.length).fill(0);
  for (const i of order) {
    let best = 0;
    for (let r = 1; r < world; r++) if (load[r] < load[best]) best = r;
    owners[i] = best;
    load[best] += sizes[i];
  }
  return owners;
}

/** Elements each rank keeps under {@linkcode shardOwners}: [world]. */
export function shardLoads(sizes: readonly number[], world: number): number[] {
  const load = new Array<number>(world).fill(0);
  shardOwners(sizes, world).forEach((r, i) => load[r] += sizes[i]);
  return load;
}
