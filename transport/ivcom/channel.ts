// One IVCOM channel: the segment shared by ranks A (lower) and B, seen from one of them.
// It owns the producer side of one ring and the consumer side of the other (layout.ts).
//
// Depends on nothing but a SharedArrayBuffer and a Bell, so it runs the same over a memfd
// mapping between processes (transport.ts), between worker_threads, or inside one thread.
//
// Memory ordering. JS gives us two tools: plain typed-array accesses (unordered) and Atomics.*
// (sequentially consistent). The protocol needs exactly these orderings:
//   * producer: write record bytes (plain) → Atomics.store(prod)   [release: the bytes are
//     visible before the index that covers them]
//   * consumer: Atomics.load(prod) → read record bytes (plain)      [acquire]
//   * consumer: read record bytes (plain) → Atomics.store(cons)     [release: we are done with
//     the bytes before the producer may overwrite them]
//   * producer: Atomics.load(cons) → overwrite freed bytes          [acquire]
//   * sleep/wake (libxenvchan): "set my wanted-flag, then re-read the other index" on one side,
//     "publish my index, then read the flag" on the other. Both are store→load sequences, which
//     only a full (StoreLoad) fence orders; Atomics.store/load are seq-cst, so one of the two
//     sides always sees the other's store: a wake-up can never be lost.
//
// The segment is hostile (the peer is another VM): every value read from it is read ONCE into a
// local, checked, then used. A violation fails the channel with CorruptError, reported once; the
// channel is never read again. Nothing here throws out of poll()/idle() because of the segment.

import { Buffer } from 'node:buffer';
import type { IncomingMessage, OutgoingMessage } from '../transport.js';
import { CorruptError, IvcomError, OutOfRangeError, PeerLostError, StateError } from '../errors.js';
import { readHeaderWords, writeHeaderWords, type HeaderWords } from '../wire.js';
import {
  CLOSED_OFFSET_HIGH,
  CLOSED_OFFSET_LOW,
  CONS_OFFSET,
  DATA_WANTED_OFFSET,
  FRAG_FIRST,
  FRAG_LAST,
  FRAG_MASK,
  LITTLE_ENDIAN,
  PROD_OFFSET,
  RECORD_HEADER_BYTES,
  RECORD_MAGIC,
  SPACE_WANTED_OFFSET,
  chunkBytesFor,
  ctrlOffset,
  isValidRingBytes,
  ringOffset,
  segmentBytes,
} from './layout.js';

/** Wakes the peer's event loop (an eventfd write in production). */
export interface Bell {
  ring(): void;
}

/** Bounds a receiver applies to headers read from the segment (inclusive maxima). */
export interface ChannelLimits {
  maxCtx: number;
  maxCodec: number;
  /** Largest message this side accepts (and allocates a destination for). */
  maxMessageBytes: number;
}

export const DEFAULT_LIMITS: Readonly<ChannelLimits> = Object.freeze({
  maxCtx: 0xffffffff,
  maxCodec: 255,
  maxMessageBytes: Number.MAX_SAFE_INTEGER,
});

export interface ChannelOptions {
  /** The segment, at least segmentBytes(ringBytes) long. */
  sab: SharedArrayBuffer;
  ringBytes: number;
  /** This side is the lower world rank of the pair (it produces into ring 0). */
  low: boolean;
  /** This side's world rank (written as the source of every frame). */
  rank: number;
  /** The peer's world rank (every received frame must carry it as source). */
  peer: number;
  /** Rings the peer's doorbell. */
  bell: Bell;
  deliver: (msg: IncomingMessage) => void;
  /** Called once when the channel fails. */
  fail: (err: Error) => void;
  limits?: Partial<ChannelLimits>;
  /** Largest payload per record; clamped to ringBytes / 4. Default DEFAULT_CHUNK_BYTES (256 KiB). */
  chunkBytes?: number;
  /** Called with true when sends start waiting (ring full), false when none wait any more. */
  onPending?: (pending: boolean) => void;
  /**
   * Optional: supplies the destination of a message larger than 4 KiB when its first fragment
   * arrives (e.g. a posted receive buffer, or a pooled one), instead of a fresh allocation.
   * Must return a view of exactly `byteLength` bytes that nothing else touches until it is
   * delivered as the payload, or undefined to let the channel allocate. A fresh destination
   * costs page faults: 64 KiB one-thread send+receive ~21 µs fresh vs 6–12 µs reused.
   */
  allocate?: (h: DestinationRequest) => Uint8Array | undefined;
  /**
   * Optional: a native memmove (kmod's copyBytes). V8 copies into and out of a
   * SharedArrayBuffer with relaxed atomics, 1.6-2.5x slower than memcpy from 16 KiB up (kmod/src/copy.cc);
   * every payload byte crosses the segment once each way, so long copies use this when given.
   */
  copy?: CopyBytes;
}

