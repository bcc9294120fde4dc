// allreduce.
//  - recursive doubling (log2 p exchanges) for small data, any value, any op. Non-powers of two
//    use the standard fix (MPICH): of the first 2*rem ranks, each even rank hands its value to the
//    odd rank above it and waits for the result, leaving a power of two of "new ranks" that each
//    hold a contiguous, ascending range of ranks. In every exchange both partners compute
//    f(lower range, upper range): the result is the rank-order fold on every rank (right for
//    non-commutative functions) and bit-identical on every rank (floating point included).
//  - large typed arrays with a built-in op: pipelined ring reduce-scatter + ring allgather
//    (bandwidth-optimal; every rank reduces 1/p of the data; piece k is reduced while piece k+1
//    is in flight). Every element is reduced once, by one rank, so all ranks get identical bits
//    (in a rotated order of ranks, which is fine for the commutative built-in ops).
//  - across hosts: reduce inside each host to its lowest rank, allreduce across those leaders,
//    bcast inside each host.

import type { CollPort, Signature } from './port.js';
import { InvalidArgTypeError, OutOfRangeError } from '../errors.js';
import { allocToOverwrite, checkOp, describe, kernel, Op, reducer, typedKind, type AnyTypedArray, type Kernel, type OpLike, type Reducer } from './op.js';
import { bcastFlat } from './bcast.js';
import { reduceImpl } from './reduce.js';
import { ringAllgather, ringReduceScatter } from './ring.js';
import { pieceElems, selectAllreduce } from './select.js';
import { cloneValue, exchange, exchangeNow, floorPow2, mod, subPort, topology } from './util.js';
import { Outcome } from '../outcome.js';
import { nextTagBase } from './signature.js';

/** Recursive doubling on prepared values (tags tag..tag+2). */
export async function allreduceRecursiveDoubling(p: CollPort, x: unknown, red: Reducer, tag: number): Promise<unknown> {
  const { rank, size } = p;
  if (size === 1) return x;
  const pof2 = floorPow2(size);
  const rem = size - pof2;
  let acc = x;
  let newrank: number;
  if (rank < 2 * rem) {
    if (rank % 2 === 0) {
      return await exchange(p, acc, rank + 1, rank + 1, tag, tag + 1);
    }
    acc = red.combine(await p.recv(rank - 1, tag), acc);
    newrank = rank >> 1;
  } else {
    newrank = rank - rem;
  }
  for (let mask = 1; mask < pof2; mask <<= 1) {
    const np = newrank ^ mask;
    const partner = np < rem ? np * 2 + 1 : np + rem;
    const v = await exchange(p, acc, partner, partner, tag + 2);
    acc = np < newrank ? red.combine(v, acc) : red.combine(acc, v);
  }
  if (rank < 2 * rem) await p.send(acc, rank - 1, tag + 1);
  return acc;
}

/**
 * Pipelined ring reduce-scatter + allgather (tags tag+3, tag+4) into `buf`, of a contribution
 * `src` that is only read: either the prepared copy itself (buf === src) or the caller's array.
 */
export async function allreduceRing(p: CollPort, buf: AnyTypedArray, red: Reducer, tag: number, src: AnyTypedArray = buf): Promise<AnyTypedArray> {
  const { rank, size } = p;
  const spec = {
    p,
    pos: rank,
    left: mod(rank - 1, size),
    right: mod(rank + 1, size),
    tag: tag + 3,
    pieceElems: pieceElems(buf.BYTES_PER_ELEMENT),
  };
  await ringReduceScatter(spec, buf, kernel(red.builtin!, typedKind(buf)!)!, 'allreduce', src);
  await ringAllgather({ ...spec, tag: tag + 4 }, buf, 'allreduce');
  return buf;
}

