import { describe, expect, it } from 'vitest';
import { copyBytes, copyChoiceWords, copyToPeer, memAddress } from '../../kmod/index.js';

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

  it('copies right where the destination lies 1-63 bytes past the source modulo 4 KiB (copied by lines, not rep movsb)', () => {
    const sab = new Uint8Array(new SharedArrayBuffer(1 << 20));
    const src = bytes(70_000, 5);
    const srcAt = Number(memAddress(src) % 4096n);
    const sabAt = Number(memAddress(sab) % 4096n);
    for (const delta of [0, 1, 8, 15, 16, 33, 63, 64]) {
      for (const n of [2047, 2048, 4097, 65_536, 69_999]) {
        sab.fill(0);
        const at = (((srcAt + delta - sabAt) % 4096) + 4096) % 4096;
        copyBytes(sab, at + 4096, src, 1, n);
        expect(Buffer.from(sab.subarray(at + 4096, at + 4096 + n)).equals(Buffer.from(src.subarray(1, 1 + n)))).toBe(true);
        expect([sab[at + 4095], sab[at + 4096 + n]]).toEqual([0, 0]);
      }
    }
    // Overlapping ranges 8 bytes apart stay a memmove, both ways.
    const x = bytes(100_000, 9);
    const want = Uint8Array.from(x);
    want.copyWithin(8, 0, 90_000);
    copyBytes(x, 8, x, 0, 90_000);
    expect(Buffer.from(x).equals(Buffer.from(want))).toBe(true);
    const y = bytes(100_000, 11);
    const wantY = Uint8Array.from(y);
    wantY.copyWithin(0, 8, 90_008);
    copyBytes(y, 0, y, 8, 90_000);
    expect(Buffer.from(y).equals(Buffer.from(wantY))).toBe(true);
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

describe('native copyToPeer', () => {
  // choice: [cached ns/KiB, streaming ns/KiB, copies left before exploring, gap] (kmod/src/copy.cc).
  const SLOW = 1e6;
  const FAST = 1;
  const MIN_GAP = 64;
  const MAX_GAP = 1024;
  const choiceOf = (cached: number, streaming: number, left: number, gap = MIN_GAP): Float64Array => Float64Array.from([cached, streaming, left, gap]);

  it('copies the same bytes by cached and by streaming stores, at any alignment and length', () => {
    expect(copyChoiceWords).toBe(4);
    const sab = new Uint8Array(new SharedArrayBuffer(1 << 20));
    const src = bytes(200_000, 13);
    // 10 copies left before exploring: the faster-looking way is taken.
    for (const [label, choice] of [
      ['streaming', () => choiceOf(SLOW, FAST, 10)],
      ['cached', () => choiceOf(FAST, SLOW, 10)],
    ] as const) {
      for (const at of [0, 1, 15, 16, 63, 64, 4095]) {
        for (const n of [16_384, 16_385, 65_536, 65_599, 199_999]) {
          sab.fill(0);
          const c = choice();
          copyToPeer(sab, 4096 + at, src, 1, n, c);
          const ok = Buffer.from(sab.subarray(4096 + at, 4096 + at + n)).equals(Buffer.from(src.subarray(1, 1 + n)));
          expect(ok, `${label} at ${at}, ${n} bytes`).toBe(true);
          expect([sab[4095 + at], sab[4096 + at + n]]).toEqual([0, 0]);
          // Only the way taken was timed.
          if (label === 'streaming') expect([c[0], c[1] !== FAST, c[2], c[3]]).toEqual([SLOW, true, 9, MIN_GAP]);
          else expect([c[0] !== FAST, c[1], c[2], c[3]]).toEqual([true, SLOW, 9, MIN_GAP]);
        }
      }
    }
  });

  it('measures both ways first, then takes the cheaper one, and now and then the other', () => {
    const sab = new Uint8Array(new SharedArrayBuffer(1 << 20));
    const src = bytes(65_536, 3);
    const c = new Float64Array(copyChoiceWords);
    copyToPeer(sab, 0, src, 0, src.byteLength, c);
    expect(c[0]).toBeGreaterThan(0); // cached measured first
    expect(c[1]).toBe(0);
    copyToPeer(sab, 0, src, 0, src.byteLength, c);
    expect(c[1]).toBeGreaterThan(0); // then streaming, and the gaps start
    expect([c[2], c[3]]).toEqual([MIN_GAP, MIN_GAP]);
    // Cached made to look 10x dearer: streaming from now on, but for the exploring copy.
    c[0] = c[1] * 10;
    c[2] = 2;
    const cached = c[0];
    copyToPeer(sab, 0, src, 0, src.byteLength, c);
    expect([c[0], c[2]]).toEqual([cached, 1]);
    copyToPeer(sab, 0, src, 0, src.byteLength, c); // the last one left: explores cached
    expect(c[0]).not.toBe(cached);
    // Within the 2x margin cached stays the choice.
    c[0] = c[1] * 1.5;
    c[2] = 5;
    const streaming = c[1];
    copyToPeer(sab, 0, src, 0, src.byteLength, c);
    expect(c[1]).toBe(streaming);
    expect(Buffer.from(sab.subarray(0, src.byteLength)).equals(Buffer.from(src))).toBe(true);
  });

  it('an exploring copy that confirms the choice doubles the gap, up to the most; one that overturns it starts over', () => {
    const sab = new Uint8Array(new SharedArrayBuffer(1 << 20));
    const src = bytes(65_536, 7);
    // Streaming looks impossibly cheap: an exploring (cached) copy confirms it, whatever it costs.
    const c = choiceOf(SLOW, 1e-9, 1);
    const gaps: number[] = [];
    for (let i = 0; i < 6; i++) {
      c[2] = 1;
      copyToPeer(sab, 0, src, 0, src.byteLength, c);
      expect(c[0]).toBeLessThan(SLOW); // the cached copy's own time, not averaged with the old one
      c[0] = SLOW;
      gaps.push(c[3]!);
      expect(c[2]).toBe(c[3]);
    }
    expect(gaps).toEqual([128, 256, 512, MAX_GAP, MAX_GAP, MAX_GAP]);
    // Streaming now looks impossibly dear: the exploring copy (cached) overturns the choice.
    c[1] = 1e12;
    c[2] = 1;
    copyToPeer(sab, 0, src, 0, src.byteLength, c);
    expect([c[2], c[3]]).toEqual([MIN_GAP, MIN_GAP]);
    expect(c[0]).toBeLessThan(1e12 / 2); // cached is the choice now
    expect(Buffer.from(sab.subarray(0, src.byteLength)).equals(Buffer.from(src))).toBe(true);
  });

  it('caps one slow copy at 4x the average, so an interrupted copy does not flip the choice', () => {
    const sab = new Uint8Array(new SharedArrayBuffer(1 << 20));
    const src = bytes(65_536, 5);
    const c = choiceOf(1e-9, SLOW, 10); // cached looks impossibly fast: any real copy is "slow"
    copyToPeer(sab, 0, src, 0, src.byteLength, c);
    expect(c[0]).toBeCloseTo(1e-9 * (1 + 0.125 * 3), 15);
  });

  it('copies short and overlapping ranges as copyBytes does, untimed', () => {
    const sab = new Uint8Array(new SharedArrayBuffer(1 << 16));
    const src = bytes(16_383, 1);
    const c = new Float64Array(copyChoiceWords);
    copyToPeer(sab, 5, src, 0, src.byteLength, c);
    expect(Buffer.from(sab.subarray(5, 5 + src.byteLength)).equals(Buffer.from(src))).toBe(true);
    const x = bytes(100_000, 9);
    const want = Uint8Array.from(x);
    want.copyWithin(8, 0, 90_000);
    copyToPeer(x, 8, x, 0, 90_000, c);
    expect(Buffer.from(x).equals(Buffer.from(want))).toBe(true);
    expect([...c]).toEqual([0, 0, 0, 0]);
  });

  it('rejects a choice that is not a Float64Array of copyChoiceWords, and ranges past either end', () => {
    const a = new Uint8Array(70_000);
    const b = bytes(70_000, 1);
    expect(() => copyToPeer(a, 0, b, 0, 65_536, new Float64Array(3))).toThrow(TypeError);
    expect(() => copyToPeer(a, 0, b, 0, 65_536, new Float32Array(4) as unknown as Float64Array)).toThrow(TypeError);
    expect(() => copyToPeer(a, 10_000, b, 0, 65_536, new Float64Array(4))).toThrow(RangeError);
    expect(a.every((v) => v === 0)).toBe(true);
  });
});
