// bcast.
//  - small values: binomial tree from the root (ceil(log2 p) steps);
//  - typed arrays of at least BCAST_LARGE_BYTES on >= BCAST_LARGE_MIN_SIZE ranks: scatter of the
//    chunks down the same binomial tree, then a pipelined ring allgather (van de Geijn); the root
//    only sends in the ring;
//  - across hosts: root -> leaders of the other hosts, then each leader -> its host.
//
// Non-roots do not know what is coming, so the first message (on `tag`, down the binomial tree)
// says it: a raw value (typed array, DataView, ArrayBuffer, Buffer) is the data itself; an Array
// [value] carries any other value; a plain object { k: kind, n: length } announces a large typed
// array whose chunks follow (scatter on tag+1, ring on tag+2).

import { CollectiveMismatchError } from '../errors.js';
import type { CollPort } from './port.js';
import { allocKind, describe, typedKind, type AnyTypedArray } from './op.js';
import { ringAllgather } from './ring.js';
import { pieceElems, selectBcastLarge, useHierarchy } from './select.js';
import { isRaw } from '../typed.js';
import { checkRoot, chunkStart, cloneValue, ceilPow2, lowbit, mod, Pending, subPort, topology } from './util.js';
import { nextTagBase } from './signature.js';

interface LargeHeader {
  k: string;
  n: number;
}

function mismatch(p: CollPort, why: string, peer?: number): CollectiveMismatchError {
  return new CollectiveMismatchError(`rank ${p.worldRank}: bcast: ${why}`, { rank: p.worldRank, peer });
}

/** Binomial tree of `p` rooted at `root`: parent (-1 at the root) and children (largest first). */
export function binomialTree(size: number, rel: number): { parentRel: number; childRels: number[]; span: number } {
  const top = rel === 0 ? ceilPow2(size) : lowbit(rel);
  const childRels: number[] = [];
  for (let m = top >> 1; m > 0; m >>= 1) if (rel + m < size) childRels.push(rel + m);
  return { parentRel: rel === 0 ? -1 : rel - lowbit(rel), childRels, span: Math.min(top, size - rel) };
}

/** Flat bcast (binomial or scatter+allgather). The root gets `data` back itself (not a copy). */
export async function bcastFlat<T>(p: CollPort, data: T, root: number, tag: number): Promise<T> {
  const { size } = p;
  if (size === 1) return data;
  const rel = mod(p.rank - root, size);
  const abs = (r: number): number => mod(r + root, size);
  const tree = binomialTree(size, rel);

  let msg: unknown;
  if (rel === 0) {
    const k = typedKind(data);
    const bytes = k !== undefined ? (data as AnyTypedArray).byteLength : -1;
    if (k !== undefined && selectBcastLarge(size, bytes)) {
      msg = { k: Buffer.isBuffer(data) ? 'Buffer' : k, n: (data as AnyTypedArray).length } satisfies LargeHeader;
    } else {
      msg = isRaw(data) ? data : [data];
    }
  } else {
    msg = await p.recv(abs(tree.parentRel), tag);
  }
  const sends = new Pending();
  for (const c of tree.childRels) sends.add(p.send(msg, abs(c), tag));

  if (isRaw(msg)) {
    await sends.all();
    return msg as T;
  }
  if (Array.isArray(msg)) {
    await sends.all();
    return (rel === 0 ? data : msg[0]) as T;
  }
  const h = msg as LargeHeader;
  if (typeof h !== 'object' || h === null || typeof h.k !== 'string' || typeof h.n !== 'number') {
    throw mismatch(p, `unexpected message from rank ${abs(tree.parentRel)}`, abs(tree.parentRel));
  }

  // Large: scatter chunks (chunk j belongs to relative rank j) down the tree, then ring allgather.
  const buf = rel === 0 ? (data as unknown as AnyTypedArray) : allocKind(h.k, h.n);
  const n = buf.length;
  if (rel !== 0) {
    const s = chunkStart(n, size, rel);
    const e = chunkStart(n, size, rel + tree.span);
    if (e > s) {
      const parent = abs(tree.parentRel);
      const v = await p.recv(parent, tag + 1);
      if (typedKind(v) !== typedKind(buf) || (v as AnyTypedArray).length !== e - s) {
        throw mismatch(p, `rank ${parent} sent ${describe(v)} where ${e - s} elements of ${describe(buf)} were expected`, parent);
      }
      (buf as Uint8Array).set(v as Uint8Array, s);
    }
  }
  for (const c of tree.childRels) {
    const cSpan = Math.min(lowbit(c), size - c);
    const s = chunkStart(n, size, c);
    const e = chunkStart(n, size, c + cSpan);
    if (e > s) sends.add(p.send(buf.subarray(s, e), abs(c), tag + 1));
  }
  await sends.all();
  await ringAllgather(
    { p, pos: rel, left: abs(rel - 1), right: abs(rel + 1), tag: tag + 2, pieceElems: pieceElems(buf.BYTES_PER_ELEMENT) },
    buf,
    'bcast',
    0,
  );
  return buf as unknown as T;
}

/** bcast with the hierarchical variant; the root gets `data` back itself. Uses tags tag..tag+8. */
export async function bcastImpl<T>(p: CollPort, data: T, root: number, tag: number): Promise<T> {
  if (p.size === 1) return data;
  if (!useHierarchy(p)) return bcastFlat(p, data, root, tag);
  const t = topology(p);
  const leaders = t.hosts.map((h) => (h.includes(root) ? root : h[0]!));
  const hi = t.hostIndex[p.rank]!;
  const myHost = t.hosts[hi]!;
  const myLeader = leaders[hi]!;
  let v = data;
  if (p.rank === myLeader) v = await bcastFlat(subPort(p, leaders), data, leaders.indexOf(root), tag + 3);
  return bcastFlat(subPort(p, myHost), v, myHost.indexOf(myLeader), tag + 6);
}

export async function bcast<T>(p: CollPort, data: T, root = 0): Promise<T> {
  checkRoot(root, p);
  const v = await bcastImpl(p, data, root, nextTagBase(p));
  return p.rank === root ? cloneValue(data) : v;
}
