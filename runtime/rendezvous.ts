// Rendezvous for large messages: above a transport's eager limit a send only announces the
// message (RTS: its size, codec and, for single copy, where its bytes are), and the data moves
// once a receive has matched it, straight into that receive's destination. Nothing large is ever
// buffered at a receiver that has not asked for it, so a slow receiver costs the sender a pending
// promise, not the receiver memory; and a message taken with recvInto lands in the caller's
// buffer without a staging copy.
//
//   sender                                receiver
//   RTS {id, codec, bytes, address[, crc]} ──▶ queued and matched like any message (order, wildcards)
//                                         matched: single copy (CrossMemory.read) ──▶ FIN {id}
//                                         or shared with the sender (shared-copy.ts):  ◀── HELP …
//                                         or, when not allowed:  ◀── CTS {id}
//   DATA {id} (the bytes, streamed) ──▶   assembled in the destination (Upcalls.allocate)
//   send settles on FIN, or once DATA is written.
//
// Control messages travel as frames with their own codec numbers (codec-ids.ts), in the same
// channel as the data messages, so an RTS keeps its place among eager messages (non-overtaking).
// With --verify (verify.ts) the RTS also carries the CRC-32C of the sender's bytes, checked once
// they have landed, however they came (single copy or streamed).

import type { Endpoint, IncomingMessage, OutgoingMessage } from '../transport/transport.js';
import type { CrossMemory } from '../transport/cma.js';
import { MAX_MESSAGE_BYTES, readU32, writeU32 } from '../transport/wire.js';
import { CorruptError, NoMemoryError, PeerLostError } from './errors.js';
import { Codec, CODEC_MAX } from './codec-ids.js';
import type { Envelope, Request } from './match.js';
import type { StagingPool } from './staging.js';
import { checksumError, type Checksum } from './verify.js';
import { SharedCopy, type ReceiveOutcome } from './shared-copy.js';

/** RTS payload: u32 id, u8 codec, 3 bytes 0, u64 byteLength, u64 address (0: no single copy). */
const RTS_BYTES = 24;
/** With --verify: the RTS above, then u32 CRC-32C of the message's bytes. */
const RTS_VERIFIED_BYTES = 28;
const TWO32 = 4294967296;
/** Ids are carried in the tag field (i32) of CTS, FIN and DATA frames. */
const ID_MASK = 0x7fffffff;
const NO_BYTES = new Uint8Array(0);

/** The size of the message an RTS announces (what probe reports). */
export function announcedBytes(rts: Uint8Array): number {
  return readU32(rts, 8) + readU32(rts, 12) * TWO32;
}

interface PendingSend {
  ep: Endpoint;
  dest: number;
  ctx: number;
  tag: number;
  bytes: Uint8Array;
  resolve: () => void;
  reject: (err: Error) => void;
}

interface Pull {
  req: Request;
  /** The message as it will be delivered: its payload is the destination being filled. */
  env: IncomingMessage;
  /** Its announcement (with --verify, the checksum to find once the bytes have landed). */
  rts: Uint8Array;
}

export interface RendezvousHost {
  readonly rank: number;
  readonly staging: StagingPool;
  /** The endpoint that carries traffic to a world rank (never self: self-sends stay eager). */
  endpointTo(peer: number): Endpoint;
  /** `told`: an operation was already rejected with it. */
  fail(err: Error, told?: boolean): void;
}

export class Rendezvous {
  private nextId = 1;
  /** Sends announced and not yet taken, by id. */
  private readonly sends = new Map<number, PendingSend>();
  /** Receives matched to an RTS whose bytes are being streamed, by source * 2^31 + id. */
  private readonly pulls = new Map<number, Pull>();
  private readonly rtsBytes: number;
  /** Copies both ranks of a co-resident pair take part in (with single copy only). */
  private readonly shared: SharedCopy<Pull> | undefined;

