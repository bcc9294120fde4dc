import { describe, expect, it } from 'vitest';
import { encodePrefix, FLAG_FIRST, FLAG_LAST, FrameReader, PREFIX_BYTES } from '../../transport/tcp/framing.js';
import type { IncomingMessage } from '../../transport/transport.js';

function frames(payload: Uint8Array, frag: number, source = 1): Uint8Array {
  const out: Uint8Array[] = [];
  const n = payload.byteLength;
  for (let off = 0; off < n || (n === 0 && off === 0); off += frag) {
    const len = Math.min(frag, n - off);
    const p = new Uint8Array(PREFIX_BYTES);
    encodePrefix(p, 0, len, { ctx: 2, source, tag: 9, codec: 5, flags: (off === 0 ? FLAG_FIRST : 0) | (off + len === n ? FLAG_LAST : 0), byteLength: n });
    out.push(p, payload.subarray(off, off + len));
    if (n === 0) break;
  }
  return Buffer.concat(out);
}

const limits = { peer: 1, maxMessage: 1 << 30, maxFragment: 1 << 20 };

describe('FrameReader', () => {
  it('reassembles fragmented messages from arbitrarily split chunks', () => {
    const msgs = [new Uint8Array(0), new Uint8Array(100).fill(1), new Uint8Array(70_000).map((_, i) => i & 0xff)];
    const stream = Buffer.concat(msgs.map((m) => frames(m, 4096)));
    for (const seed of [1, 7, 4096, 33]) {
      const got: IncomingMessage[] = [];
      const r = new FrameReader(limits, (m) => got.push(m));
      for (let off = 0; off < stream.length; ) {
        const step = ((off * 31 + seed) % 5000) + 1;
        r.feed(stream.subarray(off, off + step));
        off += step;
      }
      expect(got.map((m) => m.payload.byteLength)).toEqual([0, 100, 70_000]);
      expect(Buffer.from(got[2]!.payload).equals(Buffer.from(msgs[2]!))).toBe(true);
      expect(got[1]).toMatchObject({ ctx: 2, source: 1, tag: 9, codec: 5 });
      expect(r.idle).toBe(true);
    }
  });

  it('refuses frames that lie about their source, size or sequence', () => {
    const reader = () => new FrameReader(limits, () => {});
    expect(() => reader().feed(frames(new Uint8Array(4), 4, 2))).toThrow(/claims source 2/);
    const huge = frames(new Uint8Array(8), 8);
    new DataView(huge.buffer, huge.byteOffset).setBigUint64(4 + 16, 1n << 40n, true);
    expect(() => reader().feed(huge)).toThrow(/exceeds/);
    const second = frames(new Uint8Array(8192), 4096).subarray(PREFIX_BYTES + 4096);
    expect(() => reader().feed(second)).toThrow(/out of sequence/);
    const over = frames(new Uint8Array(8), 8);
    new DataView(over.buffer, over.byteOffset).setUint32(0, 16, true);
    expect(() => reader().feed(over)).toThrow(/overruns/);
  });
});
