// The consumer half of a channel: reads the peer's records out of its ring — every index, length
// and header field read once into private memory and checked before use (the segment is hostile
// input) — reassembles fragmented messages, and delivers them. The producer half is ring-tx.ts;
// the channel that owns both, channel.ts (its header explains the ordering).

import { Buffer } from 'node:buffer';
import type { DestinationRequest, IncomingMessage } from '../transport.js';
import { NoMemoryError } from '../errors.js';
import { readHeaderWords, type HeaderWords } from '../wire.js';
import { FRAG_FIRST, FRAG_LAST, FRAG_MASK, NEXT_RESERVE_BYTES, RECORD_HEADER_BYTES, RECORD_MAGIC, wordAt } from './layout.js';
import { copyBytes, RingHalf, TINY_COPY, type HalfOptions, type RingHost, type RingView } from './ring.js';

// What allocate() is told about the incoming message (already bounds-checked): the transports' one type.
export type { DestinationRequest };

/**
 * Payloads up to this size are carved out of a shared slab (one ArrayBuffer per 64 KiB): a fresh
 * ArrayBuffer costs ~0.5 µs + page faults, a slab view ~0.1 µs (apps/bench/ring-micro.ts copy).
 * Up to TINY_MAX V8 allocates typed arrays on its heap, as cheap as a view and retains nothing.
 */
const SMALL_MAX = 4096;
const TINY_MAX = 64;
const SLAB_BYTES = 64 * 1024;

export interface RxOptions extends HalfOptions {
  maxCtx: number;
  maxCodec: number;
  maxMessage: number;
  /** The consumer publishes its index at least every this many bytes while draining a batch. */
  releaseBytes: number;
  deliver: (msg: IncomingMessage) => void;
  allocate?: (h: DestinationRequest) => Uint8Array | undefined;
}

export class RxRing extends RingHalf {
  private readonly maxCtx: number;
  private readonly maxCodec: number;
  private readonly maxMessage: number;
  private readonly releaseBytes: number;
  private readonly deliverCb: (msg: IncomingMessage) => void;
  private readonly allocateCb: ((h: DestinationRequest) => Uint8Array | undefined) | undefined;
  /** The record header being read, copied out of the segment (reused: no allocation per record). */
  private readonly hdr: HeaderWords = { ctx: 0, source: 0, tag: 0, codec: 0, flags: 0, reserved: 0, total: 0 };
  /** What allocate() is asked with, refilled per message (Upcalls.allocate: valid during the call). */
  private readonly asked: DestinationRequest = { ctx: 0, source: 0, tag: 0, codec: 0, byteLength: 0 };
  /** Private consumer index; never read back from the segment. int32, as TxRing's prod says why. */
  private cons = 0;
  private publishedCons = 0;
  /** We set dataWanted and have not withdrawn it. */
  private dataArmed = false;
  /** drain() is on the stack (a deliver() callback polled again): no re-entry. */
  private draining = false;
  /**
   * The last drain() stopped because nothing was published at its index (not on its budget, a
   * failure or re-entry): everything published before it started has been delivered.
   */
  emptied = false;
  // Message being reassembled from fragments.
  private cur: Uint8Array | undefined;
  private curReceived = 0;
  private curTotal = 0;
  private curCtx = 0;
  private curTag = 0;
  private curCodec = 0;
  private slab: ArrayBuffer = new ArrayBuffer(SLAB_BYTES);
  private slabOff = 0;

  constructor(v: RingView, host: RingHost, o: RxOptions) {
    super(v, host, o);
    this.maxCtx = o.maxCtx;
    this.maxCodec = o.maxCodec;
    this.maxMessage = o.maxMessage;
    this.releaseBytes = o.releaseBytes;
    this.deliverCb = o.deliver;
    this.allocateCb = o.allocate;
  }

  /** Bytes consumed so far (mod 2^32): tells whether a drain moved at all. */
  get consumed(): number {
    return this.cons;
  }

  /** Spinning again: the producer need not ring. */
  unarm(): void {
    if (!this.dataArmed) return;
    // Clearing races harmlessly with the producer's exchange (worst case one spurious ring).
    this.dataArmed = false;
    Atomics.store(this.i32, this.v.dataWantedW, 0);
  }

  /** About to sleep: ask for a doorbell on new data. */
  arm(): void {
    this.dataArmed = true;
    // seq-cst store, then drain()'s seq-cst load of the magic word: StoreLoad, so a record
    // published before the producer could see this flag is found by the re-check that follows.
    Atomics.store(this.i32, this.v.dataWantedW, 1);
  }

  /** The channel failed: a message half reassembled is dropped. */
  drop(): void {
    this.cur = undefined;
  }

  /**
   * Delivers the records published at the time of the call (at most one ring's worth, so a
   * producer that never stops cannot keep it here). Never throws on bad data.
   */
  drain(): number {
    this.emptied = false;
    if (this.draining) return 0;
    this.draining = true;
    try {
      return this.drainOnce();
    } finally {
      this.draining = false;
    }
  }