  constructor(
    private readonly host: RendezvousHost,
    /** Single copy between co-resident ranks, when the build and the job allow it. */
    private readonly cma: CrossMemory | undefined,
    /** --verify: the checksum announced with every large message and checked when it lands. */
    private readonly verify?: Checksum,
  ) {
    this.rtsBytes = verify === undefined ? RTS_BYTES : RTS_VERIFIED_BYTES;
    this.shared =
      cma === undefined
        ? undefined
        : new SharedCopy<Pull>(cma, {
            rank: host.rank,
            post: (peer, id, codec, payload) =>
              this.post(host.endpointTo(peer), 0, id, codec === 'help' ? Codec.Help : Codec.Copied, payload, undefined),
            corrupt: (peer, what) => this.corrupt(peer, what),
          });
  }

  /** Announces a large message; settles when the receiver has taken its bytes. */
  send(ep: Endpoint, dest: number, ctx: number, tag: number, codec: number, bytes: Uint8Array): Promise<void> {
    const id = this.nextId;
    this.nextId = (id + 1) & ID_MASK || 1;
    const rts = new Uint8Array(this.rtsBytes);
    writeU32(rts, 0, id);
    rts[4] = codec;
    writeU32(rts, 8, bytes.byteLength % TWO32);
    writeU32(rts, 12, Math.floor(bytes.byteLength / TWO32));
    if (this.cma?.allowed(dest)) {
      const a = this.cma.address(bytes);
      writeU32(rts, 16, Number(a & 0xffffffffn));
      writeU32(rts, 20, Number(a >> 32n));
    }
    // From the sender's memory, at the moment of the send: the bytes the receiver must end up with.
    if (this.verify !== undefined) writeU32(rts, RTS_BYTES, this.verify(bytes) >>> 0);
    return new Promise<void>((resolve, reject) => {
      this.sends.set(id, { ep, dest, ctx, tag, bytes, resolve, reject });
      this.post(ep, ctx, tag, Codec.Rts, rts, reject);
    });
  }

  /**
   * A receive matched an RTS (`env`): choose the destination and fetch the bytes. The receive
   * completes later, with the message as if it had arrived whole.
   */
  pull(req: Request, env: Envelope & { ctx?: number }): void {
    const rts = env.payload;
    const source = env.source;
    if (rts.byteLength !== this.rtsBytes || rts[4]! > CODEC_MAX || rts[5]! | rts[6]! | rts[7]!) {
      this.host.fail(this.corrupt(source, 'malformed announcement of a large message'));
      return;
    }
    const id = readU32(rts, 0);
    const n = announcedBytes(rts);
    const address = BigInt(readU32(rts, 16)) | (BigInt(readU32(rts, 20)) << 32n);
    if (id === 0 || id > ID_MASK || !Number.isSafeInteger(n) || n > MAX_MESSAGE_BYTES) {
      this.host.fail(this.corrupt(source, `announcement id ${id}, ${n} bytes`));
      return;
    }
    let dest: Uint8Array;
    try {
      dest = this.destination(req, n);
    } catch (cause) {
      // The message was matched and is dropped here: release the sender (as if taken), and
      // report the failure where it happened, to the receive.
      this.post(this.host.endpointTo(source), 0, id, Codec.Fin, NO_BYTES, undefined);
      req.fail?.(
        new NoMemoryError(
          `rank ${this.host.rank}: cannot allocate ${n} bytes for a message from rank ${source} (${(cause as Error)?.message}); receive it into a buffer of your own with recvInto, or have the sender send less at a time`,
          { rank: this.host.rank, peer: source, cause },
        ),
      );
      return;
    }
    const msg: IncomingMessage = { ctx: env.ctx ?? 0, source, tag: env.tag, codec: rts[4]!, payload: dest, seq: env.seq };
    const pull: Pull = { req, env: msg, rts };
    if (address !== 0n && this.cma !== undefined) {
      const ep = this.host.endpointTo(source);
      let copied: boolean;
      if (this.shared !== undefined && this.shared.canShare(ep, source, n)) {
        let outcome: ReceiveOutcome;
        try {
          outcome = this.shared.receive(ep, source, id, address, dest, pull);
        } catch (err) {
          this.host.fail(err as Error);
          return;
        }
        if (outcome === 'waiting') return; // control() finishes it on COPIED
        if (outcome === 'settled') {
          this.landed(pull);
          return;
        }
        copied = outcome === 'done';
      } else {
        copied = this.cma.read(source, address, dest);
      }
      if (copied) {
        this.post(ep, 0, id, Codec.Fin, NO_BYTES, undefined);
        this.landed(pull);
        return;
      }
    }
    this.pulls.set(source * (ID_MASK + 1) + id, pull);
    this.post(this.host.endpointTo(source), 0, id, Codec.Cts, NO_BYTES, undefined);
  }