/** allreduce of a prepared value with algorithm selection (tags tag..tag+22). */
export async function allreduceImpl(p: CollPort, x: unknown, red: Reducer, tag: number, flat = false): Promise<unknown> {
  if (p.size === 1) return x;
  const kind = typedKind(x);
  const bytes = kind !== undefined ? (x as AnyTypedArray).byteLength : -1;
  switch (selectAllreduce(p, bytes, red.builtin !== null, flat)) {
    // `return await`: returning the promise itself from an async function costs two more ticks.
    case 'ring':
      return await allreduceRing(p, x as AnyTypedArray, red, tag);
    case 'recursive-doubling':
      return await allreduceRecursiveDoubling(p, x, red, tag);
    case 'hierarchical': {
      const t = topology(p);
      const host = t.hosts[t.hostIndex[p.rank]!]!;
      const hp = subPort(p, host);
      let v = await reduceImpl(hp, x, red, 0, tag + 8);
      if (p.rank === host[0]) {
        v = await allreduceImpl(
          subPort(
            p,
            t.hosts.map((h) => h[0]!),
          ),
          v,
          red,
          tag + 12,
          true,
        );
      }
      return bcastFlat(hp, v, 0, tag + 20);
    }
  }
}

/**
 * allreduce. With `into` (a typed array of the contribution's kind and length, possibly the
 * contribution itself: in place), the result is written there and `into` is returned, so a
 * loop reuses one buffer instead of getting fresh memory every call.
 */
export function allreduce<T>(p: CollPort, data: T, op: OpLike = Op.SUM, into?: AnyTypedArray): Promise<T> {
  try {
    const red = reducer(checkOp(op, p.worldRank), p.worldRank, cloneValue);
    if (into !== undefined) checkInto(p, data, into);
    const sig = p.signature;
    const tag = nextTagBase(p);
    const slots = p.slots;
    if (slots !== undefined) {
      const k = red.builtin !== null ? red.kernelOf(data) : undefined;
      if (slots.carries(data as AnyTypedArray, k)) return slots.allreduce(data as AnyTypedArray, red.builtin!, k!, into, sig) as Promise<T>;
      // Past their first round the calls below end later than this returns: the communicator
      // watches their promise for the end (no `ends`).
      if (slots.copies(data as AnyTypedArray, k, p.size)) {
        // Undefined: some rank cannot copy, and all learned it in the same round.
        return slots
          .allreduceByCopy(data as AnyTypedArray, red.builtin!, k!, into, sig)
          .then((r) => (r !== undefined ? (r as T) : byMessages(p, data, red, tag, into, undefined)));
      }
      // Every rank must take the same way: the slot round says if one carries its data there.
      return slots.allreduceByMessages(sig).then(() => byMessages(p, data, red, tag, into, undefined));
    }
    return byMessages(p, data, red, tag, into, sig !== undefined && p.ended !== undefined ? sig : undefined);
  } catch (e) {
    return Promise.reject(e);
  }
}

/**
 * allreduce by messages. A typed array with a built-in op on a power of two of ranks, small
 * enough for recursive doubling, goes by doublingTyped, which reports its own end to the port
 * when given `ends` (the communicator then watches no promise for it).
 */
function byMessages<T>(p: CollPort, data: T, red: Reducer, tag: number, into: AnyTypedArray | undefined, ends: Signature | undefined): Promise<T> {
  // Not inside an async function: its frame is most of what a small allreduce allocates.
  if (p.size > 1 && (p.size & (p.size - 1)) === 0) {
    const k = red.kernelOf(data);
    if (k !== undefined && selectAllreduce(p, (data as AnyTypedArray).byteLength, true) === 'recursive-doubling') {
      if (ends !== undefined) ends.reportsEnd = true;
      return doublingTyped(p, data as AnyTypedArray, k, red, tag + 2, into, ends) as Promise<T>;
    }
  }
  return allreduceWith(p, data, red, tag, into);
}