  /**
   * The head record, taken without the deliver upcall, when it is a whole message of at most
   * SMALL_MAX bytes with this ctx and tag (a collective step waiting for exactly that message).
   * The look at the head only decides whether to take it: drainOnce then reads and checks every
   * header word again, once, and the caller compares what it got with what it asked for.
   */
  take(ctx: number, tag: number): IncomingMessage | undefined {
    if (this.draining || this.cur !== undefined) return undefined;
    let off = this.cons & this.mask;
    if (this.cap - off < RECORD_HEADER_BYTES) off = 0;
    const w = wordAt(this.v.base + off);
    // Acquire, as in drainOnce.
    if (Atomics.load(this.i32, w + 1) !== RECORD_MAGIC) return undefined;
    const h = this.hdr;
    readHeaderWords(this.i32, w + 2, h);
    if (h.ctx !== ctx || h.tag !== tag || (h.flags & FRAG_MASK) !== FRAG_MASK || h.total > SMALL_MAX) return undefined;
    this.draining = true;
    this.taking = true;
    try {
      this.drainOnce(1);
    } finally {
      this.draining = false;
      this.taking = false;
    }
    const m = this.taken;
    this.taken = undefined;
    return m;
  }

  /** take() is running: the record drainOnce completes goes to `taken`, not to the deliver upcall. */
  private taking = false;
  private taken: IncomingMessage | undefined = undefined;

  /** Delivers up to `records` records (-1: as many as are published, up to a ring's worth). */
  private drainOnce(records = -1): number {
    let cons = this.cons;
    const cap = this.cap;
    const i32 = this.i32;
    const u8 = this.u8;
    const base = this.v.base;
    let budget = cap;
    let delivered = 0;
    try {
      while (budget > 0 && records-- !== 0) {
        let off = cons & this.mask;
        const toEnd = cap - off;
        // Implicit wrap: no header fits in the tail, so the producer put the record at the start.
        const skip = toEnd < RECORD_HEADER_BYTES ? toEnd : 0;
        if (skip !== 0) off = 0;
        const w = wordAt(base + off);
        // Acquire: pairs with the producer's Atomics.store of this magic word, the last word it
        // writes of a record. Zero: nothing published here yet (the producer clears it first).
        const magic = Atomics.load(i32, w + 1);
        if (magic === 0) {
          this.emptied = true;
          break;
        }
        if (magic !== RECORD_MAGIC) return this.corruptAt(cons, 'bad record magic', delivered);
        cons = (cons + skip) | 0;
        // Every other header word read exactly once into a local, after the magic.
        const len = i32[w]! >>> 0;
        const h = this.hdr;
        readHeaderWords(i32, w + 2, h);
        const { ctx, source, tag, codec, flags, total } = h;
        // A record and the space the producer keeps behind it fit in the ring (len ≤ 2^32: the
        // sum cannot overflow a double).
        if (RECORD_HEADER_BYTES + len + NEXT_RESERVE_BYTES > cap) {
          return this.corruptAt(cons, `record of ${len} bytes cannot fit a ${cap}-byte ring`, delivered);
        }
        if (source !== this.peer) return this.corruptAt(cons, `source ${source}`, delivered);
        if (ctx > this.maxCtx) return this.corruptAt(cons, `ctx ${ctx}`, delivered);
        if (codec > this.maxCodec) return this.corruptAt(cons, `codec ${codec}`, delivered);
        if (h.reserved !== 0 || (flags & ~FRAG_MASK) !== 0) {
          return this.corruptAt(cons, `flags 0x${(flags | (h.reserved << 8)).toString(16)}`, delivered);
        }
        if (total > Number.MAX_SAFE_INTEGER) return this.corruptAt(cons, 'message length above 2^53', delivered);
        const rec = RECORD_HEADER_BYTES + ((len + 7) & ~7); // len ≤ cap ≤ 2^30: no overflow
        const dataPos = (off + RECORD_HEADER_BYTES) & this.mask;

        let dest: Uint8Array;
        let destOff: number;
        if (flags & FRAG_FIRST) {
          if (this.cur !== undefined) return this.corruptAt(cons, 'new message inside a fragmented one', delivered);
          if (total > this.maxMessage) {
            return this.corruptAt(cons, `message of ${total} bytes exceeds the limit ${this.maxMessage}`, delivered);
          }
          if (flags & FRAG_LAST ? len !== total : len === 0 || len >= total) {
            return this.corruptAt(cons, `first fragment of ${len} bytes for a ${total}-byte message`, delivered);
          }
          let d: Uint8Array | undefined;
          if (this.allocateCb !== undefined && total > SMALL_MAX) {
            const a = this.asked;
            a.ctx = ctx;
            a.source = source;
            a.tag = tag;
            a.codec = codec;
            a.byteLength = total;
            d = this.allocateCb(a);
            if (d !== undefined && (!(d instanceof Uint8Array) || d.byteLength !== total)) d = undefined;
          }
          d ??= this.alloc(total);
          if (d === undefined) return delivered;
          dest = d;
          destOff = 0;
          if (!(flags & FRAG_LAST)) {
            this.cur = d;
            this.curReceived = 0;
            this.curTotal = total;
            this.curCtx = ctx;
            this.curTag = tag;
            this.curCodec = codec;
          }
        } else {
          const c = this.cur;
          if (c === undefined) return this.corruptAt(cons, 'fragment without a first fragment', delivered);
          if (total !== this.curTotal || ctx !== this.curCtx || tag !== this.curTag || codec !== this.curCodec) {
            return this.corruptAt(cons, 'fragment header differs from its first fragment', delivered);
          }
          const end = this.curReceived + len;
          if (flags & FRAG_LAST ? end !== total : len === 0 || end >= total) {
            return this.corruptAt(cons, `fragment ends at ${end} of a ${total}-byte message`, delivered);
          }
          dest = c;
          destOff = this.curReceived;
        }

        // Copy out (the ring space is reused as soon as cons moves), in two pieces at the end.
        if (len <= TINY_COPY && dataPos + len <= cap) {
          // A byte loop beats subarray()+set() for tiny copies (no view object, no call: ring.ts).
          const s = base + dataPos;
          for (let i = 0; i < len; i++) dest[destOff + i] = u8[s + i]!;
        } else if (len > 0) {
          const n1 = len < cap - dataPos ? len : cap - dataPos;
          copyBytes(this.nativeCopy, dest, destOff, u8, base + dataPos, n1);
          if (len > n1) copyBytes(this.nativeCopy, dest, destOff + n1, u8, base, len - n1);
        }
        cons = (cons + rec) | 0;
        budget -= skip + rec;
        this.cons = cons; // private state first: a throwing deliver() cannot cause a re-delivery
        if (((cons - this.publishedCons) >>> 0) >= this.releaseBytes) this.publishCons(cons);

        if (flags & FRAG_LAST) {
          this.cur = undefined;
          delivered++;
          if (this.taking) {
            this.taken = { ctx, source, tag, codec, payload: dest, seq: 0 };
            return delivered;
          }
          this.deliverCb({ ctx, source, tag, codec, payload: dest, seq: 0 });
          if (!this.host.open) return delivered; // closed from inside deliver
        } else {
          this.curReceived = destOff + len;
        }
      }
    } finally {
      if (this.host.open && this.cons !== this.publishedCons) this.publishCons(this.cons);
    }
    return delivered;
  }

