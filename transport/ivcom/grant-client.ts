// The rank's side of the grant channel: an inherited SOCK_SEQPACKET socket on which ivrun
// pushes (segment, my doorbell, peer's doorbell) triples. Requests go up the bootstrap channel.
// What arrives is checked before it is used: the sender is trusted, but a malformed grant must
// become an error, not a crash.

import * as kmod from '../../kmod/index.js';
import type { Grant, GrantSource } from './grant.js';
import { GROUP_MAX_RANKS, type GroupGrant } from './group-layout.js';

export class GrantClient implements GrantSource {
  private cb: ((g: Grant) => void) | undefined;
  private readonly watcher: kmod.FdWatcher;
  private early: Grant[] = [];
  private groupCb: ((g: GroupGrant) => void) | undefined;

  constructor(
    private readonly fd: number,
    private readonly size: number,
    private readonly ask: (peer: number) => void,
    private readonly onError: (err: Error) => void,
    private readonly askGroup?: () => void,
  ) {
    this.watcher = new kmod.FdWatcher(fd, () => this.drain());
    this.watcher.unref();
    this.watcher.start();
  }

  request(peer: number): void {
    this.ask(peer);
  }

  requestGroup(): void {
    this.askGroup?.();
  }

  onGroup(cb: (g: GroupGrant) => void): void {
    this.groupCb = cb;
  }

  onGrant(cb: (g: Grant) => void): void {
    this.cb = cb;
    const queued = this.early;
    this.early = [];
    for (const g of queued) cb(g);
  }

  private drain(): void {
    for (;;) {
      let m: kmod.ReceivedGrant | null;
      try {
        m = kmod.recvFds(this.fd);
      } catch (err) {
        this.onError(err as Error);
        return;
      }
      if (m === null) return;
      if (m.eof) {
        this.close();
        return;
      }
      const group = this.parseGroup(m);
      if (group !== undefined) {
        if (this.groupCb !== undefined) this.groupCb(group);
        else for (const fd of m.fds) kmod.closeFd(fd);
        continue;
      }
      const g = this.parse(m);
      if (g === undefined) {
        for (const fd of m.fds) kmod.closeFd(fd);
        this.onError(new Error(`malformed grant from ivrun (${m.fds.length} fds, ${m.data.length} bytes)`));
        continue;
      }
      if (this.cb) this.cb(g);
      else this.early.push(g);
    }
  }

  /** A host group grant: `{ group: [world ranks, ascending] }` with the segment and one doorbell per rank. */
  private parseGroup(m: kmod.ReceivedGrant): GroupGrant | undefined {
    let d: { group?: unknown };
    try {
      d = JSON.parse(m.data.toString('utf8'));
    } catch {
      return undefined;
    }
    const ranks = d?.group;
    if (!Array.isArray(ranks) || ranks.length < 2 || ranks.length > GROUP_MAX_RANKS || m.fds.length !== ranks.length + 1) return undefined;
    for (let i = 0; i < ranks.length; i++) {
      const r: unknown = ranks[i];
      if (typeof r !== 'number' || !Number.isInteger(r) || r < 0 || r >= this.size || (i > 0 && r <= ranks[i - 1])) return undefined;
    }
    return { ranks: ranks as number[], segmentFd: m.fds[0]!, bellFds: m.fds.slice(1) };
  }

  private parse(m: kmod.ReceivedGrant): Grant | undefined {
    if (m.fds.length !== 3) return undefined;
    let d: { peer?: unknown; bytes?: unknown; low?: unknown };
    try {
      d = JSON.parse(m.data.toString('utf8'));
    } catch {
      return undefined;
    }
    const { peer, bytes, low } = d;
    if (typeof peer !== 'number' || !Number.isInteger(peer) || peer < 0 || peer >= this.size) return undefined;
    if (typeof bytes !== 'number' || !Number.isSafeInteger(bytes) || bytes <= 0 || typeof low !== 'boolean') return undefined;
    return { peer, bytes, low, segmentFd: m.fds[0]!, localBellFd: m.fds[1]!, peerBellFd: m.fds[2]! };
  }

  close(): void {
    this.watcher.close();
  }
}
