// One IVCOM channel: the segment shared by ranks A (lower) and B, seen from one of them.
// It owns the producer half of one ring (ring-tx.ts) and the consumer half of the other
// (ring-rx.ts), and their one lifecycle: open, closed, failed (layout.ts has the layout).
//
// Depends on nothing but a SharedArrayBuffer and a Bell, so it runs the same over a memfd
// mapping between processes (transport.ts), between worker_threads, or inside one thread.
//
// Memory ordering. JS gives us two tools: plain typed-array accesses (unordered) and Atomics.*
// (sequentially consistent). The protocol needs exactly these orderings:
//   * producer: write record bytes and clear the next record's magic (plain) →
//     Atomics.store(this record's magic)                            [release: the bytes are
//     visible before the word that publishes them]
//   * consumer: Atomics.load(magic at its index) → read record bytes (plain)   [acquire]
//   * consumer: read record bytes (plain) → Atomics.store(cons)     [release: we are done with
//     the bytes before the producer may overwrite them]
//   * producer: Atomics.load(cons) → overwrite freed bytes          [acquire]
//   * sleep/wake (libxenvchan): "set my wanted-flag, then re-read the magic word (or the other
//     index)" on one side, "publish (a magic word, or my index), then read the flag" on the
//     other. Both are store→load sequences, which only a full (StoreLoad) fence orders;
//     Atomics.store/load are seq-cst, so one of the two sides always sees the other's store: a
//     wake-up can never be lost.
//
// The segment is hostile (the peer is another VM): every value read from it is read ONCE into a
// local, checked, then used. A violation fails the channel with CorruptError, reported once; the
// channel is never read again. Nothing here throws out of poll()/idle() because of the segment.

import { SHARED_WORDS, type IncomingMessage, type OutgoingMessage, type SharedWords } from '../transport.js';
import { CorruptError, IvcomError, OutOfRangeError, PeerLostError, StateError } from '../errors.js';
import { MAX_MESSAGE_BYTES } from '../wire.js';
import {
  CLOSED_OFFSET_HIGH,
  CLOSED_OFFSET_LOW,
  CPU_OFF,
  ON_CPU_OFFSET_HIGH,
  ON_CPU_OFFSET_LOW,
  LITTLE_ENDIAN,
  chunkBytesFor,
  isValidRingBytes,
  segmentBytes,
  SHARED_WORDS_BYTES,
  sharedWordsOffset,
  wordAt,
} from './layout.js';
import { RingView, type CopyBytes, type PeerCopy, type RingHost } from './ring.js';
import { RxRing, type DestinationRequest } from './ring-rx.js';
import { TxRing } from './ring-tx.js';

export type { CopyBytes, CopyToPeer, PeerCopy } from './ring.js';
export type { DestinationRequest } from './ring-rx.js';

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
  maxMessageBytes: MAX_MESSAGE_BYTES,
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
  /** Called once when the peer has closed its end in order (it finalized or exited). */
  peerClosed?: () => void;
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
  /** Optional: kmod's copyToPeer for the payloads this side writes (cached or streaming stores). */
  toPeer?: PeerCopy;
}

const OPEN = 0;
const FAILED = 1;
const CLOSED = 2;

if (!LITTLE_ENDIAN) {
  throw new Error('ivcom: the shared-memory layout assumes a little-endian host');
}
if (SHARED_WORDS * 4 !== SHARED_WORDS_BYTES) {
  throw new Error('ivcom: the segment\'s shared words do not match the transport contract');
}

export class IvcomChannel implements RingHost {
  readonly rank: number;
  readonly peer: number;
  readonly ringBytes: number;
  readonly chunkBytes: number;

