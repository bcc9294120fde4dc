// The frame header every transport carries in front of a message. It lives here, where frames
// are carried; the runtime only fills its fields. Lengths are 64-bit: no 2 GiB cap.

import type { MessageHeader } from './transport.js';

export const HEADER_BYTES = 24;

// Layout (little endian):
//   0 u32 ctx   4 u32 source   8 i32 tag   12 u8 codec   13 u8 flags   14 u16 reserved
//   16 u64 total payload bytes of the message (fragments carry the same header)
export interface FrameHeader extends MessageHeader {
  flags: number;
  byteLength: number;
}

export function writeHeader(dv: DataView, off: number, h: FrameHeader): void {
  dv.setUint32(off, h.ctx, true);
  dv.setUint32(off + 4, h.source, true);
  dv.setInt32(off + 8, h.tag, true);
  dv.setUint8(off + 12, h.codec);
  dv.setUint8(off + 13, h.flags);
  dv.setUint16(off + 14, 0, true);
  dv.setBigUint64(off + 16, BigInt(h.byteLength), true);
}

/** Reads a header; the caller bounds-checks the values against its own limits before use. */
export function readHeader(dv: DataView, off: number): FrameHeader {
  const len = dv.getBigUint64(off + 16, true);
  return {
    ctx: dv.getUint32(off, true),
    source: dv.getUint32(off + 4, true),
    tag: dv.getInt32(off + 8, true),
    codec: dv.getUint8(off + 12),
    flags: dv.getUint8(off + 13),
    byteLength: len > BigInt(Number.MAX_SAFE_INTEGER) ? Number.NaN : Number(len),
  };
}
