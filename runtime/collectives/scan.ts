// scan (inclusive) and exscan (exclusive): recursive doubling (Hillis-Steele), ceil(log2 p)
// steps. In the step with distance d every rank sends the fold of its current window of ranks to
// rank+d and receives rank-d's window, which ends right before its own: new window =
// f(received, window). Operands are always combined lower ranks first, so custom
// (non-commutative) functions give the rank-order prefix x0 . x1 . ... . xr.

import type { CollPort } from './port.js';
import { checkOp, Op, reducer, type OpLike, type Reducer } from './op.js';
import { cloneValue } from './util.js';
import { nextTagBase } from './signature.js';

/** Inclusive scan of a prepared value (tag). */
export async function scanImpl(p: CollPort, x: unknown, red: Reducer, tag: number): Promise<unknown> {
  const { rank, size } = p;
  let acc = x;
  for (let d = 1; d < size; d *= 2) {
    const send = rank + d < size ? p.send(acc, rank + d, tag) : undefined;
    const recv = rank - d >= 0 ? p.recv(rank - d, tag) : undefined;
    const [, v] = await Promise.all([send, recv]);
    // The send is complete before acc (possibly a typed array reduced in place) changes.
    if (recv !== undefined) acc = red.combine(v, acc);
  }
  return acc;
}

/** Exclusive scan of a prepared value (tag); undefined on rank 0. */
export async function exscanImpl(p: CollPort, x: unknown, red: Reducer, tag: number): Promise<unknown> {
  const { rank, size } = p;
  let win = x; // fold of my window, ending at me
  let excl: unknown; // fold of my window without me
  let has = false;
  for (let d = 1; d < size; d *= 2) {
    const send = rank + d < size ? p.send(win, rank + d, tag) : undefined;
    const recv = rank - d >= 0 ? p.recv(rank - d, tag) : undefined;
    const [, v] = await Promise.all([send, recv]);
    if (recv === undefined) continue;
    // The window is only needed again if there is a later send: rank + 2d < size.
    const needWin = rank + 2 * d < size;
    // combine may reuse its left operand: use a copy of v where it is needed twice.
    excl = has ? red.combine(needWin ? cloneValue(v) : v, excl) : needWin ? cloneValue(v) : v;
    has = true;
    if (needWin) win = red.combine(v, win);
  }
  return has ? excl : undefined;
}

export async function scan<T>(p: CollPort, data: T, op: OpLike = Op.SUM): Promise<T> {
  const red = reducer(checkOp(op, p.worldRank), p.worldRank, cloneValue);
  return (await scanImpl(p, red.prepare(data), red, nextTagBase(p))) as T;
}

export async function exscan<T>(p: CollPort, data: T, op: OpLike = Op.SUM): Promise<T | undefined> {
  const red = reducer(checkOp(op, p.worldRank), p.worldRank, cloneValue);
  return (await exscanImpl(p, red.prepare(data), red, nextTagBase(p))) as T | undefined;
}
