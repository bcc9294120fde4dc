// scatter: binomial tree from the root (ceil(log2 p) steps). Entries are ordered by relative rank
// (rank - root) mod p, so every subtree's entries are one contiguous run that a node receives
// from its parent and splits among its children. Entries move as "parts" (util.ts): raw values
// are forwarded as their own messages, never re-encoded.

import { CollectiveMismatchError } from '../errors.js';
import type { CollPort } from './port.js';
import { binomialTree } from './bcast.js';
import { checkEntries, checkRoot, cloneValue, lowbit, mod, Pending, recvParts, sendParts } from './util.js';
import { nextTagBase } from './signature.js';

/** Binomial scatter (tag). On the root `array` has been checked; the root's entry is returned as is. */
export async function scatterImpl<T>(p: CollPort, array: readonly T[] | undefined, root: number, tag: number): Promise<T> {
  const { size } = p;
  const rel = mod(p.rank - root, size);
  const abs = (r: number): number => mod(r + root, size);
  const tree = binomialTree(size, rel);
  let items: unknown[];
  if (rel === 0) {
    items = new Array<unknown>(size);
    for (let i = 0; i < size; i++) items[i] = array![abs(i)];
  } else {
    items = await recvParts(p, abs(tree.parentRel), tag, tree.span, (why) =>
      new CollectiveMismatchError(`rank ${p.worldRank}: scatter: ${why}`, { rank: p.worldRank }),
    );
  }
  const sends = new Pending();
  for (const c of tree.childRels) {
    const off = c - rel;
    sends.add(sendParts(p, abs(c), tag, items.slice(off, off + Math.min(lowbit(c), size - c))));
  }
  await sends.all();
  return items[0] as T;
}

export async function scatter<T>(p: CollPort, array: T[] | undefined, root = 0): Promise<T> {
  checkRoot(root, p);
  if (p.rank === root) checkEntries('scatter: array', array, p);
  const v = await scatterImpl(p, array, root, nextTagBase(p));
  return p.rank === root ? cloneValue(v) : v;
}