async function allreduceWith<T>(p: CollPort, data: T, red: Reducer, tag: number, into: AnyTypedArray | undefined): Promise<T> {
  if (p.size > 1 && red.readsAsIs(data) && selectAllreduce(p, data.byteLength, true) === 'ring') {
    // Large arrays are memory-bound: read the caller's array where it is (as a send would) and
    // let the reduction write the result as it goes, instead of copying the contribution first.
    return (await allreduceRing(p, into ?? allocToOverwrite(data), red, tag, data)) as T;
  }
  const x = red.prepare(data);
  let r: unknown;
  if (p.size === 2 && selectAllreduce(p, typedKind(x) !== undefined ? (x as AnyTypedArray).byteLength : -1, red.builtin !== null) === 'recursive-doubling') {
    // Two ranks, a small value: recursive doubling is one exchange. Written out here, without
    // the general algorithm's layers of async calls: they were most of the cost of a small
    // allreduce. Same tag, same rank order (lower rank's value first) as that exchange.
    const other = p.rank ^ 1;
    const v = await exchange(p, x, other, other, tag + 2);
    r = p.rank === 0 ? red.combine(x, v) : red.combine(v, x);
  } else r = await allreduceImpl(p, x, red, tag);
  if (into === undefined) return r as T;
  (into as Uint8Array).set(r as Uint8Array);
  return into as T;
}

/**
 * A power-of-two number of ranks, a small typed array, a built-in op: recursive doubling written
 * out in one async function, without the general algorithm's layers of calls and prepared copies
 * (they were most of the cost of a small allreduce; 2 ranks: one exchange). The caller's array is
 * sent as it is and never written; each step reduces into the array just received, which is this
 * rank's own, and the last into `into` when given. Both partners of a step apply the kernel to
 * (lower rank's values, higher rank's values): identical bits on every rank. Same tag and partners
 * as allreduceRecursiveDoubling.
 */
async function doublingTyped(
  p: CollPort,
  data: AnyTypedArray,
  k: Kernel,
  red: Reducer,
  tag: number,
  into: AnyTypedArray | undefined,
  ends: Signature | undefined,
): Promise<unknown> {
  let ok = false;
  try {
    const { rank, size } = p;
    const n = data.length;
    let acc = data;
    for (let mask = 1; mask < size; mask <<= 1) {
      const partner = rank ^ mask;
      const r = exchangeNow(p, acc, partner, partner, tag);
      const v = r.outcome === Outcome.Value ? r.value : await r.promise;
      // The other rank's contribution must be the same kind and length; combine() says how it differs.
      if (!sameKind(v, data) || (v as AnyTypedArray).length !== n) return red.combine(red.prepare(acc), v);
      const out = mask << 1 >= size && into !== undefined ? into : (v as AnyTypedArray);
      if (rank < partner) k(out, acc, 0, v as AnyTypedArray, 0, n);
      else k(out, v as AnyTypedArray, 0, acc, 0, n);
      acc = out;
    }
    ok = true;
    return acc;
  } finally {
    if (ends !== undefined) p.ended!(ends, ok);
  }
}

/** Whether `v` is a typed array of `data`'s kind (a Buffer counts as a Uint8Array). */
function sameKind(v: unknown, data: AnyTypedArray): boolean {
  return ArrayBuffer.isView(v) && (Object.getPrototypeOf(v) === Object.getPrototypeOf(data) || typedKind(v) === typedKind(data));
}

function checkInto(p: CollPort, data: unknown, into: unknown): asserts data is AnyTypedArray {
  const kind = typedKind(data);
  if (kind === undefined || typedKind(into) !== kind) {
    throw new InvalidArgTypeError(
      `rank ${p.worldRank}: allreduce into needs a typed array contribution and an 'into' of the same kind; got ${describe(data)} and ${describe(into)}`,
    );
  }
  const d = data as AnyTypedArray;
  const o = into as AnyTypedArray;
  if (o.length !== d.length) {
    throw new OutOfRangeError(`rank ${p.worldRank}: allreduce 'into' holds ${o.length} elements, the contribution ${d.length}`);
  }
  // In place (the very same memory) is fine; a partial overlap would read results as inputs.
  if (o.buffer === d.buffer && o.byteOffset !== d.byteOffset) {
    const a = o.byteOffset;
    const b = d.byteOffset;
    if (a < b + d.byteLength && b < a + o.byteLength) {
      throw new OutOfRangeError(`rank ${p.worldRank}: allreduce 'into' overlaps the contribution without being it; pass the same array for in place`);
    }
  }
}
