// The TCP fallback (netfront → bridge → netback in the Xen picture). One connection per ordered
// pair, opened lazily by the sender and used only in that direction: no connect races between
// two ranks that start talking at once, and a closing receiver never resets data it still owes.

import net from 'node:net';
import { AuthError, CorruptError, PeerLostError } from '../errors.js';
import { MAX_MESSAGE_BYTES } from '../wire.js';
import type { Capabilities, DestinationRequest, Endpoint, OutgoingMessage, Transport, Upcalls } from '../transport.js';
import { encodePrefix, FLAG_FIRST, FLAG_LAST, FrameReader, PREFIX_BYTES } from './framing.js';
import { clientHandshake, HANDSHAKE_TIMEOUT_MS, HandshakeRefused, serverHandshake } from './handshake.js';
import { RefusalLog } from './refusals.js';

export interface TcpOptions {
  rank: number;
  upcalls: Upcalls;
  /** Address to listen on (this rank's domain address). */
  host: string;
  /** Fragment size for large messages. */
  fragmentBytes?: number;
}

export interface TcpPeerAddress {
  host: string;
  port: number;
}

const EAGER = 64 * 1024;
/** The sender of an incoming connection whose handshake has not finished. */
const UNKNOWN_PEER = -1;
const FRAGMENT = 4 * 1024 * 1024;
// Queued bytes past which a send waits for 'drain': flow control without loss.
const HIGH_WATER = 8 * 1024 * 1024;

export class TcpTransport implements Transport {
  readonly caps: Capabilities;
  private readonly server: net.Server;
  private readonly endpoints = new Map<number, TcpEndpoint>();
  private readonly incoming = new Set<net.Socket>();
  private peers: TcpPeerAddress[] = [];
  /**
   * Unknown until the launcher's start message. Ranks get that message at slightly different
   * moments, so a peer may dial before this rank has it: such a connection waits for it
   * (bounded by the handshake timeout) instead of being refused.
   */
  secret: Buffer | undefined;
  private joined!: () => void;
  private readonly whenJoined = new Promise<void>((r) => (this.joined = r));
  private closed = false;
  /** Refused connections, said on stderr at a bounded rate (a stranger cannot flood the job's output). */
  private readonly refusals: RefusalLog;

  /** Connections refused by the handshake (observable for tests and diagnostics). */
  get refused(): number {
    return this.refusals.count;
  }

  constructor(readonly opts: TcpOptions) {
    this.caps = { name: 'tcp', eagerLimit: EAGER, maxFrame: opts.fragmentBytes ?? FRAGMENT, latencyClass: 'network' };
    this.server = net.createServer({ noDelay: true }, (s) => this.accept(s));
    this.refusals = new RefusalLog(opts.rank, (line) => process.stderr.write(line + '\n'));
  }

