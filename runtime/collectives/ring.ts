// Pipelined ring phases over a typed array split in `size` chunks (chunk c = elements
// [chunkStart(c), chunkStart(c+1))), each chunk moved in pieces of at most `pieceElems` elements.
// A piece is forwarded (or reduced, then forwarded) as soon as it arrives, and the receive of the
// next piece is already posted, so piece k is reduced while piece k+1 is in flight.
//
// All messages of one phase use one tag: each rank sends to its right neighbour in (step, piece)
// order and receives from its left neighbour in the same order, so MPI's non-overtaking rule
// matches them up.

import { encode } from '../codec.js';
import { CollectiveMismatchError } from '../errors.js';
import type { CollPort } from './port.js';
import { describe, typedKind, viewLike, type AnyTypedArray, type Kernel } from './op.js';
import { chunkStart, handled, mod, Pending, pieces } from './util.js';

export interface RingSpec {
  p: CollPort;
  /** Position of this rank in the ring, 0..p.size-1. */
  pos: number;
  /** Port ranks of the neighbours at pos-1 and pos+1. */
  left: number;
  right: number;
  tag: number;
  pieceElems: number;
}

/** How many receives are kept posted ahead of the one being processed. */
const PREFETCH = 2;

// Receive scratch of ring reductions, kept from one call to the next: on these VMs a fresh page
// costs ~1 us to fault in, so the PREFETCH+1 fresh pieces of every call cost more than reducing
// the data in them. A scratch goes back only after a call that consumed every receive it posted.
const spare: ArrayBuffer[] = [];
const SPARE_MAX = 2 * (PREFETCH + 1);

function takeScratch(bytes: number): ArrayBuffer {
  const i = spare.findIndex((b) => b.byteLength >= bytes);
  return i >= 0 ? spare.splice(i, 1)[0]! : new ArrayBuffer(bytes);
}

function giveBack(bufs: ArrayBuffer[]): void {
  for (const b of bufs) if (spare.length < SPARE_MAX) spare.push(b);
}

function chunkPieces(n: number, size: number, c: number, pieceElems: number): Array<[number, number]> {
  return pieces(chunkStart(n, size, c), chunkStart(n, size, c + 1), pieceElems);
}

function checkPiece(r: RingSpec, buf: AnyTypedArray, v: unknown, len: number, what: string): AnyTypedArray {
  if (typedKind(v) !== typedKind(buf) || (v as AnyTypedArray).length !== len) {
    throw new CollectiveMismatchError(
      `rank ${r.p.worldRank}: ${what}: rank ${r.left} sent ${describe(v)} where a piece of ${len} elements of ${describe(
        buf,
      )} was expected; every rank must pass a typed array of the same kind and length`,
      { rank: r.p.worldRank, peer: r.left },
    );
  }
  return v as AnyTypedArray;
}

/**
 * Receives `count` pieces from the left neighbour, in order, with PREFETCH receives posted
 * ahead, calling `each(index, value)` on each. When the port can receive into memory,
 * `target(i, slot)` names where piece i goes (slot: which of the PREFETCH+1 in-flight receives),
 * and `value` is that very view, checked to hold `len(i)` elements of `kindOf`'s codec.
 */
async function receiveAll(
  r: RingSpec,
  count: number,
  each: (i: number, v: unknown) => void,
  into?: { target: (i: number, slot: number) => AnyTypedArray; codec: number },
): Promise<void> {
  const posted: Promise<unknown>[] = [];
  let next = 0;
  const recvInto = into !== undefined ? r.p.recvInto : undefined;
  const post = (): void => {
    while (next < count && posted.length < PREFETCH + 1) {
      if (recvInto !== undefined) {
        const i = next;
        const view = into!.target(i, i % (PREFETCH + 1));
        posted.push(
          handled(
            recvInto(view, r.left, r.tag).then((st) =>
              // A piece of another kind or length is reported like a mismatched value would be.
              st.codec === into!.codec && st.byteLength === view.byteLength ? view : { kind: st.codec, byteLength: st.byteLength },
            ),
          ),
        );
      } else posted.push(handled(r.p.recv(r.left, r.tag)));
      next++;
    }
  };
  for (let i = 0; i < count; i++) {
    post();
    const v = await posted.shift()!;
    each(i, v);
  }
}

/** The codec number a typed array travels with. */
function codecOf(buf: AnyTypedArray): number {
  return encode(buf.subarray(0, 0)).codec;
}

