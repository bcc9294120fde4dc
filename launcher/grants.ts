// The grant authority (Xen's dom0 granting pages and binding event channels): on the first
// request for a pair it creates one sealed memfd segment and two eventfd doorbells, hands them
// over SCM_RIGHTS to exactly the two ranks of the pair, and drops its own copies. Nothing is
// named in /dev/shm; the memory is gone once both ranks are.

import * as kmod from '../kmod/index.js';
import { GROUP_MAX_RANKS, groupBytes } from '../transport/ivcom/group-layout.js';
import { segmentBytes } from '../transport/ivcom/layout.js';
import type { GrantBroker } from './agent.js';

export class KmodGrantBroker implements GrantBroker {
  /**
   * Per local rank: [the agent's end, the rank's end (-1 once handed over)] of a SOCK_SEQPACKET
   * pair, made when the rank is about to be spawned: a large job never holds two fds for every
   * rank before it has started any.
   */
  private readonly pairs = new Map<number, [number, number]>();
  private readonly local: Set<number>;
  private readonly granted = new Set<string>();
  private readonly bytes: number;
  private closed = false;

  /** `ranks`: the ranks of this host, the only ones that can share memory with each other. */
  constructor(
    ranks: number[],
    private readonly jobId: string,
    ringBytes: number,
  ) {
    this.bytes = segmentBytes(ringBytes);
    this.local = new Set(ranks);
  }

  rankFd(rank: number): number | undefined {
    if (!this.local.has(rank) || this.closed) return undefined;
    let pair = this.pairs.get(rank);
    if (pair === undefined) {
      pair = kmod.socketPair();
      this.pairs.set(rank, pair);
    }
    return pair[1] >= 0 ? pair[1] : undefined;
  }

  spawned(rank: number): void {
    const pair = this.pairs.get(rank);
    if (pair !== undefined && pair[1] >= 0) {
      kmod.closeFd(pair[1]);
      pair[1] = -1;
    }
  }

  reissue(rank: number): number | undefined {
    if (!this.local.has(rank) || this.closed) return undefined;
    for (const fd of this.pairs.get(rank) ?? []) if (fd >= 0) kmod.closeFd(fd);
    const pair = kmod.socketPair();
    this.pairs.set(rank, [pair[0], -1]);
    return pair[1];
  }

  request(from: number, to: number): void {
    if (this.closed) return;
    const a = Math.min(from, to);
    const b = Math.max(from, to);
    const key = `${a}:${b}`;
    if (this.granted.has(key)) return;
    this.granted.add(key);
    // Co-residency is the plan's decision alone: only ranks of this host share its memory.
    if (!this.local.has(a) || !this.local.has(b)) return;
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

  /** Whether the host group was made (and pushed to every rank of the host). */
  private grouped = false;

  /**
   * The host group: one segment and a doorbell per rank of this host, made on the first request
   * and pushed at once to every rank of the host (as a pair's grant goes to both ranks), so this
   * broker keeps no copy.
   */
  requestGroup(rank: number): void {
    if (this.closed || this.grouped || !this.local.has(rank)) return;
    const ranks = [...this.local].sort((a, b) => a - b);
    // A rank asks only when ivrun chose the host group for a job of one host, which has at most
    // GROUP_MAX_RANKS ranks (launcher/ivrun.ts); one that asks anyway gets nothing.
    if (ranks.length < 2 || ranks.length > GROUP_MAX_RANKS) return;
    this.grouped = true;
    const fds = [kmod.segmentCreate(`ivcom-${this.jobId}-group`, groupBytes(ranks.length))];
    try {
      for (let i = 0; i < ranks.length; i++) fds.push(kmod.eventfdCreate());
      const what = Buffer.from(JSON.stringify({ group: ranks }));
      for (const r of ranks) {
        try {
          const pair = this.pairs.get(r);
          if (pair !== undefined) kmod.sendFds(pair[0], fds, what);
        } catch {
          // The rank is gone (EPIPE): its peers learn that from the supervisor.
        }
      }
    } finally {
      for (const fd of fds) kmod.closeFd(fd);
    }
  }

  private push(rank: number, fds: number[], what: { peer: number; bytes: number; low: boolean }): void {
    try {
      const pair = this.pairs.get(rank);
      if (pair !== undefined) kmod.sendFds(pair[0], fds, Buffer.from(JSON.stringify(what)));
    } catch {
      // The rank is gone (EPIPE): its peer will learn that from the supervisor, not from here.
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const p of this.pairs.values()) {
      for (const fd of p) if (fd >= 0) kmod.closeFd(fd);
    }
  }
}
