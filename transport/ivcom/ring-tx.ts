// The producer half of a channel: writes this side's messages into its ring (eager records,
// or streamed fragments when they do not fit), waits for space, and rings the consumer only when
// it said it sleeps (libxenvchan's notify bits). The consumer half is ring-rx.ts; the channel
// that owns both, and their shared lifecycle, channel.ts (its header explains the ordering).

import type { OutgoingMessage } from '../transport.js';
import { OutOfRangeError } from '../errors.js';
import { writeHeaderWords } from '../wire.js';
import { FRAG_FIRST, FRAG_LAST, NEXT_RESERVE_BYTES, RECORD_HEADER_BYTES, RECORD_MAGIC, wordAt } from './layout.js';
import { copyToPeer, RingHalf, TINY_COPY, type CopyToPeer, type HalfOptions, type PeerCopy, type RingHost, type RingView } from './ring.js';

/** Messages longer than this may be split to fill what is left of the ring. */
const MIN_SPLIT = 4096;

interface PendingSend {
  msg: OutgoingMessage;
  total: number;
  sent: number;
  /** Every byte is in the ring (the record carrying FRAG_LAST is published). */
  done: boolean;
  part: number;
  partOff: number;
  promise: Promise<void> | undefined;
  resolve: (() => void) | undefined;
  reject: ((err: Error) => void) | undefined;
  error: Error | undefined;
}

export interface TxOptions extends HalfOptions {
  chunkBytes: number;
  /** Optional: kmod's copyToPeer, for the payload copies into the ring. */
  toPeer?: PeerCopy;
  /** Word index of the peer's closed word (a consumer that left never frees space again). */
  peerClosedW: number;
  onPending?: (pending: boolean) => void;
}

export class TxRing extends RingHalf {
  private readonly chunkBytes: number;
  private readonly toPeer: CopyToPeer | undefined;
  /** copyToPeer's measurements for this ring (private memory: the peer must not steer it). */
  private readonly choice: Float64Array;
  private readonly minSplit: number;
  private readonly peerClosedW: number;
  private readonly onPending: ((pending: boolean) => void) | undefined;
  /**
   * Private producer index; the shared copy is only ever written from it. Ring indices are kept
   * as int32 (`| 0`), not uint32: V8 holds a field that only ever saw 31-bit integers as a small
   * integer, and the first index past 2^31 (after 2 GiB through the ring) would turn it into a
   * double, deoptimizing every function that uses the rings' objects (docs/decisions.md).
   * Distances are still taken mod 2^32 (`>>> 0`).
   */
  private prod = 0;
  /** Last validated consumer index (refreshed only when the ring looks full). */
  private cachedCons = 0;
  private queue: PendingSend[] = [];
  private qHead = 0;
  private flushWaiters: (() => void)[] = [];
  /** onPending(true) was reported and not yet withdrawn. */
  private signalledPending = false;
  // Copy cursor (fields, not a returned object: no allocation per copy).
  private cpPart = 0;
  private cpOff = 0;

  constructor(v: RingView, host: RingHost, o: TxOptions) {
    super(v, host, o);
    this.toPeer = o.toPeer?.copy;
    this.choice = new Float64Array(o.toPeer?.choiceWords ?? 0);
    this.chunkBytes = o.chunkBytes;
    this.minSplit = Math.min(MIN_SPLIT, o.chunkBytes);
    this.peerClosedW = o.peerClosedW;
    this.onPending = o.onPending;
  }

  /** Sends waiting for ring space. */
  get pending(): number {
    return this.queue.length - this.qHead;
  }

  /** Calls `f` once every queued send is in the ring (or rejected). */
  whenFlushed(f: () => void): void {
    this.flushWaiters.push(f);
    this.pump(true);
  }