  /** Upcall from a transport: where DATA `id` from `source` goes (undefined: not ours). */
  placeData(source: number, id: number, byteLength: number): Uint8Array | undefined {
    const p = this.pulls.get(source * (ID_MASK + 1) + id);
    return p !== undefined && p.env.payload.byteLength === byteLength ? p.env.payload : undefined;
  }

  /** A control frame arrived (CTS, FIN or DATA; an RTS goes through matching instead). */
  control(m: IncomingMessage): void {
    const id = m.tag;
    switch (m.codec) {
      case Codec.Data: {
        const key = m.source * (ID_MASK + 1) + id;
        const p = this.pulls.get(key);
        if (p === undefined || m.payload.byteLength !== p.env.payload.byteLength) {
          this.host.fail(this.corrupt(m.source, `data for unknown transfer ${id}`));
          return;
        }
        this.pulls.delete(key);
        // Placed by placeData unless the transport had to assemble it elsewhere.
        if (m.payload !== p.env.payload) p.env.payload.set(m.payload);
        this.landed(p);
        return;
      }
      case Codec.Help: {
        const s = this.sends.get(id);
        if (s === undefined || s.dest !== m.source || this.shared === undefined) {
          this.host.fail(this.corrupt(m.source, `copy request for unknown transfer ${id}`));
          return;
        }
        try {
          if (!this.shared.help(s.ep, m.source, id, m.payload, s.bytes)) return;
        } catch (err) {
          this.host.fail(err as Error);
          return;
        }
        this.sends.delete(id);
        s.resolve();
        return;
      }
      case Codec.Copied: {
        const ep = this.host.endpointTo(m.source);
        let r: ReturnType<SharedCopy<Pull>['copied']>;
        try {
          if (this.shared === undefined) throw this.corrupt(m.source, `copy report for unknown transfer ${id}`);
          r = this.shared.copied(ep, m.source, id, m.payload);
        } catch (err) {
          this.host.fail(err as Error);
          return;
        }
        if (r === undefined) return;
        if (!r.settled) this.post(ep, 0, id, Codec.Fin, NO_BYTES, undefined);
        this.landed(r.item);
        return;
      }
      case Codec.Cts:
      case Codec.Fin: {
        const s = this.sends.get(id);
        if (s === undefined || s.dest !== m.source) {
          this.host.fail(this.corrupt(m.source, `${m.codec === Codec.Cts ? 'clear-to-send' : 'completion'} for unknown transfer ${id}`));
          return;
        }
        this.sends.delete(id);
        if (m.codec === Codec.Fin) {
          s.resolve();
          return;
        }
        const data: OutgoingMessage = { ctx: s.ctx, source: this.host.rank, tag: id, codec: Codec.Data, parts: [s.bytes], byteLength: s.bytes.byteLength };
        let r: Promise<void> | undefined;
        try {
          r = s.ep.send(data);
        } catch (err) {
          s.reject(err as Error);
          return;
        }
        if (r === undefined) s.resolve();
        else r.then(s.resolve, s.reject);
        return;
      }
      default:
        this.host.fail(this.corrupt(m.source, `control frame with codec ${m.codec}`));
    }
  }

