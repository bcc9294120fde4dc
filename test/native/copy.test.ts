import { describe, expect, it } from 'vitest';
import { copyBytes } from '../../kmod/index.js';

const bytes = (n: number, seed: number): Uint8Array => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff);

describe('native copyBytes', () => {
  it('copies between private and SharedArrayBuffer memory, both ways, at any byte offsets', () => {
    const sab = new Uint8Array(new SharedArrayBuffer(1 << 20));
    const src = bytes(300_001, 7);
    copyBytes(sab, 12_345, src, 1, 300_000);
    expect(Buffer.from(sab.subarray(12_345, 312_345)).equals(Buffer.from(src.subarray(1)))).toBe(true);
    expect(sab[12_344]).toBe(0);
    expect(sab[312_345]).toBe(0);
    const back = new Uint8Array(300_000);
    copyBytes(back, 0, sab, 12_345, 300_000);
    expect(Buffer.from(back).equals(Buffer.from(src.subarray(1)))).toBe(true);
  });

  it('counts in bytes whatever the kinds, and honours the views\' own offsets', () => {
    const f = new Float64Array([1.5, -2.25, 3, 4]);
    const dst = new Float64Array(new SharedArrayBuffer(64), 16, 4); // a view 16 bytes in
    copyBytes(dst, 8, f, 0, 16);
    expect([...dst]).toEqual([0, 1.5, -2.25, 0]);
    expect(new Float64Array(dst.buffer)[2]).toBe(0); // nothing before the view was touched
  });

  it('is a memmove: overlapping ranges of one array come out right', () => {
    const x = bytes(1000, 3);
    const want = Uint8Array.from(x);
    want.copyWithin(100, 0, 800);
    copyBytes(x, 100, x, 0, 800);
    expect(Buffer.from(x).equals(Buffer.from(want))).toBe(true);
  });

  it('rejects ranges past either end and arguments that are not typed arrays, copying nothing', () => {
    const a = new Uint8Array(10);
    const b = bytes(10, 1);
    expect(() => copyBytes(a, 5, b, 0, 6)).toThrow(RangeError);
    expect(() => copyBytes(a, 0, b, 5, 6)).toThrow(RangeError);
    expect(() => copyBytes(a, -1, b, 0, 1)).toThrow(RangeError);
    expect(() => copyBytes(a, 0, b, 0, 1.5)).toThrow(RangeError);
    expect(() => copyBytes(new ArrayBuffer(10) as unknown as Uint8Array, 0, b, 0, 1)).toThrow(TypeError);
    expect([...a]).toEqual(new Array(10).fill(0));
    copyBytes(a, 10, b, 10, 0); // empty, at the very end: fine
  });
});