  /**
   * Posts a message on an open channel. Returns undefined when it was written into the ring
   * entirely (the caller may reuse its buffers), else a promise that settles when the last byte
   * is written.
   */
  send(msg: OutgoingMessage): Promise<void> | undefined {
    const parts = msg.parts;
    const total = msg.byteLength;
    checkHeader(msg);
    let sum = 0;
    for (let i = 0; i < parts.length; i++) sum += parts[i]!.byteLength;
    if (sum !== total || !Number.isSafeInteger(total)) {
      throw new OutOfRangeError(
        `ivcom: message byteLength ${total} does not match its parts (${sum} bytes)`,
      );
    }

    if (this.qHead === this.queue.length && total <= this.chunkBytes) {
      // Eager fast path: one record, no allocation unless the payload spans several parts.
      const prod = this.prod;
      const off = prod & this.mask;
      const toEnd = this.cap - off;
      const skip = toEnd < RECORD_HEADER_BYTES ? toEnd : 0;
      const rec = RECORD_HEADER_BYTES + ((total + 7) & ~7);
      // Room for the record, and for clearing the next record's magic word (publish()).
      const need = skip + rec + NEXT_RESERVE_BYTES;
      if (
        this.cap - ((prod - this.cachedCons) >>> 0) >= need ||
        (this.refreshCons() && this.cap - ((prod - this.cachedCons) >>> 0) >= need)
      ) {
        const recOff = skip === 0 ? off : 0;
        this.writeHeader(recOff, total, FRAG_FIRST | FRAG_LAST, msg, total);
        const dataPos = (recOff + RECORD_HEADER_BYTES) & this.mask;
        if (parts.length === 1 && dataPos + total <= this.cap) {
          const part = parts[0]!;
          const d = this.v.base + dataPos;
          if (total <= TINY_COPY) {
            const u8 = this.u8;
            for (let i = 0; i < total; i++) u8[d + i] = part[i]!;
          } else {
            copyToPeer(this.toPeer, this.choice, this.nativeCopy, this.u8, d, part, 0, total);
          }
        } else {
          this.cpPart = 0;
          this.cpOff = 0;
          this.copyIn(parts, dataPos, total);
        }
        this.publish(recOff, (prod + skip + rec) | 0);
        return undefined;
      }
      if (!this.host.open) return this.host.rejectedSend();
    }
    return this.enqueue(msg, total);
  }

  private enqueue(msg: OutgoingMessage, total: number): Promise<void> | undefined {
    const p: PendingSend = {
      msg,
      total,
      sent: 0,
      done: false,
      part: 0,
      partOff: 0,
      promise: undefined,
      resolve: undefined,
      reject: undefined,
      error: undefined,
    };
    const wasIdle = this.qHead === this.queue.length;
    this.queue.push(p);
    this.pump(true);
    if (p.done && p.error === undefined) return undefined; // streamed out completely right now
    if (!this.host.sending) return this.host.rejectedSend();
    if (p.error !== undefined) return Promise.reject(p.error);
    p.promise = new Promise<void>((resolve, reject) => {
      p.resolve = resolve;
      p.reject = reject;
    });
    if (wasIdle && !this.signalledPending) {
      this.signalledPending = true;
      this.onPending?.(true);
    }
    return p.promise;
  }

