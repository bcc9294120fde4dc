// Algorithm choice, by communicator size, data size and topology. Every threshold is a named
// constant here. A choice that changes which messages are exchanged must be made identically on
// every rank, so it only ever depends on values all ranks agree on: the communicator size, the
// topology (hostOf), the op, and the size of the data where the collective requires every rank to
// pass the same shape (reduce/allreduce typed arrays) or where the root announces it (bcast).
//
// Only ALLREDUCE_RING_BYTES rests on measurements (2-core development machine, in-memory port);
// the other thresholds are MPICH's or reasoned from the message counts, and all are starting
// points to re-tune on the real transports. (Why reductions are not offloaded to a worker pool:
// docs/decisions.md.)

import type { CollPort } from './port.js';
import { topology } from './util.js';

/**
 * bcast of a typed array of at least this many bytes, on at least BCAST_LARGE_MIN_SIZE ranks,
 * uses scatter + ring allgather (van de Geijn) instead of the binomial tree: the root sends each
 * byte once instead of log2(size) times. (MPICH: 512 KiB for its long-message algorithm.)
 */
export const BCAST_LARGE_BYTES = 512 * 1024;
/** With 2 ranks scatter + allgather only adds a step; binomial is a single send. */
export const BCAST_LARGE_MIN_SIZE = 3;

/**
 * allreduce of a typed array with a built-in op of at least this many bytes uses the pipelined
 * ring (reduce-scatter + allgather): every rank moves 2(p-1)/p of the data and reduces 1/p of it,
 * against log2(p) full exchanges and full reductions for recursive doubling. Below, recursive
 * doubling wins on latency (log2 p steps against 2(p-1)).
 *
 * Measured with the in-memory port (all ranks in one thread, so it counts total work, not the
 * ring's parallelism; float64 SUM, ms per call):
 *            16 KiB        64 KiB        256 KiB       1 MiB         4 MiB
 *   p=2  rd 0.05/ring 0.11  0.10/0.54     0.79/1.03     7.1/5.6       14.3/12.3
 *   p=4  rd 0.21/ring 0.29  0.40/0.50     1.95/1.86     5.8/7.0       36.0/30.2
 *   p=8  rd 0.58/ring 1.02  1.49/1.90     5.27/6.00     41.0/31.7     132/108
 * The crossover sits between 256 KiB and 1 MiB there; with real processes the ring also spreads
 * the reduction over the ranks, so the threshold is set at the low end. (MPICH switches at 2 KiB,
 * but its per-message cost is far below Node's.) To be re-tuned on the real transports.
 */
export const ALLREDUCE_RING_BYTES = 256 * 1024;

/**
 * allreduce of a typed array with a built-in op of at least this many bytes, on the world
 * communicator of a job on one host (the host group, host-slots.ts), goes by single copy: each
 * rank reads its chunk of the others' contributions and the others' chunks of the result straight
 * out of their memory (one kernel copy per byte moved), where the ring copies every piece into a
 * ring and out again. A read pins the pages it copies, which costs about as much as the ring's
 * second copy saves; with more ranks than cores the copy is faster from 512 KiB (no message per
 * piece to wait for). docs/performance.md has the figures.
 */
export const ALLREDUCE_COPY_BYTES = 512 * 1024;

/**
 * The same for 2 ranks, whose ring allreduce is one exchange each way: into a fresh result the
 * ring was ahead at 1 MiB (medians 260-266 µs against 290-297 by copy, three sets) and behind at
 * 2 MiB (557 against 490-503); into a reused buffer the two are even at 1 MiB.
 */
export const ALLREDUCE_COPY_BYTES_TWO_RANKS = 2 * 1024 * 1024;

/** From which size an allreduce among `ranks` ranks of one host goes by single copy. */
export function allreduceCopyBytes(ranks: number): number {
  return ranks === 2 ? ALLREDUCE_COPY_BYTES_TWO_RANKS : ALLREDUCE_COPY_BYTES;
}

/**
 * reduce of a typed array with a built-in op of at least this many bytes, on at least
 * REDUCE_LARGE_MIN_SIZE ranks, uses ring reduce-scatter + gather to the root (Rabenseifner's
 * reduce): the root receives (p-1)/p of the data and reduces 1/p of it per step instead of
 * receiving and reducing a full array from each of its log2(p) children.
 */
export const REDUCE_LARGE_BYTES = 512 * 1024;
export const REDUCE_LARGE_MIN_SIZE = 3;

/**
 * Pieces of the ring algorithms: the unit of pipelining (one piece is reduced while the next is
 * in flight). Big enough that per-message overhead (~10 us in JS) is small against copying and
 * reducing it, small enough to keep several pieces in flight per step.
 */
export const RING_PIECE_BYTES = 256 * 1024;

/**
 * alltoall: a rank whose entries hold at least this many raw bytes in total runs the pairwise
 * exchange one step (one partner) at a time, so at most two messages of its own are in flight;
 * below, it posts the whole pairwise schedule at once (latency of one step instead of size-1).
 * This choice is local: ranks that choose differently still match (each pair exchanges exactly
 * one message each way, and neither schedule ever waits on a send before posting the receive it
 * pairs with).
 */
export const ALLTOALL_PAIRWISE_BYTES = 256 * 1024;

/**
 * Hierarchical algorithms (intra-host first to a leader per host, then across leaders, then
 * intra-host again) are used by barrier, bcast and allreduce when the ranks span more than one
 * host and at least one host holds more than one rank. For allreduce with a custom (possibly
 * non-commutative) function they are used only when every host's ranks are one contiguous range,
 * so that host-by-host folding keeps rank order; otherwise the flat algorithm runs.
 */
export function useHierarchy(p: CollPort): boolean {
  if (p.size < 3) return false;
  const t = topology(p);
  return t.hosts.length > 1 && t.hosts.length < p.size;
}

export type AllreduceAlgo = 'recursive-doubling' | 'ring' | 'hierarchical';
export type BcastAlgo = 'binomial' | 'scatter-allgather' | 'hierarchical';
export type ReduceAlgo = 'binomial' | 'reduce-scatter-gather';

/** allreduce: `typedBytes` is the typed array's byte size (-1 for other values). */
export function selectAllreduce(p: CollPort, typedBytes: number, builtin: boolean, flat = false): AllreduceAlgo {
  if (!flat && useHierarchy(p) && (builtin || topology(p).contiguous)) return 'hierarchical';
  if (builtin && typedBytes >= ALLREDUCE_RING_BYTES && p.size >= 2) return 'ring';
  return 'recursive-doubling';
}

/** bcast on the root: `typedBytes` of the root's typed array (-1 for other values). */
export function selectBcastLarge(size: number, typedBytes: number): boolean {
  return size >= BCAST_LARGE_MIN_SIZE && typedBytes >= BCAST_LARGE_BYTES;
}

export function selectReduce(size: number, typedBytes: number, builtin: boolean): ReduceAlgo {
  if (builtin && size >= REDUCE_LARGE_MIN_SIZE && typedBytes >= REDUCE_LARGE_BYTES) return 'reduce-scatter-gather';
  return 'binomial';
}

/** Elements per ring piece for a typed array with `bytesPerElement`. */
export function pieceElems(bytesPerElement: number): number {
  return Math.max(1, Math.floor(RING_PIECE_BYTES / bytesPerElement));
}
