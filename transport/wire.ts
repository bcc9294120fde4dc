// The frame header every transport carries in front of a message: the one codec of its layout.
// It lives here, where frames are carried; the runtime only fills its fields. Lengths are 64-bit:
// no 2 GiB cap. TCP reads it from a byte stream (a DataView at any offset); the ivcom rings from
// their 4-byte-aligned records (32-bit words, the same layout on the little-endian hosts the
// segment is used on: checked at load by ivcom/layout.ts).

import { constants as bufferConstants } from 'node:buffer';
import type { MessageHeader } from './transport.js';

export const HEADER_BYTES = 24;

/**
 * The largest payload a frame may carry: a message arrives as one Uint8Array, and one array of
 * Node 20 holds at most buffer.constants.MAX_LENGTH bytes (2^32, 4 GiB). A larger value must be
 * sent in parts; a header claiming more is corrupt.
 */
export const MAX_MESSAGE_BYTES: number = bufferConstants.MAX_LENGTH;

// Layout (little endian):
//   0 u32 ctx   4 u32 source   8 i32 tag   12 u8 codec   13 u8 flags   14 u16 reserved (0)
//   16 u64 total payload bytes of the message (fragments carry the same header)
const CTX = 0;
const SOURCE = 4;
const TAG = 8;
const CODEC = 12;
const FLAGS = 13;
const RESERVED = 14;
const TOTAL = 16;
const TWO32 = 4294967296;

export interface FrameHeader extends MessageHeader {
  flags: number;
  byteLength: number;
}

export function writeHeader(dv: DataView, off: number, h: FrameHeader): void {
  dv.setUint32(off + CTX, h.ctx, true);
  dv.setUint32(off + SOURCE, h.source, true);
  dv.setInt32(off + TAG, h.tag, true);
  dv.setUint8(off + CODEC, h.codec);
  dv.setUint8(off + FLAGS, h.flags);
  dv.setUint16(off + RESERVED, 0, true);
  dv.setBigUint64(off + TOTAL, BigInt(h.byteLength), true);
}

/** Reads a header; the caller bounds-checks the values against its own limits before use. */
export function readHeader(dv: DataView, off: number): FrameHeader {
  const len = dv.getBigUint64(off + TOTAL, true);
  return {
    ctx: dv.getUint32(off + CTX, true),
    source: dv.getUint32(off + SOURCE, true),
    tag: dv.getInt32(off + TAG, true),
    codec: dv.getUint8(off + CODEC),
    flags: dv.getUint8(off + FLAGS),
    byteLength: len > BigInt(Number.MAX_SAFE_INTEGER) ? Number.NaN : Number(len),
  };
}

/** The header as 32-bit words at word index `w` of `i32` (no allocation: the ring's hot path). */
export function writeHeaderWords(i32: Int32Array, w: number, ctx: number, source: number, tag: number, codec: number, flags: number, total: number): void {
  i32[w + CTX / 4] = ctx;
  i32[w + SOURCE / 4] = source;
  i32[w + TAG / 4] = tag;
  i32[w + CODEC / 4] = codec | (flags << 8); // reserved bytes 0
  i32[w + TOTAL / 4] = total; // ToInt32: the low 32 bits
  i32[w + TOTAL / 4 + 1] = Math.floor(total / TWO32);
}

/** A header read from shared memory: every field copied once, before any check looks at it. */
export interface HeaderWords {
  ctx: number;
  source: number;
  tag: number;
  codec: number;
  flags: number;
  /** Non-zero reserved bytes mean a corrupt or foreign header. */
  reserved: number;
  /** May exceed 2^53 (then not exact): the caller bounds it. */
  total: number;
}

/** Reads each word of the header at word index `w` exactly once, into `out`. */
export function readHeaderWords(i32: Int32Array, w: number, out: HeaderWords): void {
  const cf = i32[w + CODEC / 4]! >>> 0;
  out.ctx = i32[w + CTX / 4]! >>> 0;
  out.source = i32[w + SOURCE / 4]! >>> 0;
  out.tag = i32[w + TAG / 4]! | 0;
  out.codec = cf & 0xff;
  out.flags = (cf >>> 8) & 0xff;
  out.reserved = cf >>> 16;
  out.total = (i32[w + TOTAL / 4 + 1]! >>> 0) * TWO32 + (i32[w + TOTAL / 4]! >>> 0);
}

/** The little-endian u32 at `off` of `b` (announcements and trailers are byte arrays, not word views). */
export function readU32(b: Uint8Array, off: number): number {
  return (b[off]! | (b[off + 1]! << 8) | (b[off + 2]! << 16) | (b[off + 3]! << 24)) >>> 0;
}

/** Writes `v` as a little-endian u32 at `off` of `b`. */
export function writeU32(b: Uint8Array, off: number, v: number): void {
  b[off] = v & 0xff;
  b[off + 1] = (v >>> 8) & 0xff;
  b[off + 2] = (v >>> 16) & 0xff;
  b[off + 3] = (v >>> 24) & 0xff;
}