  /**
   * Writes as much of the queued sends as the ring takes. With `arm`, when blocked it asks the
   * consumer for a doorbell on freed space (spaceWanted) — done from send(), idle() and the
   * doorbell, not from poll(): a spinning runtime re-checks by itself, and arming there would
   * make the consumer ring once per freed chunk.
   */
  pump(arm: boolean): number {
    const cap = this.cap;
    let armed = false;
    let written = 0;
    while (this.qHead < this.queue.length) {
      if (!this.host.open) return written;
      const p = this.queue[this.qHead]!;
      const remaining = p.total - p.sent;
      const prod = this.prod;
      const off = prod & this.mask;
      const toEnd = cap - off;
      const skip = toEnd < RECORD_HEADER_BYTES ? toEnd : 0;
      const minLen = remaining < this.minSplit ? remaining : this.minSplit;
      const minNeed = skip + RECORD_HEADER_BYTES + ((minLen + 7) & ~7) + NEXT_RESERVE_BYTES;
      let free = cap - ((prod - this.cachedCons) >>> 0);
      if (free < minNeed) {
        if (!this.refreshCons()) return written;
        free = cap - ((prod - this.cachedCons) >>> 0);
        if (free < minNeed) {
          // Blocked. If the consumer has closed its end, the space will never come.
          if (Atomics.load(this.i32, this.peerClosedW) !== 0) {
            this.host.peerGone();
            return written;
          }
          if (!arm || armed) return written;
          // seq-cst store then (in refreshCons) seq-cst load: StoreLoad. Either the consumer's
          // later cons store is seen by our re-read below, or it sees our flag and rings.
          Atomics.store(this.i32, this.v.spaceWantedW, 1);
          armed = true;
          if (!this.refreshCons()) return written;
          free = cap - ((prod - this.cachedCons) >>> 0);
          if (free < minNeed) return written;
        }
      }
      const room = free - skip - RECORD_HEADER_BYTES - NEXT_RESERVE_BYTES; // a multiple of 8
      let len = remaining < this.chunkBytes ? remaining : this.chunkBytes;
      if (len > room) len = room;
      const flags = (p.sent === 0 ? FRAG_FIRST : 0) | (p.sent + len === p.total ? FRAG_LAST : 0);
      const recOff = skip === 0 ? off : 0;
      this.writeHeader(recOff, len, flags, p.msg, p.total);
      this.cpPart = p.part;
      this.cpOff = p.partOff;
      if (!this.copyIn(p.msg.parts, (recOff + RECORD_HEADER_BYTES) & this.mask, len)) {
        p.error ??= new OutOfRangeError(
          `ivcom: a part of a message to rank ${this.peer} shrank while it was being sent ` +
            `(detached or transferred?); the rest was sent as zeros`,
        );
      }
      p.part = this.cpPart;
      p.partOff = this.cpOff;
      p.sent += len;
      this.publish(recOff, (prod + skip + RECORD_HEADER_BYTES + ((len + 7) & ~7)) | 0);
      written++;
      if (p.sent === p.total) {
        p.done = true;
        this.queue[this.qHead++] = undefined as unknown as PendingSend;
        if (p.error !== undefined) p.reject?.(p.error);
        else p.resolve?.();
      }
    }
    // Queue drained.
    if (this.queue.length !== 0) {
      this.queue.length = 0;
      this.qHead = 0;
      if (this.signalledPending) {
        this.signalledPending = false;
        this.onPending?.(false);
      }
      this.wakeFlushWaiters();
    }
    return written;
  }

  /**
   * Record header at ring offset `off` (contiguous by construction), all but its magic word:
   * writing that one publishes the record (publish()).
   */
  private writeHeader(off: number, len: number, flags: number, msg: OutgoingMessage, total: number) {
    const i32 = this.i32;
    const w = wordAt(this.v.base + off);
    i32[w] = len;
    writeHeaderWords(i32, w + 2, msg.ctx, this.rank, msg.tag, msg.codec, flags, total);
  }

  /**
   * Copies `len` bytes from parts (cursor cpPart/cpOff) into the tx ring at `pos`, splitting at
   * the ring's end. Returns false if the parts ran out (a part shrank since send()); the rest of
   * the record is then zero-filled so the stream stays well-formed.
   */
  private copyIn(parts: readonly Uint8Array[], pos: number, len: number): boolean {
    const u8 = this.u8;
    const base = this.v.base;
    const cap = this.cap;
    let pi = this.cpPart;
    let po = this.cpOff;
    while (len > 0) {
      if (pi >= parts.length) {
        const n1 = Math.min(len, cap - pos);
        u8.fill(0, base + pos, base + pos + n1);
        if (len > n1) u8.fill(0, base, base + len - n1);
        this.cpPart = pi;
        this.cpOff = 0;
        return false;
      }
      const part = parts[pi]!;
      const plen = part.byteLength;
      let n = plen - po;
      if (n > len) n = len;
      if (n > cap - pos) n = cap - pos;
      if (n > 0) {
        copyToPeer(this.toPeer, this.choice, this.nativeCopy, u8, base + pos, part, po, n);
        po += n;
        len -= n;
        pos = (pos + n) & this.mask;
      }
      if (po >= plen) {
        pi++;
        po = 0;
      }
    }
    // Skip empty parts so the cursor rests on real data (or past the end).
    while (pi < parts.length && parts[pi]!.byteLength === 0) pi++;
    this.cpPart = pi;
    this.cpOff = po;
    return true;
  }

