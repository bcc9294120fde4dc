import { Packr } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import { ON_HEAP_MAX, packed } from '../../runtime/packed.js';

const PLAIN = { useRecords: false, mapsAsObjects: true } as const;

describe('packed(): msgpackr output a send may keep', () => {
  it("gives msgpackr's own bytes, small outputs copied out of its Buffer, large ones as a view of it", () => {
    const ours = new Packr(PLAIN);
    const theirs = new Packr(PLAIN);
    const values = [{ op: 'x', seq: 1, tag: 7, data: [1.5, 2.5] }, 'a'.repeat(ON_HEAP_MAX), 'b'.repeat(ON_HEAP_MAX - 2), [1, 2, 3], 'c'.repeat(10_000)];
    for (const v of values) {
      const out = packed(ours, v);
      const want = theirs.pack(v);
      expect(Buffer.from(out)).toEqual(Buffer.from(want));
      expect(Buffer.isBuffer(out)).toBe(out.byteLength > ON_HEAP_MAX);
      if (out.byteLength <= ON_HEAP_MAX) expect(out.byteOffset).toBe(0);
    }
  });

  it('an output kept stays as it was while msgpackr packs on (a send queued behind a full ring)', () => {
    const p = new Packr(PLAIN);
    const kept = Array.from({ length: 600 }, (_, i) => ({ out: packed(p, { i, s: 'x'.repeat(i % 80) }), i }));
    const check = new Packr(PLAIN);
    for (const { out, i } of kept) expect(Buffer.from(out)).toEqual(Buffer.from(check.pack({ i, s: 'x'.repeat(i % 80) })));
  });
});