/** dst[dstOff, dstOff+n) = src[srcOff, srcOff+n), in bytes. */
export type CopyBytes = (dst: Uint8Array, dstOff: number, src: Uint8Array, srcOff: number, n: number) => void;

/** What allocate() is told about the incoming message (already bounds-checked). */
export interface DestinationRequest {
  ctx: number;
  source: number;
  tag: number;
  codec: number;
  byteLength: number;
}

const OPEN = 0;
const FAILED = 1;
const CLOSED = 2;

/**
 * Payloads up to this size are carved out of a shared slab (one ArrayBuffer per 64 KiB): a fresh
 * ArrayBuffer costs ~0.5 µs + page faults, a slab view ~0.1 µs (apps/bench/ring-micro.ts copy).
 * Up to TINY_MAX V8 allocates typed arrays on its heap, as cheap as a view and retains nothing.
 */
const SMALL_MAX = 4096;
const TINY_MAX = 64;
/** Copies up to this many bytes run as a JS loop instead of TypedArray.prototype.set. */
const TINY_COPY = 16;

/**
 * Copies of at least this many bytes use the native copy when there is one: below, the call
 * into native code costs what it saves (measured break-even ~4 KiB, 16 KiB 0.50 vs 0.78 µs).
 */
const NATIVE_COPY_MIN = 8192;
const SLAB_BYTES = 64 * 1024;
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

if (!LITTLE_ENDIAN) {
  throw new Error('ivcom: the shared-memory layout assumes a little-endian host');
}

export class IvcomChannel {
  readonly rank: number;
  readonly peer: number;
  readonly ringBytes: number;
  readonly chunkBytes: number;

  private readonly i32: Int32Array;
  private readonly u8: Uint8Array;
  private readonly cap: number;
  private readonly mask: number;
  private readonly bell: Bell;
  private readonly deliverCb: (msg: IncomingMessage) => void;
  private readonly failCb: (err: Error) => void;
  private readonly onPending: ((pending: boolean) => void) | undefined;
  private readonly allocateCb: ((h: DestinationRequest) => Uint8Array | undefined) | undefined;
  private readonly nativeCopy: CopyBytes | undefined;
  private readonly maxCtx: number;
  private readonly maxCodec: number;
  /** The record header being read, copied out of the segment (reused: no allocation per record). */
  private readonly hdr: HeaderWords = { ctx: 0, source: 0, tag: 0, codec: 0, flags: 0, reserved: 0, total: 0 };
  private readonly maxMessage: number;
  private readonly minSplit: number;
  private readonly releaseBytes: number;
  private state = OPEN;
  private failure: Error | undefined;
  /** The peer closed its end while our sends waited: sending is over, receiving is not. */
  private txFailure: Error | undefined;
  /** fail was reported (at most once per channel). */
  private reported = false;
  /** drain() is on the stack (a deliver() callback polled again): no re-entry. */
  private draining = false;
  private shutDown = false;
  private readonly myClosedW: number;
  private readonly peerClosedW: number;

  // ---- producer side (tx ring) -------------------------------------------------------------
  private readonly txBase: number;
  private readonly txProdW: number;
  private readonly txConsW: number;
  private readonly txDataWantedW: number;
  private readonly txSpaceWantedW: number;
  /** Private producer index; the shared copy is only ever written from it. */
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