  /**
   * Publishes the record written at ring offset `recOff`, which ends at index `next`. The
   * consumer polls the magic word where the next record will start, so a message costs it one
   * cache line from us, not two (an index line, then the record's). First that next magic word is
   * cleared, so the consumer never takes stale bytes there (an older lap's data) for a record;
   * then this record's magic is stored, last: release, the record's bytes and that clearing are
   * visible no later than it.
   */
  private publish(recOff: number, next: number): void {
    const i32 = this.i32;
    const base = this.v.base;
    const nOff = next & this.mask;
    // Where the consumer will look next: past the tail when no header fits there (implicit wrap).
    const look = this.cap - nOff < RECORD_HEADER_BYTES ? 0 : nOff;
    i32[wordAt(base + look) + 1] = 0;
    Atomics.store(i32, wordAt(base + recOff) + 1, RECORD_MAGIC);
    this.prod = next;
    // StoreLoad (seq-cst store, then seq-cst load): a consumer that set dataWanted and then
    // re-read the magic word either saw this store, or we see its flag here. The plain load
    // filters the common case (peer spinning) without a locked RMW; the exchange makes the ring
    // one-shot.
    if (
      Atomics.load(this.i32, this.v.dataWantedW) !== 0 &&
      Atomics.exchange(this.i32, this.v.dataWantedW, 0) !== 0
    ) {
      this.host.ringBell();
    }
  }

  /** Re-reads the consumer index (acquire), validating it. False: the channel failed. */
  private refreshCons(): boolean {
    // Acquire: pairs with the consumer's Atomics.store(cons), issued after it copied those
    // records out; only then may we overwrite their bytes. Read ONCE; below only the local is used.
    const c = Atomics.load(this.i32, this.v.consW); // int32, as the private indices
    const inFlight = (this.prod - this.cachedCons) >>> 0;
    const advanced = (c - this.cachedCons) >>> 0;
    // cons may only move forward, never past prod, and only by whole (8-aligned) records.
    if (advanced > inFlight || (c & 7) !== 0) {
      this.host.corrupt(
        `consumer index ${c >>> 0} outside [${this.cachedCons >>> 0}, ${this.prod >>> 0}] (or misaligned)`,
      );
      return false;
    }
    this.cachedCons = c;
    return true;
  }

  /** Rejects every queued send (the channel failed or closed). */
  rejectAll(err: Error): void {
    const pending = this.queue.slice(this.qHead);
    this.queue = [];
    this.qHead = 0;
    for (const p of pending) p.reject?.(err);
    if (this.signalledPending) {
      this.signalledPending = false;
      this.onPending?.(false);
    }
    this.wakeFlushWaiters();
  }

  private wakeFlushWaiters(): void {
    if (this.flushWaiters.length === 0) return;
    const w = this.flushWaiters;
    this.flushWaiters = [];
    for (const f of w) f();
  }

}

function checkHeader(msg: OutgoingMessage): void {
  const { ctx, tag, codec } = msg;
  if (ctx >>> 0 !== ctx || (tag | 0) !== tag || (codec & 0xff) !== codec) {
    throw new OutOfRangeError(
      `ivcom: header out of range (ctx ${ctx} must be u32, tag ${tag} i32, codec ${codec} u8)`,
    );
  }
}