  private publishCons(cons: number): void {
    this.publishedCons = cons;
    // Release: the record bytes were copied out above, before the producer may overwrite them.
    Atomics.store(this.i32, this.v.consW, cons);
    // StoreLoad again (see publish()): pairs with the producer's "set spaceWanted, re-read cons".
    if (
      Atomics.load(this.i32, this.v.spaceWantedW) !== 0 &&
      Atomics.exchange(this.i32, this.v.spaceWantedW, 0) !== 0
    ) {
      this.host.ringBell();
    }
  }

  /** Destination for a message: 8-aligned slab slice when small, own buffer when large. */
  private alloc(n: number): Uint8Array | undefined {
    if (n <= TINY_MAX) return new Uint8Array(n);
    if (n <= SMALL_MAX) {
      let off = this.slabOff;
      // (A slab whose buffer the application transferred away reads as detached: byteLength 0.)
      if (off + n > SLAB_BYTES || this.slab.byteLength === 0) {
        this.slab = new ArrayBuffer(SLAB_BYTES);
        off = 0;
      }
      this.slabOff = (off + n + 7) & ~7;
      return new Uint8Array(this.slab, off, n);
    }
    try {
      // Not zero-filled: every byte is overwritten by the fragments before the message is
      // delivered (they must cover [0, total) exactly), and a failed channel drops the buffer.
      // Skipping calloc's memset: 4 MiB alloc+fill 1.49 → 1.04 ms (ring-micro notes).
      const b = Buffer.allocUnsafeSlow(n);
      return new Uint8Array(b.buffer, b.byteOffset, n);
    } catch (cause) {
      this.host.failWith(
        new NoMemoryError(
          `ivcom: rank ${this.rank} cannot allocate ${n} bytes for a message from rank ${this.peer} ` +
            `(${(cause as Error)?.message}); the channel is closed. Give the rank more memory, or have the sender send less at a time`,
          { rank: this.rank, peer: this.peer, cause },
        ),
      );
      return undefined;
    }
  }

  private corruptAt(index: number, what: string, delivered: number): number {
    this.host.corrupt(`record at index ${index >>> 0}: ${what}`);
    return delivered;
  }

}