  /**
   * `peer` closed its end in order (finalized or exited): what was announced to it and not taken
   * never will be, and data it was to stream will not come. Those operations reject, naming it.
   */
  peerClosed(peer: number): void {
    const rank = this.host.rank;
    for (const [id, s] of this.sends) {
      if (s.dest !== peer) continue;
      this.sends.delete(id);
      s.reject(
        new PeerLostError(
          `rank ${rank}: rank ${peer} finalized or exited without receiving the ${s.bytes.byteLength}-byte message sent to it with tag ${s.tag}; it was not delivered`,
          { rank, peer },
        ),
      );
    }
    const lost = (p: Pull) =>
      p.req.fail?.(
        new PeerLostError(`rank ${rank}: rank ${peer} closed its end before sending the ${p.env.payload.byteLength}-byte message this receive matched`, {
          rank,
          peer,
        }),
      );
    const sharing = this.shared?.drop(peer);
    if (sharing !== undefined) lost(sharing);
    for (const [key, p] of this.pulls) {
      if (p.env.source !== peer) continue;
      this.pulls.delete(key);
      lost(p);
    }
  }

  /** Every byte of a pulled message is in its destination: complete its receive. */
  private landed(p: Pull): void {
    if (this.intact(p.req, p.env, p.rts)) p.req.complete(p.env);
  }

  /**
   * With --verify: whether the landed bytes are those the sender announced. If not, the receive
   * rejects with ERR_IVCOM_CORRUPT and so does everything else (the peer cannot be trusted).
   */
  private intact(req: Request, msg: IncomingMessage, rts: Uint8Array): boolean {
    if (this.verify === undefined || this.verify(msg.payload) >>> 0 === readU32(rts, RTS_BYTES)) return true;
    const err = checksumError(this.host.rank, msg.source, `a ${msg.payload.byteLength}-byte message (tag ${msg.tag})`);
    req.fail?.(err);
    this.host.fail(err, req.fail !== undefined);
    return false;
  }

  /** Large sends announced and not yet taken, for a rank's report of what it waits for. */
  *waitingSends(): Generator<{ dest: number; ctx: number; tag: number; bytes: number }> {
    for (const s of this.sends.values()) yield { dest: s.dest, ctx: s.ctx, tag: s.tag, bytes: s.bytes.byteLength };
  }

  /** The job failed: nothing announced or pulled will complete. */
  failAll(err: Error): void {
    const sends = [...this.sends.values()];
    const pulls = [...this.pulls.values()];
    for (const peer of this.shared?.peers() ?? []) {
      const p = this.shared!.drop(peer);
      if (p !== undefined) pulls.push(p);
    }
    this.sends.clear();
    this.pulls.clear();
    for (const s of sends) s.reject(err);
    for (const p of pulls) p.req.fail?.(err);
  }

  /** Where a matched large message goes: the receive's own buffer when it fits, else staging. */
  private destination(req: Request, n: number): Uint8Array {
    const into = req.into;
    if (into !== undefined && n <= into.byteLength) return n === into.byteLength ? into : into.subarray(0, n);
    // recv (the bytes become the result), or a buffer too small (truncation is reported once
    // the message has been consumed, as for an eager message).
    return this.host.staging.take(n) ?? new Uint8Array(n);
  }

  private post(ep: Endpoint, ctx: number, tag: number, codec: number, payload: Uint8Array, reject: ((e: Error) => void) | undefined): void {
    const msg: OutgoingMessage = { ctx, source: this.host.rank, tag, codec, parts: [payload], byteLength: payload.byteLength };
    try {
      // A control frame is small and copied at once; if it waits for ring space, it waits in order.
      ep.send(msg)?.catch((err: Error) => reject?.(err));
    } catch (err) {
      if (reject !== undefined) reject(err as Error);
      else this.host.fail(err as Error);
    }
  }

  private corrupt(peer: number, what: string): Error {
    return new CorruptError(`rank ${this.host.rank}: rank ${peer} broke the large-message protocol (${what}); the job cannot trust what that peer sends`, {
      rank: this.host.rank,
      peer,
    });
  }
}