/**
 * Ring reduce-scatter of this rank's contribution `src`: afterwards chunk `pos` of `buf` holds
 * the reduction of everybody's chunk `pos`, and the other chunks this rank passed on hold partial
 * values. Every chunk that arrives is reduced with `src` into `buf` exactly once, so `buf` may be
 * `src` (in place) or fresh memory (then `src` is only read, and chunk pos-1 of `buf` is left
 * unwritten).
 */
export async function ringReduceScatter(r: RingSpec, buf: AnyTypedArray, k: Kernel, what: string, src: AnyTypedArray = buf): Promise<void> {
  const size = r.p.size;
  const n = buf.length;
  const sends = new Pending();
  // Step 0 sends our own chunk pos-1; step s receives chunk pos-s-2, reduces it, and (but for the
  // last step) forwards it as step s+1's send.
  for (const [s, e] of chunkPieces(n, size, mod(r.pos - 1, size), r.pieceElems)) {
    sends.add(r.p.send(src.subarray(s, e), r.right, r.tag));
  }
  const plan: Array<[number, number, boolean]> = [];
  for (let step = 0; step < size - 1; step++) {
    for (const [s, e] of chunkPieces(n, size, mod(r.pos - step - 2, size), r.pieceElems)) {
      plan.push([s, e, step < size - 2]);
    }
  }
  // Pieces arrive in PREFETCH+1 rotating scratch buffers, reduced into `buf` from there.
  const scratch: ArrayBuffer[] = [];
  const target = (i: number, slot: number): AnyTypedArray => {
    const [s, e] = plan[i]!;
    scratch[slot] ??= takeScratch(r.pieceElems * buf.BYTES_PER_ELEMENT);
    return viewLike(buf, scratch[slot]!, e - s);
  };
  await receiveAll(
    r,
    plan.length,
    (i, v) => {
      const [s, e, forward] = plan[i]!;
      const piece = checkPiece(r, buf, v, e - s, what);
      k(buf, src, s, piece, 0, e - s);
      if (forward) sends.add(r.p.send(buf.subarray(s, e), r.right, r.tag));
    },
    { target, codec: codecOf(buf) },
  );
  giveBack(scratch);
  // The pieces we sent are views of `src` and `buf`: they must be out before anyone overwrites them.
  await sends.all();
}

/**
 * Ring allgather: on entry this rank's chunk `pos` is final; afterwards every chunk is. With
 * `sourcePos` set, the rank at that position already holds everything: it only sends, and its
 * left neighbour does not send to it (used by the large broadcast).
 */
export async function ringAllgather(
  r: RingSpec,
  buf: AnyTypedArray,
  what: string,
  sourcePos = -1,
): Promise<void> {
  const size = r.p.size;
  const n = buf.length;
  const sends = new Pending();
  const rightIsSource = mod(r.pos + 1, size) === sourcePos;
  if (r.pos === sourcePos) {
    for (let step = 0; step < size - 1; step++) {
      for (const [s, e] of chunkPieces(n, size, mod(r.pos - step, size), r.pieceElems)) {
        sends.add(r.p.send(buf.subarray(s, e), r.right, r.tag));
      }
    }
    await sends.all();
    return;
  }
  if (!rightIsSource) {
    for (const [s, e] of chunkPieces(n, size, r.pos, r.pieceElems)) {
      sends.add(r.p.send(buf.subarray(s, e), r.right, r.tag));
    }
  }
  const plan: Array<[number, number, boolean]> = [];
  for (let step = 0; step < size - 1; step++) {
    for (const [s, e] of chunkPieces(n, size, mod(r.pos - step - 1, size), r.pieceElems)) {
      plan.push([s, e, step < size - 2 && !rightIsSource]);
    }
  }
  // Pieces land in place: each receive targets its own slice of `buf`.
  await receiveAll(
    r,
    plan.length,
    (i, v) => {
      const [s, e, forward] = plan[i]!;
      const piece = checkPiece(r, buf, v, e - s, what);
      if (piece.buffer !== buf.buffer || piece.byteOffset !== buf.byteOffset + s * buf.BYTES_PER_ELEMENT) {
        (buf as Uint8Array).set(piece as Uint8Array, s);
      }
      if (forward) sends.add(r.p.send(buf.subarray(s, e), r.right, r.tag));
    },
    { target: (i) => buf.subarray(plan[i]![0], plan[i]![1]) as AnyTypedArray, codec: codecOf(buf) },
  );
  await sends.all();
}