  // ---- consumer side (rx ring) -------------------------------------------------------------
  private readonly rxBase: number;
  private readonly rxProdW: number;
  private readonly rxConsW: number;
  private readonly rxDataWantedW: number;
  private readonly rxSpaceWantedW: number;
  /** Private consumer index; never read back from the segment. */
  private cons = 0;
  private publishedCons = 0;
  /** We set dataWanted and have not withdrawn it. */
  private dataArmed = false;
  // Message being reassembled from fragments.
  private cur: Uint8Array | undefined;
  private curReceived = 0;
  private curTotal = 0;
  private curCtx = 0;
  private curTag = 0;
  private curCodec = 0;
  private slab: ArrayBuffer = new ArrayBuffer(SLAB_BYTES);
  private slabOff = 0;

  constructor(opts: ChannelOptions) {
    const { sab, ringBytes } = opts;
    if (!isValidRingBytes(ringBytes)) {
      throw new OutOfRangeError(`ivcom: invalid ring size ${ringBytes}`);
    }
    if (!(sab instanceof SharedArrayBuffer) || sab.byteLength < segmentBytes(ringBytes)) {
      throw new OutOfRangeError(
        `ivcom: segment of ${sab?.byteLength} bytes is smaller than segmentBytes(${ringBytes})`,
      );
    }
    this.rank = opts.rank;
    this.peer = opts.peer;
    this.ringBytes = ringBytes;
    this.cap = ringBytes;
    this.mask = ringBytes - 1;
    this.chunkBytes = chunkBytesFor(ringBytes, opts.chunkBytes);
    this.minSplit = Math.min(MIN_SPLIT, this.chunkBytes);
    // The consumer publishes its index at least every releaseBytes while draining a batch, so a
    // producer working concurrently can refill the ring before the whole batch is copied out.
    this.releaseBytes = Math.max(this.chunkBytes, ringBytes >>> 3);
    this.i32 = new Int32Array(sab, 0, segmentBytes(ringBytes) >> 2);
    this.u8 = new Uint8Array(sab, 0, segmentBytes(ringBytes));
    this.bell = opts.bell;
    this.deliverCb = opts.deliver;
    this.failCb = opts.fail;
    this.onPending = opts.onPending;
    this.allocateCb = opts.allocate;
    this.nativeCopy = opts.copy;
    const lim = { ...DEFAULT_LIMITS, ...opts.limits };
    this.maxCtx = lim.maxCtx;
    this.maxCodec = lim.maxCodec;
    this.maxMessage = Math.min(lim.maxMessageBytes, Number.MAX_SAFE_INTEGER);

    const txDir = opts.low ? 0 : 1;
    const rxDir = opts.low ? 1 : 0;
    const txc = ctrlOffset(txDir);
    const rxc = ctrlOffset(rxDir);
    this.txBase = ringOffset(txDir, ringBytes);
    this.txProdW = (txc + PROD_OFFSET) >> 2;
    this.txConsW = (txc + CONS_OFFSET) >> 2;
    this.txDataWantedW = (txc + DATA_WANTED_OFFSET) >> 2;
    this.txSpaceWantedW = (txc + SPACE_WANTED_OFFSET) >> 2;
    this.rxBase = ringOffset(rxDir, ringBytes);
    this.rxProdW = (rxc + PROD_OFFSET) >> 2;
    this.rxConsW = (rxc + CONS_OFFSET) >> 2;
    this.rxDataWantedW = (rxc + DATA_WANTED_OFFSET) >> 2;
    this.rxSpaceWantedW = (rxc + SPACE_WANTED_OFFSET) >> 2;
    this.myClosedW = (opts.low ? CLOSED_OFFSET_LOW : CLOSED_OFFSET_HIGH) >> 2;
    this.peerClosedW = (opts.low ? CLOSED_OFFSET_HIGH : CLOSED_OFFSET_LOW) >> 2;
    // Nothing is read from the segment here: a freshly granted segment is all zero, and a
    // segment the peer already wrote into is picked up by the first poll()/idle().
  }

