// reduce.
//  - binomial tree toward the root, ceil(log2 p) steps, keeping rank order for non-commutative
//    functions: in the tree over relative ranks rel = (rank - root) mod p every node's subtree is
//    a contiguous range of relative ranks, received child by child in ascending order. Relative
//    order equals rank order except at the wrap from rank p-1 to rank 0, so each node carries
//    two partial folds: `hi` over its ranks >= root and `lo` over its ranks < root (at most
//    log2 p nodes, those whose range straddles the wrap, send both). The root returns
//    f(lo, hi) = x0 . x1 . ... . x(p-1) exactly. No extra hop when root != 0.
//  - large typed arrays with a built-in op: pipelined ring reduce-scatter, then every rank sends
//    its reduced chunk to the root (Rabenseifner's reduce).

import { CollectiveMismatchError } from '../errors.js';
import type { CollPort } from './port.js';
import { checkOp, describe, kernel, Op, reducer, typedKind, type AnyTypedArray, type OpLike, type Reducer } from './op.js';
import { binomialTree } from './bcast.js';
import { ringReduceScatter } from './ring.js';
import { pieceElems, selectReduce } from './select.js';
import { checkRoot, chunkStart, cloneValue, handled, lowbit, mod } from './util.js';
import { nextTagBase } from './signature.js';

/** Binomial reduce of prepared values (tags tag, tag+1). Result on the root, undefined elsewhere. */
export async function reduceBinomial(p: CollPort, x: unknown, red: Reducer, root: number, tag: number): Promise<unknown> {
  const { size } = p;
  if (size === 1) return x;
  const rel = mod(p.rank - root, size);
  const abs = (r: number): number => mod(r + root, size);
  const wrap = size - root; // relative ranks >= wrap are ranks < root
  const tree = binomialTree(size, rel);

  let hi: unknown;
  let lo: unknown;
  const hasHi = rel < wrap;
  let hasLo = !hasHi;
  if (hasHi) hi = x;
  else lo = x;

  // Post every child's receives first (children send as soon as their subtrees are done).
  const children = tree.childRels
    .slice()
    .reverse()
    .map((c) => {
      const end = c + Math.min(lowbit(c), size - c);
      return {
        hi: c < wrap ? handled(p.recv(abs(c), tag)) : null,
        lo: end > wrap ? handled(p.recv(abs(c), tag + 1)) : null,
      };
    });
  for (const ch of children) {
    if (ch.hi !== null) hi = red.combine(hi, await ch.hi);
    if (ch.lo !== null) {
      const v = await ch.lo;
      lo = hasLo ? red.combine(lo, v) : v;
      hasLo = true;
    }
  }
  if (rel === 0) return hasLo ? red.combine(lo, hi) : hi;
  const parent = abs(tree.parentRel);
  const sends: Promise<void>[] = [];
  if (hasHi) sends.push(p.send(hi, parent, tag));
  if (hasLo) sends.push(p.send(lo, parent, tag + 1));
  await Promise.all(sends);
  return undefined;
}

/** Ring reduce-scatter + gather to the root (tags tag+2, tag+3); `buf` is prepared and owned. */
export async function reduceLarge(p: CollPort, buf: AnyTypedArray, red: Reducer, root: number, tag: number): Promise<unknown> {
  const { size, rank } = p;
  const k = kernel(red.builtin!, typedKind(buf)!)!;
  await ringReduceScatter(
    { p, pos: rank, left: mod(rank - 1, size), right: mod(rank + 1, size), tag: tag + 2, pieceElems: pieceElems(buf.BYTES_PER_ELEMENT) },
    buf,
    k,
    'reduce',
  );
  const n = buf.length;
  if (rank !== root) {
    const s = chunkStart(n, size, rank);
    const e = chunkStart(n, size, rank + 1);
    if (e > s) await p.send(buf.subarray(s, e), root, tag + 3);
    return undefined;
  }
  const recvs: Promise<void>[] = [];
  for (let c = 0; c < size; c++) {
    const s = chunkStart(n, size, c);
    const e = chunkStart(n, size, c + 1);
    if (c === root || e === s) continue;
    recvs.push(
      p.recv(c, tag + 3).then((v) => {
        if (typedKind(v) !== typedKind(buf) || (v as AnyTypedArray).length !== e - s) {
          throw new CollectiveMismatchError(
            `rank ${p.worldRank}: reduce: rank ${c} sent ${describe(v)} where ${e - s} elements of ${describe(buf)} were expected`,
            { rank: p.worldRank, peer: c },
          );
        }
        (buf as Uint8Array).set(v as Uint8Array, s);
      }),
    );
  }
  await Promise.all(recvs);
  return buf;
}

/** reduce of a prepared value with algorithm selection (tags tag..tag+3). */
export async function reduceImpl(p: CollPort, x: unknown, red: Reducer, root: number, tag: number): Promise<unknown> {
  if (p.size === 1) return x;
  const kind = typedKind(x);
  const bytes = kind !== undefined ? (x as AnyTypedArray).byteLength : -1;
  if (selectReduce(p.size, bytes, red.builtin !== null) === 'reduce-scatter-gather') {
    return reduceLarge(p, x as AnyTypedArray, red, root, tag);
  }
  return reduceBinomial(p, x, red, root, tag);
}

export async function reduce<T>(p: CollPort, data: T, op: OpLike = Op.SUM, root = 0): Promise<T | undefined> {
  checkRoot(root, p);
  const red = reducer(checkOp(op, p.worldRank), p.worldRank, cloneValue);
  const x = red.prepare(data);
  const r = await reduceImpl(p, x, red, root, nextTagBase(p));
  return (p.rank === root ? r : undefined) as T | undefined;
}
