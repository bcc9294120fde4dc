// The copying half of a large allreduce in the host group (host-slots.ts runs its rounds): the
// ranks have said where their contributions and results are, and each rank now reduces its own
// chunk straight out of the others' contributions, then takes the other chunks straight out of
// their owners' results, by single copy (process_vm_readv, transport/cma.ts). Every byte of the
// result is written once, by its chunk's owner, and copied once to every other rank: no ring, no
// fragment (and for two ranks out of place, no scratch); every rank gets identical bits.

import { chunkStart } from './collectives/util.js';
import { viewLike, type AnyTypedArray, type Kernel } from './collectives/op.js';
import { asBytes } from './typed.js';

/** What the copy needs of transport/cma.ts's CrossMemory. */
export interface SlotCopier {
  /** Whether a read from `peer` (a world rank) is worth trying. */
  allowed(peer: number): boolean;
  /** Whether reads from `peer` have worked before. */
  proven(peer: number): boolean;
  address(view: Uint8Array): bigint;
  /** False: refused (and remembered), nothing or part of the range copied. */
  read(peer: number, address: bigint, dest: Uint8Array, off: number, n: number): boolean;
  /** Why the last read was refused. */
  readonly lastRefusal?: string | undefined;
}

/**
 * Pieces of a chunk that go through scratch memory (more than two ranks, or in place): small
 * enough to stay in cache between the read and the reduction, large enough that a read's fixed
 * cost (a system call, ~1 µs) is small against its copy.
 */
const COPY_PIECE_BYTES = 256 * 1024;

/** How a copy step ended, as every rank publishes it (Descriptor.op of the next round). */
export const enum CopyStatus {
  Done = 0,
  /** A read was refused or failed (CrossMemory remembers the peer): the ranks decide what now. */
  Failed = 1,
}

/** One large allreduce: what this rank holds and what every rank said in the first round. */
export interface CopyPlan {
  readonly data: AnyTypedArray;
  /** The result: fresh memory, the caller's `into`, or `data` itself (in place). */
  readonly out: AnyTypedArray;
  readonly kernel: Kernel;
  /** World ranks in slot order, and this rank's slot. */
  readonly ranks: readonly number[];
  readonly me: number;
  /** Every slot's contribution and result address (private copies of what the slots said). */
  readonly dataAt: readonly bigint[];
  readonly outAt: readonly bigint[];
}

/** Reusable scratch, one piece long (kept: fresh memory costs page faults and cold lines). */
let scratch: ArrayBuffer | undefined;

function scratchBytes(): Uint8Array {
  scratch ??= new ArrayBuffer(COPY_PIECE_BYTES);
  return new Uint8Array(scratch);
}

/**
 * Reads one element of every peer not read from before: a refusal then comes before any rank
 * changes anything (in place, the contribution is the result).
 */
export function probe(c: SlotCopier, plan: CopyPlan): CopyStatus {
  const tmp = new Uint8Array(plan.data.BYTES_PER_ELEMENT);
  for (let j = 0; j < plan.ranks.length; j++) {
    const peer = plan.ranks[j]!;
    if (j !== plan.me && !c.proven(peer) && !c.read(peer, plan.dataAt[j]!, tmp, 0, tmp.byteLength)) return CopyStatus.Failed;
  }
  return CopyStatus.Done;
}

/** Reduces this rank's chunk of every contribution into `out`. */
export function reduceOwnChunk(c: SlotCopier, plan: CopyPlan): CopyStatus {
  const { data, out, kernel, ranks, me } = plan;
  const size = ranks.length;
  const el = data.BYTES_PER_ELEMENT;
  const s = chunkStart(data.length, size, me);
  const e = chunkStart(data.length, size, me + 1);
  // Out of place the parts are folded in rank order, the first part read straight into the
  // result; a rank among the first two reads the other one and reduces its own onto it (the
  // built-in ops' kernels are commutative bit for bit). In place the result starts as this
  // rank's own part, and the others follow in rank order.
  let next = 0;
  if (out !== data) {
    const first = me === 0 ? 1 : 0;
    if (!c.read(ranks[first]!, plan.dataAt[first]! + BigInt(s * el), asBytes(out), s * el, (e - s) * el)) return CopyStatus.Failed;
    if (me <= 1) kernel(out, out, s, data, s, e - s);
    next = me <= 1 ? 2 : 1;
  }
  const step = Math.max(1, Math.floor(COPY_PIECE_BYTES / el));
  let tmp: Uint8Array | undefined;
  let view: AnyTypedArray | undefined;
  for (let j = next; j < size; j++) {
    if (j === me) {
      if (out !== data) kernel(out, out, s, data, s, e - s);
      continue;
    }
    tmp ??= scratchBytes();
    view ??= viewLike(out, tmp.buffer as ArrayBuffer, step);
    for (let ps = s; ps < e; ps += step) {
      const n = Math.min(step, e - ps);
      if (!c.read(ranks[j]!, plan.dataAt[j]! + BigInt(ps * el), tmp, 0, n * el)) return CopyStatus.Failed;
      kernel(out, out, ps, view, 0, n);
    }
  }
  return CopyStatus.Done;
}

/** Copies every other rank's chunk of the result out of that rank's result. */
export function gatherChunks(c: SlotCopier, plan: CopyPlan): CopyStatus {
  const { out, ranks, me } = plan;
  const size = ranks.length;
  const el = out.BYTES_PER_ELEMENT;
  const outBytes = asBytes(out);
  for (let q = 0; q < size; q++) {
    if (q === me) continue;
    const s = chunkStart(out.length, size, q);
    const e = chunkStart(out.length, size, q + 1);
    if (!c.read(ranks[q]!, plan.outAt[q]! + BigInt(s * el), outBytes, s * el, (e - s) * el)) return CopyStatus.Failed;
  }
  return CopyStatus.Done;
}
