// The grant authority (Xen's dom0 granting pages and binding event channels): on the first
// request for a pair it creates one sealed memfd segment and two eventfd doorbells, hands them
// over SCM_RIGHTS to exactly the two ranks of the pair, and drops its own copies. Nothing is
// named in /dev/shm; the memory is gone once both ranks are.

import * as kmod from '../kmod/index.js';
import { segmentBytes } from '../transport/ivcom/layout.js';
import type { GrantBroker } from './job.js';
import type { Plan } from './plan.js';

export class KmodGrantBroker implements GrantBroker {
  /** Per rank: [ivrun's end, the rank's end] of a SOCK_SEQPACKET pair. */
  private readonly pairs: Array<[number, number]>;
  private readonly granted = new Set<number>();
  private readonly bytes: number;
  private closed = false;

  constructor(
    private readonly plan: Plan,
    private readonly jobId: string,
    ringBytes: number,
  ) {
    this.bytes = segmentBytes(ringBytes);
    this.pairs = plan.ranks.map(() => kmod.socketPair());
  }

  rankFd(rank: number): number | undefined {
    return this.pairs[rank]?.[1];
  }

  spawned(rank: number): void {
    const pair = this.pairs[rank]!;
    if (pair[1] >= 0) {
      kmod.closeFd(pair[1]);
      pair[1] = -1;
    }
  }

  request(from: number, to: number): void {
    if (this.closed) return;
    const a = Math.min(from, to);
    const b = Math.max(from, to);
    const key = a * this.plan.size + b;
    if (this.granted.has(key)) return;
    this.granted.add(key);
    // Co-residency is the plan's decision alone: ranks on different hosts never share memory.
    if (this.plan.ranks[a]!.node !== this.plan.ranks[b]!.node) return;
    const seg = kmod.segmentCreate(`ivcom-${this.jobId}-${a}-${b}`, this.bytes);
    const bellA = kmod.eventfdCreate();
    const bellB = kmod.eventfdCreate();
    try {
      this.push(a, [seg, bellA, bellB], { peer: b, bytes: this.bytes, low: true });
      this.push(b, [seg, bellB, bellA], { peer: a, bytes: this.bytes, low: false });
    } finally {
      kmod.closeFd(seg);
      kmod.closeFd(bellA);
      kmod.closeFd(bellB);
    }
  }

  private push(rank: number, fds: number[], what: { peer: number; bytes: number; low: boolean }): void {
    try {
      kmod.sendFds(this.pairs[rank]![0], fds, Buffer.from(JSON.stringify(what)));
    } catch {
      // The rank is gone (EPIPE): its peer will learn that from the supervisor, not from here.
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const p of this.pairs) {
      for (const fd of p) if (fd >= 0) kmod.closeFd(fd);
    }
  }
}
