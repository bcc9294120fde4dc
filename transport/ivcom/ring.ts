// What the two halves of a channel share: the view of one direction of the segment (its data
// ring and its control words), the byte copy between the segment and private memory, and what a
// half needs from the channel that owns it (failing, ringing the peer's doorbell).

import { CONS_OFFSET, DATA_WANTED_OFFSET, SPACE_WANTED_OFFSET, ctrlOffset, ringOffset, segmentBytes, wordAt } from './layout.js';

/** dst[dstOff, dstOff+n) = src[srcOff, srcOff+n), in bytes. */
export type CopyBytes = (dst: Uint8Array, dstOff: number, src: Uint8Array, srcOff: number, n: number) => void;

/** kmod's copyToPeer: copyBytes into the segment, by cached or streaming stores as each has cost lately. */
export type CopyToPeer = (dst: Uint8Array, dstOff: number, src: Uint8Array, srcOff: number, n: number, choice: Float64Array) => void;

/** The copy into the peer's reach and the length of the state it keeps (one per ring). */
export interface PeerCopy {
  copy: CopyToPeer;
  choiceWords: number;
}

/**
 * Copies up to this many bytes run as a JS loop instead of TypedArray.prototype.set (and, on the
 * receiving side, the subarray() it needs). Measured through ivrun, one-way latency against the
 * payload size: the loop wins up to 40 bytes, ties at 48 and loses at 64 (docs/performance.md).
 */
export const TINY_COPY = 48;

/**
 * Copies of at least this many bytes use the native copy when there is one: below, the call
 * into native code costs what it saves (measured break-even ~4 KiB, 16 KiB 0.50 vs 0.78 µs).
 */
const NATIVE_COPY_MIN = 8192;

/** Byte copy between the segment and private memory; long ones natively when possible. */
export function copyBytes(native: CopyBytes | undefined, dst: Uint8Array, dstOff: number, src: Uint8Array, srcOff: number, n: number): void {
  if (n >= NATIVE_COPY_MIN && native !== undefined) native(dst, dstOff, src, srcOff, n);
  else dst.set(srcOff === 0 && n === src.byteLength ? src : src.subarray(srcOff, srcOff + n), dstOff);
}

/** copyBytes into the segment: long ones by the peer copy's choice of stores when there is one. */
export function copyToPeer(
  toPeer: CopyToPeer | undefined,
  choice: Float64Array,
  native: CopyBytes | undefined,
  dst: Uint8Array,
  dstOff: number,
  src: Uint8Array,
  srcOff: number,
  n: number,
): void {
  if (n >= NATIVE_COPY_MIN && toPeer !== undefined) toPeer(dst, dstOff, src, srcOff, n, choice);
  else copyBytes(native, dst, dstOff, src, srcOff, n);
}

/** One direction of the segment: its data ring and the word indices of its control block. */
export class RingView {
  readonly i32: Int32Array;
  readonly u8: Uint8Array;
  readonly cap: number;
  readonly mask: number;
  /** Byte offset of the data ring in the segment. */
  readonly base: number;
  readonly consW: number;
  readonly dataWantedW: number;
  readonly spaceWantedW: number;

  constructor(sab: SharedArrayBuffer, ringBytes: number, dir: 0 | 1) {
    const bytes = segmentBytes(ringBytes);
    this.i32 = new Int32Array(sab, 0, wordAt(bytes));
    this.u8 = new Uint8Array(sab, 0, bytes);
    this.cap = ringBytes;
    this.mask = ringBytes - 1;
    this.base = ringOffset(dir, ringBytes);
    const c = ctrlOffset(dir);
    this.consW = wordAt(c + CONS_OFFSET);
    this.dataWantedW = wordAt(c + DATA_WANTED_OFFSET);
    this.spaceWantedW = wordAt(c + SPACE_WANTED_OFFSET);
  }
}

/** What a ring half asks of the channel that owns it. */
export interface RingHost {
  /** Neither failed nor closed. */
  readonly open: boolean;
  /** Open, and the peer has not closed its end under our waiting sends. */
  readonly sending: boolean;
  /** The segment held values outside its bounds: fail the channel (CorruptError). */
  corrupt(what: string): void;
  failWith(err: Error): void;
  /** Wakes the peer (it said it sleeps). */
  ringBell(): void;
  /** The peer closed its end while sends wait for space. */
  peerGone(): void;
  /** A rejected promise carrying why sending is over. */
  rejectedSend(): Promise<void>;
}

/** What both halves of a channel know: which ring they work on, for which pair, and how to copy. */
export interface HalfOptions {
  rank: number;
  peer: number;
  copy?: CopyBytes;
}

/** One half of a channel over one direction's ring; the hot fields are copied out of the view. */
export abstract class RingHalf {
  protected readonly i32: Int32Array;
  protected readonly u8: Uint8Array;
  protected readonly cap: number;
  protected readonly mask: number;
  protected readonly rank: number;
  protected readonly peer: number;
  protected readonly nativeCopy: CopyBytes | undefined;

  constructor(
    protected readonly v: RingView,
    protected readonly host: RingHost,
    o: HalfOptions,
  ) {
    this.i32 = v.i32;
    this.u8 = v.u8;
    this.cap = v.cap;
    this.mask = v.mask;
    this.rank = o.rank;
    this.peer = o.peer;
    this.nativeCopy = o.copy;
  }
}
