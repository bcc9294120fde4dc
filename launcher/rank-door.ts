// Where a host's agent takes back a rank that a wrapper cut off from the fds ivrun gave it
// (protocol.ts says why and what travels). One listening socket per host, on an abstract
// AF_UNIX name drawn at random: nothing on disk, gone with the agent. Each connection carries one
// request and gets one answer (the new fds, or why not), then it is closed.

import { randomBytes } from 'node:crypto';
import type * as Kmod from '../kmod/index.js';
import type { AttachReply, AttachRequest } from '../transport/bootstrap/protocol.js';

/** A connection that has not asked within this long is closed (a rank asks at once). */
const REQUEST_TIMEOUT_MS = 10_000;

/** What the agent answers a request with: the fds to hand over (closed here once sent), or why not. */
export type Admit = (req: AttachRequest) => { reply: AttachReply; fds: number[] };

export class RankDoor {
  private readonly fd: number;
  private readonly watcher: Kmod.FdWatcher;
  private readonly pending = new Set<{ close(): void }>();
  private closed = false;

  private constructor(
    private readonly kmod: typeof Kmod,
    readonly name: string,
    private readonly admit: Admit,
  ) {
    this.fd = kmod.unixListen(name);
    this.watcher = new kmod.FdWatcher(this.fd, () => this.acceptAll());
    this.watcher.unref();
    this.watcher.start();
  }

  /** Opens the door for job `jobId` on host `node`; undefined without the native addon. */
  static async open(jobId: string, node: number, admit: Admit): Promise<RankDoor | undefined> {
    let kmod: typeof Kmod;
    try {
      kmod = await import('../kmod/index.js');
    } catch {
      return undefined; // ranks started through a wrapper are told why they cannot come back
    }
    return new RankDoor(kmod, `ivcom-${jobId}-${node}-${randomBytes(8).toString('hex')}`, admit);
  }

  /** A stream socket pair: the agent's end and the rank's end of a new control channel. */
  streamPair(): [number, number] {
    return this.kmod.streamPair();
  }

  private acceptAll(): void {
    for (;;) {
      let c: number | null;
      try {
        c = this.kmod.unixAccept(this.fd);
      } catch {
        return; // EMFILE and the like: the rank's connect fails and it says so
      }
      if (c === null) return;
      this.serve(c);
    }
  }

  private serve(c: number): void {
    const { kmod } = this;
    const conn = {
      close: () => {
        clearTimeout(timer);
        w.close();
        kmod.closeFd(c);
        this.pending.delete(conn);
      },
    };
    const timer = setTimeout(conn.close, REQUEST_TIMEOUT_MS).unref();
    const w = new kmod.FdWatcher(c, () => {
      let m: Kmod.ReceivedGrant | null;
      try {
        m = kmod.recvFds(c);
      } catch {
        conn.close();
        return;
      }
      if (m === null) return;
      for (const fd of m.fds) kmod.closeFd(fd); // a request carries none
      if (!m.eof) this.answer(c, m.data);
      conn.close();
    });
    w.unref();
    w.start();
    this.pending.add(conn);
  }

  private answer(c: number, data: Uint8Array): void {
    let req: AttachRequest;
    try {
      req = JSON.parse(Buffer.from(data).toString('utf8')) as AttachRequest;
    } catch {
      this.send(c, { error: 'the request is not JSON' }, []);
      return;
    }
    const { reply, fds } = this.admit(req);
    try {
      this.send(c, reply, fds);
    } finally {
      for (const fd of fds) this.kmod.closeFd(fd);
    }
  }

  private send(c: number, reply: AttachReply, fds: number[]): void {
    try {
      this.kmod.sendFds(c, fds, Buffer.from(JSON.stringify(reply)));
    } catch {
      // The asker is gone already.
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.watcher.close();
    this.kmod.closeFd(this.fd);
    for (const p of [...this.pending]) p.close();
  }
}