  get failed(): boolean {
    return this.state === FAILED;
  }

  get closed(): boolean {
    return this.state !== OPEN;
  }

  /** Sends waiting for ring space (or for the grant). */
  get pendingSends(): number {
    return this.queue.length - this.qHead;
  }

  // =============================================================================== sending ==

  /**
   * Posts a message. Returns undefined when it was written into the ring entirely (the caller may
   * reuse its buffers), else a promise that settles when the last byte is written.
   */
  send(msg: OutgoingMessage): Promise<void> | undefined {
    if (this.state !== OPEN || this.txFailure !== undefined) return this.rejectedSend();
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
      const need = skip + RECORD_HEADER_BYTES + ((total + 7) & ~7);
      if (
        this.cap - ((prod - this.cachedCons) >>> 0) >= need ||
        (this.refreshCons() && this.cap - ((prod - this.cachedCons) >>> 0) >= need)
      ) {
        const recOff = skip === 0 ? off : 0;
        this.writeHeader(recOff, total, FRAG_FIRST | FRAG_LAST, msg, total);
        const dataPos = (recOff + RECORD_HEADER_BYTES) & this.mask;
        if (parts.length === 1 && dataPos + total <= this.cap) {
          const part = parts[0]!;
          const d = this.txBase + dataPos;
          if (total <= TINY_COPY) {
            const u8 = this.u8;
            for (let i = 0; i < total; i++) u8[d + i] = part[i]!;
          } else {
            this.copy(this.u8, d, part, 0, total);
          }
        } else {
          this.cpPart = 0;
          this.cpOff = 0;
          this.copyIn(parts, dataPos, total);
        }
        this.publish((prod + need) >>> 0);
        return undefined;
      }
      if (this.state !== OPEN) return this.rejectedSend();
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
    if (this.state !== OPEN || this.txFailure !== undefined) return this.rejectedSend();
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
  private pump(arm: boolean): number {
    const cap = this.cap;
    let armed = false;
    let written = 0;
    while (this.qHead < this.queue.length) {
      if (this.state !== OPEN) return written;
      const p = this.queue[this.qHead]!;
      const remaining = p.total - p.sent;
      const prod = this.prod;
      const off = prod & this.mask;
      const toEnd = cap - off;
      const skip = toEnd < RECORD_HEADER_BYTES ? toEnd : 0;
      const minLen = remaining < this.minSplit ? remaining : this.minSplit;
      const minNeed = skip + RECORD_HEADER_BYTES + ((minLen + 7) & ~7);
      let free = cap - ((prod - this.cachedCons) >>> 0);
      if (free < minNeed) {
        if (!this.refreshCons()) return written;
        free = cap - ((prod - this.cachedCons) >>> 0);
        if (free < minNeed) {
          // Blocked. If the consumer has closed its end, the space will never come.
          if (Atomics.load(this.i32, this.peerClosedW) !== 0) {
            this.peerGone();
            return written;
          }
          if (!arm || armed) return written;
          // seq-cst store then (in refreshCons) seq-cst load: StoreLoad. Either the consumer's
          // later cons store is seen by our re-read below, or it sees our flag and rings.
          Atomics.store(this.i32, this.txSpaceWantedW, 1);
          armed = true;
          if (!this.refreshCons()) return written;
          free = cap - ((prod - this.cachedCons) >>> 0);
          if (free < minNeed) return written;
        }
      }
      const room = free - skip - RECORD_HEADER_BYTES; // a multiple of 8
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
      this.publish((prod + skip + RECORD_HEADER_BYTES + ((len + 7) & ~7)) >>> 0);
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

  /** Record header at ring offset `off` (contiguous by construction). */
  private writeHeader(off: number, len: number, flags: number, msg: OutgoingMessage, total: number) {
    const i32 = this.i32;
    const w = (this.txBase + off) >> 2;
    i32[w] = len;
    i32[w + 1] = RECORD_MAGIC;
    writeHeaderWords(i32, w + 2, msg.ctx, this.rank, msg.tag, msg.codec, flags, total);
  }

  /**
   * Copies `len` bytes from parts (cursor cpPart/cpOff) into the tx ring at `pos`, splitting at
   * the ring's end. Returns false if the parts ran out (a part shrank since send()); the rest of
   * the record is then zero-filled so the stream stays well-formed.
   */
  private copyIn(parts: readonly Uint8Array[], pos: number, len: number): boolean {
    const u8 = this.u8;
    const base = this.txBase;
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
        this.copy(u8, base + pos, part, po, n);
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

  /** Byte copy between the segment and private memory; long ones natively when possible. */
  private copy(dst: Uint8Array, dstOff: number, src: Uint8Array, srcOff: number, n: number): void {
    if (n >= NATIVE_COPY_MIN && this.nativeCopy !== undefined) this.nativeCopy(dst, dstOff, src, srcOff, n);
    else dst.set(srcOff === 0 && n === src.byteLength ? src : src.subarray(srcOff, srcOff + n), dstOff);
  }

  private publish(prod: number): void {
    this.prod = prod;
    // Release: the record bytes written above become visible no later than this index.
    Atomics.store(this.i32, this.txProdW, prod);
    // StoreLoad (seq-cst store, then seq-cst load): a consumer that set dataWanted and then
    // re-read prod either saw this store, or we see its flag here. The plain load filters the
    // common case (peer spinning) without a locked RMW; the exchange makes the ring one-shot.
    if (
      Atomics.load(this.i32, this.txDataWantedW) !== 0 &&
      Atomics.exchange(this.i32, this.txDataWantedW, 0) !== 0
    ) {
      this.ringBell();
    }
  }

  /** Re-reads the consumer index (acquire), validating it. False: the channel failed. */
  private refreshCons(): boolean {
    // Acquire: pairs with the consumer's Atomics.store(cons), issued after it copied those
    // records out; only then may we overwrite their bytes. Read ONCE; below only the local is used.
    const c = Atomics.load(this.i32, this.txConsW) >>> 0;
    const inFlight = (this.prod - this.cachedCons) >>> 0;
    const advanced = (c - this.cachedCons) >>> 0;
    // cons may only move forward, never past prod, and only by whole (8-aligned) records.
    if (advanced > inFlight || (c & 7) !== 0) {
      this.corrupt(
        `consumer index ${c} outside [${this.cachedCons}, ${this.prod}] (or misaligned)`,
      );
      return false;
    }
    this.cachedCons = c;
    return true;
  }

  // ============================================================================= receiving ==

  /**
   * Looks at the rx ring once, delivering complete messages, and advances queued sends. Returns
   * messages delivered plus send records written.
   */
  poll(): number {
    if (this.state !== OPEN) return 0;
    if (this.dataArmed) {
      // We are spinning again: the producer need not ring. Clearing races harmlessly with the
      // producer's exchange (worst case one spurious ring).
      this.dataArmed = false;
      Atomics.store(this.i32, this.rxDataWantedW, 0);
    }
    const n = this.drain();
    return this.qHead !== this.queue.length ? n + this.pump(false) : n;
  }

  /**
   * About to sleep: request a doorbell for new data (and for free space if sends wait), re-check
   * once, deliver what is there. Also what the doorbell watcher runs after draining the eventfd.
   */
  idle(): number {
    if (this.state !== OPEN) return 0;
    this.dataArmed = true;
    // seq-cst store, then drain()'s seq-cst load of prod: StoreLoad, so a record published before
    // the producer could see this flag is found by the re-check below.
    Atomics.store(this.i32, this.rxDataWantedW, 1);
    const n = this.drain();
    if (this.qHead !== this.queue.length) this.pump(true);
    return n;
  }

  /** Delivers every complete record published at the time of the call. Never throws on bad data. */
  private drain(): number {
    if (this.draining) return 0;
    this.draining = true;
    try {
      return this.drainOnce();
    } finally {
      this.draining = false;
    }
  }

  private drainOnce(): number {
    let cons = this.cons;
    // Acquire: pairs with the producer's Atomics.store(prod) after it wrote the records.
    // Read ONCE; the batch below never reads the index again, so it is bounded by this snapshot.
    const p = Atomics.load(this.i32, this.rxProdW) >>> 0;
    let avail = (p - cons) >>> 0;
    if (avail === 0) return 0;
    // (p - cons) mod 2^32 ≤ cap also rejects a prod that moved backwards: at every poll cons
    // equals the previous snapshot, so a backwards move shows up as a huge difference.
    if (avail > this.cap || (avail & 7) !== 0) {
      this.corrupt(`producer index ${p} is ${avail} bytes ahead of consumer index ${cons}`);
      return 0;
    }
    const cap = this.cap;
    const i32 = this.i32;
    const u8 = this.u8;
    const base = this.rxBase;
    let delivered = 0;
    try {
      while (avail > 0) {
        let off = cons & this.mask;
        const toEnd = cap - off;
        if (toEnd < RECORD_HEADER_BYTES) {
          // Implicit wrap: the producer skipped the tail too short for a header.
          if (avail < toEnd + RECORD_HEADER_BYTES) return this.corruptAt(cons, 'truncated wrap', delivered);
          cons = (cons + toEnd) >>> 0;
          avail -= toEnd;
          off = 0;
        }
        if (avail < RECORD_HEADER_BYTES) return this.corruptAt(cons, 'truncated record header', delivered);
        // Every header word read exactly once into a local.
        const w = (base + off) >> 2;
        const len = i32[w]! >>> 0;
        const magic = i32[w + 1]!;
        const h = this.hdr;
        readHeaderWords(i32, w + 2, h);
        const { ctx, source, tag, codec, flags, total } = h;
        if (magic !== RECORD_MAGIC) return this.corruptAt(cons, 'bad record magic', delivered);
        if (len > avail - RECORD_HEADER_BYTES) {
          return this.corruptAt(cons, `record of ${len} bytes exceeds the ${avail} published`, delivered);
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
            d = this.allocateCb({ ctx, source, tag, codec, byteLength: total });
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
          // A byte loop beats subarray()+set() below ~64 bytes (no view object, no call).
          const s = base + dataPos;
          for (let i = 0; i < len; i++) dest[destOff + i] = u8[s + i]!;
        } else if (len > 0) {
          const n1 = len < cap - dataPos ? len : cap - dataPos;
          this.copy(dest, destOff, u8, base + dataPos, n1);
          if (len > n1) this.copy(dest, destOff + n1, u8, base, len - n1);
        }
        cons = (cons + rec) >>> 0;
        avail -= rec;
        this.cons = cons; // private state first: a throwing deliver() cannot cause a re-delivery
        if (((cons - this.publishedCons) >>> 0) >= this.releaseBytes) this.publishCons(cons);

        if (flags & FRAG_LAST) {
          this.cur = undefined;
          delivered++;
          this.deliverCb({ ctx, source, tag, codec, payload: dest, seq: 0 });
          if (this.state !== OPEN) return delivered; // closed from inside deliver
        } else {
          this.curReceived = destOff + len;
        }
      }
    } finally {
      if (this.state === OPEN && this.cons !== this.publishedCons) this.publishCons(this.cons);
    }
    return delivered;
  }

  private publishCons(cons: number): void {
    this.publishedCons = cons;
    // Release: the record bytes were copied out above, before the producer may overwrite them.
    Atomics.store(this.i32, this.rxConsW, cons);
    // StoreLoad again (see publish()): pairs with the producer's "set spaceWanted, re-read cons".
    if (
      Atomics.load(this.i32, this.rxSpaceWantedW) !== 0 &&
      Atomics.exchange(this.i32, this.rxSpaceWantedW, 0) !== 0
    ) {
      this.ringBell();
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
      this.failWith(
        new IvcomError(
          `ivcom: cannot allocate ${n} bytes for a message from rank ${this.peer} ` +
            `(${(cause as Error)?.message}); the channel is closed`,
          { rank: this.rank, peer: this.peer, cause },
        ),
      );
      return undefined;
    }
  }

  // ============================================================================ lifecycle ==

  /** Resolves when every accepted send is in the ring (or the channel failed); then closed. */
  close(): Promise<void> {
    if (this.state !== OPEN || this.txFailure !== undefined || this.qHead === this.queue.length) {
      if (this.state === OPEN) this.state = CLOSED;
      return Promise.resolve();
    }
    return new Promise<void>((resolve) => {
      this.flushWaiters.push(() => {
        if (this.state === OPEN) this.state = CLOSED;
        resolve();
      });
      this.pump(true);
    });
  }

  /** Fails the channel from outside (peer lost, transport closing with a dead peer, ...). */
  abort(err: Error): void {
    this.failWith(err);
  }

  /**
   * The transport is done with this channel: stop reading and writing, tell the peer (closed word,
   * then one doorbell so a peer blocked on a full ring notices at once). Idempotent.
   */
  shutdown(): void {
    if (this.state === OPEN) this.state = CLOSED;
    if (this.shutDown) return;
    this.shutDown = true;
    this.rejectAll(
      new StateError(`ivcom: the channel to rank ${this.peer} is closed`, { rank: this.rank, peer: this.peer }),
    );
    // seq-cst store before the doorbell: the peer's re-check after waking sees it.
    Atomics.store(this.i32, this.myClosedW, 1);
    try {
      this.bell.ring();
    } catch {
      /* the peer is gone already */
    }
  }

  /** The peer closed while sends wait for ring space: reject them, keep receiving. */
  private peerGone(): void {
    const n = this.queue.length - this.qHead;
    const err = new PeerLostError(
      `ivcom: rank ${this.peer} closed its channel while rank ${this.rank} still had ${n} message(s) ` +
        `to send to it; they were not delivered`,
      { rank: this.rank, peer: this.peer },
    );
    this.txFailure = err;
    this.rejectAll(err);
    this.report(err);
  }

  private ringBell(): void {
    try {
      this.bell.ring();
    } catch (err) {
      this.failWith(
        new IvcomError(`ivcom: cannot ring the doorbell of rank ${this.peer}: ${(err as Error)?.message}`, {
          rank: this.rank,
          peer: this.peer,
          cause: err,
        }),
      );
    }
  }

  private corruptAt(index: number, what: string, delivered: number): number {
    this.corrupt(`record at index ${index}: ${what}`);
    return delivered;
  }

  private corrupt(what: string): void {
    this.failWith(
      new CorruptError(
        `ivcom channel from rank ${this.peer} to rank ${this.rank} is corrupt (${what}); ` +
          `the peer is broken or hostile, the channel is closed`,
        { rank: this.rank, peer: this.peer },
      ),
    );
  }

  private failWith(err: Error): void {
    if (this.state === FAILED) return;
    const wasOpen = this.state === OPEN;
    this.state = FAILED;
    this.failure = err;
    this.cur = undefined;
    this.rejectAll(err);
    if (wasOpen) this.report(err);
  }

  private rejectAll(err: Error): void {
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

  private report(err: Error): void {
    if (this.reported) return;
    this.reported = true;
    try {
      this.failCb(err);
    } catch (e) {
      // Never throw out of poll() into the event loop; surface the handler's bug asynchronously.
      queueMicrotask(() => {
        throw e;
      });
    }
  }

  private wakeFlushWaiters(): void {
    if (this.flushWaiters.length === 0) return;
    const w = this.flushWaiters;
    this.flushWaiters = [];
    for (const f of w) f();
  }

  private rejectedSend(): Promise<void> {
    return Promise.reject(
      this.failure ??
        this.txFailure ??
        new StateError(`ivcom: the channel to rank ${this.peer} is closed`, {
          rank: this.rank,
          peer: this.peer,
        }),
    );
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
