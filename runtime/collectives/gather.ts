// gather and allgather. Values may differ in type and size from rank to rank, so no rank can
// choose an algorithm from the data: the choice depends on the communicator size only.
//  - gather: binomial tree toward the root (ceil(log2 p) steps): every node forwards the values
//    of its subtree (a contiguous range of relative ranks) to its parent.
//  - allgather: Bruck's algorithm (recursive doubling generalised to any p): in step k each rank
//    sends the first min(2^k, p-2^k) values it holds to rank-2^k and receives as many from
//    rank+2^k; ceil(log2 p) steps, and each rank moves (p-1) values in total, like the ring.
// Values move as "parts" (see util.ts): raw values (typed arrays, ...) are forwarded as their own
// raw messages, never re-encoded; runs of other values travel as one msgpackr-encoded Array.

import { CollectiveMismatchError } from '../errors.js';
import type { CollPort } from './port.js';
import { binomialTree } from './bcast.js';
import { checkRoot, cloneValue, lowbit, mod, recvParts, sendParts } from './util.js';
import { nextTagBase } from './signature.js';

function mismatcher(p: CollPort, what: string): (why: string) => Error {
  return (why) => new CollectiveMismatchError(`rank ${p.worldRank}: ${what}: ${why}`, { rank: p.worldRank });
}

/** Binomial gather (tag). The root's own entry is `data` itself. */
export async function gatherImpl<T>(p: CollPort, data: T, root: number, tag: number): Promise<T[] | undefined> {
  const { size } = p;
  if (size === 1) return [data];
  const rel = mod(p.rank - root, size);
  const abs = (r: number): number => mod(r + root, size);
  const tree = binomialTree(size, rel);
  const mm = mismatcher(p, 'gather');
  // Children in ascending order cover [rel+1, rel+span): receive them all at once (distinct sources).
  const parts = await Promise.all(
    tree.childRels
      .slice()
      .reverse()
      .map((c) => recvParts(p, abs(c), tag, Math.min(lowbit(c), size - c), mm)),
  );
  const items: unknown[] = [data];
  for (const part of parts) for (const v of part) items.push(v);
  if (rel !== 0) {
    await sendParts(p, abs(tree.parentRel), tag, items);
    return undefined;
  }
  const out = new Array<T>(size);
  for (let i = 0; i < size; i++) out[abs(i)] = items[i] as T;
  return out;
}

/** Bruck allgather (tag). The own entry is `data` itself. */
export async function allgatherImpl<T>(p: CollPort, data: T, tag: number): Promise<T[]> {
  const { rank, size } = p;
  const items: unknown[] = [data];
  const mm = mismatcher(p, 'allgather');
  for (let d = 1; d < size; d *= 2) {
    const cnt = Math.min(d, size - d);
    const [, got] = await Promise.all([
      sendParts(p, mod(rank - d, size), tag, items.slice(0, cnt)),
      recvParts(p, mod(rank + d, size), tag, cnt, mm),
    ]);
    for (const v of got) items.push(v);
  }
  const out = new Array<T>(size);
  for (let i = 0; i < size; i++) out[mod(rank + i, size)] = items[i] as T;
  return out;
}

export async function gather<T>(p: CollPort, data: T, root = 0): Promise<T[] | undefined> {
  checkRoot(root, p);
  const out = await gatherImpl(p, data, root, nextTagBase(p));
  if (out !== undefined) out[p.rank] = cloneValue(data);
  return out;
}

export async function allgather<T>(p: CollPort, data: T): Promise<T[]> {
  const out = await allgatherImpl(p, data, nextTagBase(p));
  out[p.rank] = cloneValue(data);
  return out;
}
