// The rank's side of the grant channel: an inherited SOCK_SEQPACKET socket on which ivrun
// pushes (segment, my doorbell, peer's doorbell) triples. Requests go up the bootstrap channel.
// What arrives is checked before it is used: the sender is trusted, but a malformed grant must
// become an error, not a crash.

import * as kmod from '../../kmod/index.js';
import type { Grant, GrantSource } from './grant.js';

export class GrantClient implements GrantSource {
  private cb: ((g: Grant) => void) | undefined;
  private readonly watcher: kmod.FdWatcher;
  private early: Grant[] = [];

  constructor(
    private readonly fd: number,
    private readonly size: number,
    private readonly ask: (peer: number) => void,
    private readonly onError: (err: Error) => void,
  ) {
    this.watcher = new kmod.FdWatcher(fd, () => this.drain());
    this.watcher.unref();
    this.watcher.start();
  }

  request(peer: number): void {
    this.ask(peer);
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