  /** Starts listening; resolves to the address peers should dial. */
  listen(): Promise<TcpPeerAddress> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen({ host: this.opts.host, port: 0, backlog: 1024 }, () => {
        this.server.off('error', reject);
        this.server.unref();
        const a = this.server.address() as net.AddressInfo;
        resolve({ host: this.opts.host, port: a.port });
      });
    });
  }

  /** The job's secret and the peers' addresses, from the launcher. */
  join(secret: Buffer, peers: TcpPeerAddress[]): void {
    this.secret = secret;
    this.peers = peers;
    this.joined();
  }

  endpoint(peer: number): Endpoint {
    let ep = this.endpoints.get(peer);
    if (ep === undefined) {
      const addr = this.peers[peer];
      if (addr === undefined) throw new PeerLostError(`rank ${this.opts.rank}: no address known for rank ${peer}`, { rank: this.opts.rank, peer });
      ep = new TcpEndpoint(this, peer, addr);
      this.endpoints.set(peer, ep);
    }
    return ep;
  }

  private accept(sock: net.Socket): void {
    if (this.closed) {
      sock.destroy();
      return;
    }
    sock.unref();
    this.incoming.add(sock);
    let from = UNKNOWN_PEER;
    this.countIncoming(from, 1);
    sock.on('close', () => {
      this.incoming.delete(sock);
      this.countIncoming(from, -1);
    });
    sock.on('error', () => {}); // reported through 'close' handling below
    const { rank } = this.opts;
    const who = `${sock.remoteAddress}:${sock.remotePort}`;
    const handshake = withTimeout(this.whenJoined, HANDSHAKE_TIMEOUT_MS, new HandshakeRefused('job not started', 'the job did not start in time')).then(() =>
      serverHandshake(sock, this.secret!, rank, this.peers.length),
    );
    handshake.then(
      (h) => {
        this.countIncoming(from, -1);
        from = h.from;
        this.countIncoming(from, 1);
        this.serve(sock, h.from, h.rest);
      },
      (err: Error) => {
        // A stranger: nothing it sent is delivered, and it is said at a bounded rate.
        sock.destroy();
        const reason = err instanceof HandshakeRefused ? err.reason : 'socket error';
        this.refusals.refused(reason, who, err.message);
      },
    );
  }

  /** Open incoming connections by sending rank (UNKNOWN_PEER: handshake still running). */
  private readonly incomingBy = new Map<number, number>();

  private countIncoming(peer: number, d: number): void {
    const n = (this.incomingBy.get(peer) ?? 0) + d;
    if (n > 0) this.incomingBy.set(peer, n);
    else this.incomingBy.delete(peer);
  }

  /**
   * Whether bytes from `peer` may still arrive: a connection from it is open (its close, after
   * its last byte, is reported through Upcalls.peerClosed), or one whose sender is not known yet.
   */
  mayStillDeliverFrom(peer: number): 'open' | 'unknown' | 'no' {
    if ((this.incomingBy.get(peer) ?? 0) > 0) return 'open';
    return (this.incomingBy.get(UNKNOWN_PEER) ?? 0) > 0 ? 'unknown' : 'no';
  }

  private serve(sock: net.Socket, from: number, rest: Buffer): void {
    const maxMessage = MAX_MESSAGE_BYTES;
    const upcalls = this.opts.upcalls;
    const allocate = upcalls.allocate ? (h: DestinationRequest) => upcalls.allocate!(h) : undefined;
    const reader = new FrameReader({ peer: from, maxMessage, maxFragment: this.caps.maxFrame, allocate }, (m) => upcalls.deliver(m));
    const onData = (chunk: Buffer) => {
      try {
        reader.feed(chunk);
      } catch (err) {
        sock.destroy();
        this.opts.upcalls.fail(
          new CorruptError(`rank ${this.opts.rank}: rank ${from} sent a malformed frame (${(err as Error).message}); closing that connection`, {
            rank: this.opts.rank,
            peer: from,
          }),
        );
      }
    };
    sock.on('data', onData);
    sock.on('close', () => {
      if (this.closed) return;
      if (!reader.idle) {
        this.opts.upcalls.fail(
          new PeerLostError(`rank ${this.opts.rank}: connection from rank ${from} closed in the middle of a message; did rank ${from} die?`, {
            rank: this.opts.rank,
            peer: from,
          }),
        );
      } else this.opts.upcalls.peerClosed?.(from);
    });
    if (rest.length > 0) onData(rest);
    sock.resume();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all([...this.endpoints.values()].map((e) => e.close()));
    this.server.close();
    for (const s of this.incoming) s.destroy();
    this.refusals.close();
  }

  get isClosed(): boolean {
    return this.closed;
  }
}

type Pending = { resolve(): void; reject(e: Error): void };

class TcpEndpoint implements Endpoint {
  readonly caps: Capabilities;
  private sock: net.Socket | undefined;
  private ready = false;
  /** Frames written before the handshake finished, in order. */
  private backlog: Array<{ chunk: Uint8Array; done?: (err?: Error | null) => void }> = [];
  private failure: Error | undefined;
  private backlogged = false;
  private readonly waiting = new Set<Pending>();
  private readonly frag: number;

  constructor(
    private readonly t: TcpTransport,
    readonly peer: number,
    private readonly addr: TcpPeerAddress,
  ) {
    this.caps = t.caps;
    this.frag = t.caps.maxFrame;
  }

  send(msg: OutgoingMessage): Promise<void> | undefined {
    if (this.failure) return Promise.reject(this.failure);
    if (this.sock === undefined) this.connect();
    const n = msg.byteLength;
    const h = { ctx: msg.ctx, source: msg.source, tag: msg.tag, codec: msg.codec, flags: FLAG_FIRST | FLAG_LAST, byteLength: n };
    if (n <= this.caps.eagerLimit) {
      // Eager: one copy into a frame the socket owns, so the caller's memory is free at once.
      const buf = Buffer.allocUnsafe(PREFIX_BYTES + n);
      encodePrefix(buf, 0, n, h);
      let off = PREFIX_BYTES;
      for (const p of msg.parts) {
        buf.set(p, off);
        off += p.byteLength;
      }
      this.write(buf);
      return this.sock!.writableLength > HIGH_WATER ? this.whenDrained() : undefined;
    }
    // Large: frames point into the caller's memory (no copy); the send settles once the last
    // byte is in the kernel, which is when the caller may reuse it.
    return new Promise<void>((resolve, reject) => {
      const entry: Pending = { resolve, reject };
      this.waiting.add(entry);
      let sent = 0;
      let partIdx = 0;
      let partOff = 0;
      while (sent < n || n === 0) {
        const fragLen = Math.min(this.frag, n - sent);
        const prefix = Buffer.allocUnsafe(PREFIX_BYTES);
        h.flags = (sent === 0 ? FLAG_FIRST : 0) | (sent + fragLen === n ? FLAG_LAST : 0);
        encodePrefix(prefix, 0, fragLen, h);
        this.write(prefix);
        let left = fragLen;
        while (left > 0) {
          const part = msg.parts[partIdx]!;
          const take = Math.min(left, part.byteLength - partOff);
          const last = sent + fragLen === n && left === take;
          this.write(
            part.subarray(partOff, partOff + take),
            last
              ? (err) => {
                  this.waiting.delete(entry);
                  if (err) reject(this.lost(err));
                  else resolve();
                }
              : undefined,
          );
          left -= take;
          partOff += take;
          if (partOff === part.byteLength) {
            partIdx++;
            partOff = 0;
          }
        }
        sent += fragLen;
        if (n === 0) break;
      }
    });
  }