  private readonly i32: Int32Array;
  /** The whole segment (tests scribble over it through here). */
  private readonly u8: Uint8Array;
  private readonly bell: Bell;
  private readonly failCb: (err: Error) => void;
  private readonly tx: TxRing;
  private readonly rx: RxRing;
  /** Words for the runtime's copies shared with the peer (layout.ts). */
  readonly shared: SharedWords;
  private state = OPEN;
  private failure: Error | undefined;
  /** The peer closed its end while our sends waited: sending is over, receiving is not. */
  private txFailure: Error | undefined;
  /** fail was reported (at most once per channel). */
  private reported = false;
  private shutDown = false;
  private readonly myClosedW: number;
  private readonly peerClosedW: number;
  private readonly myOnCpuW: number;
  private readonly peerOnCpuW: number;
  private readonly peerClosedCb: (() => void) | undefined;
  /** The peer's closed word was seen set (and reported). */
  private peerClosedSeen = false;

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
    this.chunkBytes = chunkBytesFor(ringBytes, opts.chunkBytes);
    this.bell = opts.bell;
    this.failCb = opts.fail;
    const lim = { ...DEFAULT_LIMITS, ...opts.limits };
    const txView = new RingView(sab, ringBytes, opts.low ? 0 : 1);
    const rxView = new RingView(sab, ringBytes, opts.low ? 1 : 0);
    this.i32 = txView.i32;
    this.u8 = txView.u8;
    this.myClosedW = wordAt(opts.low ? CLOSED_OFFSET_LOW : CLOSED_OFFSET_HIGH);
    this.peerClosedW = wordAt(opts.low ? CLOSED_OFFSET_HIGH : CLOSED_OFFSET_LOW);
    this.myOnCpuW = wordAt(opts.low ? ON_CPU_OFFSET_LOW : ON_CPU_OFFSET_HIGH);
    this.peerOnCpuW = wordAt(opts.low ? ON_CPU_OFFSET_HIGH : ON_CPU_OFFSET_LOW);
    this.peerClosedCb = opts.peerClosed;
    this.shared = {
      inbound: new Int32Array(sab, sharedWordsOffset(opts.low ? 1 : 0), SHARED_WORDS),
      outbound: new Int32Array(sab, sharedWordsOffset(opts.low ? 0 : 1), SHARED_WORDS),
    };
    this.tx = new TxRing(txView, this, {
      rank: opts.rank,
      peer: opts.peer,
      chunkBytes: this.chunkBytes,
      peerClosedW: this.peerClosedW,
      onPending: opts.onPending,
      copy: opts.copy,
      toPeer: opts.toPeer,
    });
    this.rx = new RxRing(rxView, this, {
      rank: opts.rank,
      peer: opts.peer,
      maxCtx: lim.maxCtx,
      maxCodec: lim.maxCodec,
      maxMessage: Math.min(lim.maxMessageBytes, MAX_MESSAGE_BYTES),
      // The consumer publishes its index at least every releaseBytes while draining a batch, so
      // a producer working concurrently can refill the ring before the whole batch is copied out.
      releaseBytes: Math.max(this.chunkBytes, ringBytes >>> 3),
      deliver: opts.deliver,
      allocate: opts.allocate,
      copy: opts.copy,
    });
    // Nothing is read from the segment here: a freshly granted segment is all zero, and a
    // segment the peer already wrote into is picked up by the first poll()/idle().
  }

  /** Tells the peer whether this side is on a CPU (polling or working) or gave it away. */
  setOnCpu(on: number): void {
    if (this.state === OPEN) this.i32[this.myOnCpuW] = on;
  }

  /** What the peer said of its CPU (a hint, any value: the caller compares, never indexes). */
  peerCpu(): number {
    return this.state === OPEN ? this.i32[this.peerOnCpuW]! : CPU_OFF;
  }

  get failed(): boolean {
    return this.state === FAILED;
  }

  get closed(): boolean {
    return this.state !== OPEN;
  }

  get open(): boolean {
    return this.state === OPEN;
  }

  get sending(): boolean {
    return this.state === OPEN && this.txFailure === undefined;
  }

  /** Sends waiting for ring space (or for the grant). */
  get pendingSends(): number {
    return this.tx.pending;
  }

  /**
   * Posts a message. Returns undefined when it was written into the ring entirely (the caller may
   * reuse its buffers), else a promise that settles when the last byte is written.
   */
  send(msg: OutgoingMessage): Promise<void> | undefined {
    if (this.state !== OPEN || this.txFailure !== undefined) return this.rejectedSend();
    return this.tx.send(msg);
  }

  /**
   * Looks at the rx ring once, delivering complete messages, and advances queued sends. Returns
   * messages delivered plus send records written. A spinning runtime calls it: it never arms a
   * doorbell (that would make the peer ring once per freed chunk).
   */
  poll(): number {
    if (this.state !== OPEN) return 0;
    this.rx.unarm();
    const n = this.rx.drain();
    return this.tx.pending !== 0 ? n + this.tx.pump(false) : n;
  }

  /** The head message, when it is a whole small one with this ctx and tag (RxRing.take). */
  take(ctx: number, tag: number): IncomingMessage | undefined {
    if (this.state !== OPEN) return undefined;
    // A rank that looks at its rings is awake, as in poll(): the peer need not ring.
    this.rx.unarm();
    return this.rx.take(ctx, tag);
  }

  /**
   * About to sleep: request a doorbell for new data (and for free space if sends wait), re-check
   * once, deliver what is there. Also what the doorbell watcher runs after draining the eventfd.
   */
  idle(): number {
    if (this.state !== OPEN) return 0;
    this.rx.arm();
    // The peer's closed word is read BEFORE the drain. The peer sets it (seq-cst) after publishing
    // its last record, so once it is seen, a drain that then reaches an empty ring has delivered
    // everything. Read after the drain it would prove nothing: a drain is bounded to one ring's
    // worth, and a peer streaming a large message can publish its last chunks and close while
    // the drain runs — honouring that close would drop the chunks still in the ring (a streamed
    // message reported lost when its sender finalized right after writing it).
    // Any value but 0 means closed (the word is the peer's).
    const peerClosed = !this.peerClosedSeen && Atomics.load(this.i32, this.peerClosedW) !== 0;
    let n = this.rx.drain();
    if (this.tx.pending !== 0) this.tx.pump(true);
    if (!peerClosed) return n;
    // Nothing is published after the close: each further drain only shrinks what is left.
    while (this.state === OPEN && !this.rx.emptied) {
      const before = this.rx.consumed;
      const more = this.rx.drain();
      if (this.rx.consumed === before && !this.rx.emptied) {
        // Re-entered from a deliver() callback (the outer drain is still running) or stopped on a
        // failure: look again once this turn of the event loop is over (the closing peer rings
        // only once, so no doorbell will come back for it).
        setImmediate(() => this.idle());
        return n;
      }
      n += more;
    }
    if (this.state === OPEN) {
      this.peerClosedSeen = true;
      this.peerClosedCb?.();
    }
    return n;
  }

  /** Resolves when every accepted send is in the ring (or the channel failed); then closed. */
  close(): Promise<void> {
    if (this.state !== OPEN || this.txFailure !== undefined || this.tx.pending === 0) {
      if (this.state === OPEN) this.state = CLOSED;
      return Promise.resolve();
    }
    return new Promise<void>((resolve) => {
      this.tx.whenFlushed(() => {
        if (this.state === OPEN) this.state = CLOSED;
        resolve();
      });
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
    this.tx.rejectAll(
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
  peerGone(): void {
    const n = this.tx.pending;
    const err = new PeerLostError(
      `ivcom: rank ${this.peer} closed its channel while rank ${this.rank} still had ${n} message(s) ` +
        `to send to it; they were not delivered`,
      { rank: this.rank, peer: this.peer },
    );
    this.txFailure = err;
    this.tx.rejectAll(err);
    this.report(err);
  }

  ringBell(): void {
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

  corrupt(what: string): void {
    this.failWith(
      new CorruptError(
        `ivcom channel from rank ${this.peer} to rank ${this.rank} is corrupt (${what}); ` +
          `the peer is broken or hostile, the channel is closed`,
        { rank: this.rank, peer: this.peer },
      ),
    );
  }

  failWith(err: Error): void {
    if (this.state === FAILED) return;
    const wasOpen = this.state === OPEN;
    this.state = FAILED;
    this.failure = err;
    this.rx.drop();
    this.tx.rejectAll(err);
    if (wasOpen) this.report(err);
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

  rejectedSend(): Promise<void> {
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
