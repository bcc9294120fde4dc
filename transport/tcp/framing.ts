// TCP framing: [u32 fragment bytes][24-byte wire header][fragment]. A message larger than one
// fragment is sent as several frames (FIRST … LAST) that carry the same header, so neither side
// ever needs a buffer or a length field bigger than one fragment, and lengths stay 64-bit.

import { HEADER_BYTES, readHeader, writeHeader, type FrameHeader } from '../wire.js';
import type { IncomingMessage } from '../transport.js';

export const PREFIX_BYTES = 4 + HEADER_BYTES;
export const FLAG_FIRST = 1;
export const FLAG_LAST = 2;
/** Messages above this size may be assembled in a posted receive's buffer. */
const PLACE_MIN = 4096;

export function encodePrefix(buf: Uint8Array, off: number, fragBytes: number, h: FrameHeader): void {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  dv.setUint32(off, fragBytes, true);
  writeHeader(dv, off + 4, h);
}

export interface ReaderLimits {
  /** The only world rank this connection may speak for (fixed by the handshake). */
  peer: number;
  /** Largest message the receiver is willing to allocate. */
  maxMessage: number;
  maxFragment: number;
  /** Where to assemble a message larger than one frame's worth (see Upcalls.allocate). */
  allocate?: (h: FrameHeader) => Uint8Array | undefined;
}

/**
 * Reassembles messages from a byte stream. Everything read from the wire is checked against the
 * limits before it sizes an allocation or a copy; a violation is thrown as a message for the
 * caller to turn into an error on that connection.
 */
export class FrameReader {
  private readonly prefix = new Uint8Array(PREFIX_BYTES);
  private readonly prefixView = new DataView(this.prefix.buffer);
  private prefixHave = 0;
  /** Header of the message being reassembled, if any. */
  private cur: FrameHeader | undefined;
  private dest: Uint8Array | undefined;
  private destOff = 0;
  /** Bytes of the current fragment still to copy. */
  private fragLeft = 0;
  private inFrame = false;
  private lastFrag = false;

  constructor(
    private readonly limits: ReaderLimits,
    private readonly deliver: (m: IncomingMessage) => void,
  ) {}

  /** True between messages: a connection that closes now loses nothing. */
  get idle(): boolean {
    return !this.inFrame && this.prefixHave === 0 && this.cur === undefined;
  }

  feed(chunk: Uint8Array): void {
    let off = 0;
    const n = chunk.byteLength;
    while (off < n) {
      if (!this.inFrame) {
        // Whole prefix present in the chunk and nothing half-read: parse it in place.
        if (this.prefixHave === 0 && n - off >= PREFIX_BYTES) {
          this.startFrame(new DataView(chunk.buffer, chunk.byteOffset + off, PREFIX_BYTES));
          off += PREFIX_BYTES;
        } else {
          const take = Math.min(PREFIX_BYTES - this.prefixHave, n - off);
          this.prefix.set(chunk.subarray(off, off + take), this.prefixHave);
          this.prefixHave += take;
          off += take;
          if (this.prefixHave < PREFIX_BYTES) return;
          this.prefixHave = 0;
          this.startFrame(this.prefixView);
        }
        if (this.fragLeft === 0) this.endFrame();
        continue;
      }
      const take = Math.min(this.fragLeft, n - off);
      this.dest!.set(chunk.subarray(off, off + take), this.destOff);
      this.destOff += take;
      this.fragLeft -= take;
      off += take;
      if (this.fragLeft === 0) this.endFrame();
    }
  }

  private startFrame(dv: DataView): void {
    const frag = dv.getUint32(0, true);
    const h = readHeader(dv, 4);
    const { peer, maxMessage, maxFragment } = this.limits;
    if (h.source !== peer) throw new Error(`frame claims source ${h.source}, connection belongs to rank ${peer}`);
    if (frag > maxFragment) throw new Error(`fragment of ${frag} bytes exceeds ${maxFragment}`);
    if (!(h.byteLength <= maxMessage)) throw new Error(`message of ${h.byteLength} bytes exceeds ${maxMessage}`);
    const first = (h.flags & FLAG_FIRST) !== 0;
    if (first !== (this.cur === undefined)) throw new Error('fragment out of sequence');
    if (first) {
      this.cur = h;
      const placed = h.byteLength > PLACE_MIN ? this.limits.allocate?.(h) : undefined;
      this.dest = placed !== undefined && placed.byteLength === h.byteLength ? placed : new Uint8Array(h.byteLength);
      this.destOff = 0;
    } else {
      const c = this.cur!;
      if (h.byteLength !== c.byteLength || h.ctx !== c.ctx || h.tag !== c.tag || h.codec !== c.codec) {
        throw new Error('fragment header differs from its message');
      }
    }
    if (frag > this.cur!.byteLength - this.destOff) throw new Error('fragment overruns its message');
    this.lastFrag = (h.flags & FLAG_LAST) !== 0;
    if (this.lastFrag && this.destOff + frag !== this.cur!.byteLength) throw new Error('last fragment ends early');
    this.fragLeft = frag;
    this.inFrame = true;
  }

  private endFrame(): void {
    this.inFrame = false;
    if (!this.lastFrag) return;
    const c = this.cur!;
    const payload = this.dest!;
    this.cur = undefined;
    this.dest = undefined;
    this.deliver({ ctx: c.ctx, source: c.source, tag: c.tag, codec: c.codec, payload, seq: 0 });
  }
}