  private write(chunk: Uint8Array, done?: (err?: Error | null) => void): void {
    if (!this.ready) {
      this.backlog.push({ chunk, done });
      return;
    }
    const sock = this.sock!;
    if (!this.corked) {
      // Batch every frame posted in this tick into one writev: a window of small sends costs
      // one syscall instead of one each.
      this.corked = true;
      sock.cork();
      process.nextTick(this.uncork);
    }
    sock.write(chunk, done);
  }

  private corked = false;
  private readonly uncork = (): void => {
    this.corked = false;
    this.sock?.uncork();
  };

  private whenDrained(): Promise<void> {
    return new Promise((resolve, reject) => {
      const entry: Pending = { resolve, reject };
      this.waiting.add(entry);
      this.sock!.once('drain', () => {
        this.waiting.delete(entry);
        resolve();
      });
    });
  }

  private connect(): void {
    const { rank } = this.t.opts;
    const secret = this.t.secret!;
    const sock = net.connect({ host: this.addr.host, port: this.addr.port, noDelay: true });
    this.sock = sock;
    sock.unref();
    sock.on('error', (err) => this.fail(err));
    sock.on('close', () => {
      if (!this.t.isClosed) this.fail(new Error('connection closed by the peer'));
    });
    sock.once('connect', () => {
      clientHandshake(sock, secret, rank, this.peer).then(
        () => {
          this.ready = true;
          sock.cork();
          for (const { chunk, done } of this.backlog) sock.write(chunk, done);
          this.backlog = [];
          sock.uncork();
        },
        (err: Error) => {
          // A peer that left mid-handshake is lost, not an impostor.
          this.fail(
            sock.destroyed || /closed during handshake/.test(err.message)
              ? new PeerLostError(`rank ${rank}: rank ${this.peer} closed the connection during the handshake; it probably finished or died`, { rank, peer: this.peer })
              : new AuthError(`rank ${rank}: handshake with rank ${this.peer} failed: ${err.message}`, { rank, peer: this.peer }),
          );
          sock.destroy();
        },
      );
    });
  }

  private lost(err: Error): Error {
    if (err instanceof AuthError || err instanceof PeerLostError) return err;
    const { rank } = this.t.opts;
    return new PeerLostError(`rank ${rank}: sending to rank ${this.peer} failed (${err.message}); the peer probably exited or died`, {
      rank,
      peer: this.peer,
      cause: err,
    });
  }

  private fail(err: Error): void {
    if (this.failure) return;
    this.failure = this.lost(err);
    const pending = [...this.waiting];
    this.waiting.clear();
    this.backlogged = this.backlog.length > 0;
    for (const b of this.backlog) b.done?.(this.failure);
    this.backlog = [];
    for (const p of pending) p.reject(this.failure);
    // Only an owed message makes this an error worth raising; an idle link to a peer that
    // finished is just closed. Owed means: a send still waiting, bytes still queued in the
    // socket, or frames accepted before the handshake finished.
    const owed = pending.length > 0 || this.backlogged || (this.sock !== undefined && this.sock.writableLength > 0);
    if (owed) this.t.opts.upcalls.fail(this.failure);
  }

  /** Waits until everything accepted has reached the kernel, then half-closes. */
  close(): Promise<void> {
    const sock = this.sock;
    if (sock === undefined || this.failure) {
      sock?.destroy();
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const finish = () => {
        sock.end(() => resolve());
        sock.once('error', () => resolve());
      };
      if (this.ready && sock.writableLength === 0) finish();
      else {
        const wait = () => {
          if (this.failure) resolve();
          else if (this.ready && sock.writableLength === 0 && this.backlog.length === 0) finish();
          else setTimeout(wait, 1).unref();
        };
        wait();
      }
    });
  }
}

function withTimeout(p: Promise<void>, ms: number, err: Error): Promise<void> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(err), ms);
    t.unref();
    p.then(() => {
      clearTimeout(t);
      resolve();
    });
  });
}
