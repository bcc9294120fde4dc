import { isDeepStrictEqual } from 'node:util';
import { describe, expect, it } from 'vitest';
import { Codec, decode, encode } from '../../runtime/codec.js';

const roundTrip = (v: unknown) => {
  const e = encode(v);
  return decode(e.codec, e.bytes.slice(), 0);
};

describe('codec', () => {
  it('sends typed arrays as raw views of the caller memory (zero-copy) and rebuilds the same type', () => {
    const kinds = [Int8Array, Uint8Array, Uint8ClampedArray, Int16Array, Uint16Array, Int32Array, Uint32Array, Float32Array, Float64Array];
    for (const K of kinds) {
      const a = new K(new ArrayBuffer(1024), 8, 100);
      a.fill(3);
      const e = encode(a);
      expect(e.bytes.buffer).toBe(a.buffer);
      expect(e.bytes.byteOffset).toBe(8);
      const b = roundTrip(a);
      expect(b).toBeInstanceOf(K);
      expect(isDeepStrictEqual(b, a)).toBe(true);
    }
    expect(roundTrip(new BigInt64Array([-5n]))).toEqual(new BigInt64Array([-5n]));
    // Small ones (≤ 64 bytes, kept on V8's heap) are copied instead, which is cheaper there.
    const small = new Float32Array([1.5, -2]);
    const es = encode(small);
    expect(es.bytes.buffer).not.toBe(small.buffer);
    expect(roundTrip(small)).toEqual(small);
    expect(encode(Buffer.from('x')).codec).toBe(Codec.Buffer);
    expect(Buffer.isBuffer(roundTrip(Buffer.from('xy')))).toBe(true);
  });

  it('copies a misaligned payload instead of failing', () => {
    const e = encode(new Float64Array([1.5, 2.5]));
    const shifted = new Uint8Array(17);
    shifted.set(e.bytes, 1);
    const v = decode(e.codec, shifted.subarray(1), 0) as Float64Array;
    expect(Array.from(v)).toEqual([1.5, 2.5]);
  });

  it('gives every received view a buffer of its own, even when the payload sits in a shared slab', () => {
    const slab = new Uint8Array(4096);
    slab.set(new Uint8Array(new Float64Array([7, 8]).buffer), 64);
    const v = decode(Codec.Float64, slab.subarray(64, 80), 0) as Float64Array;
    expect(Array.from(v)).toEqual([7, 8]);
    expect(v.buffer.byteLength).toBe(16);
    const dv = decode(Codec.DataView, slab.subarray(64, 72), 0) as DataView;
    expect(dv.buffer.byteLength).toBe(8);
    // An exactly-sized payload is used in place (no copy).
    const own = new Uint8Array(128);
    expect((decode(Codec.Float64, own, 0) as Float64Array).buffer).toBe(own.buffer);
    // Small ones (V8 keeps them on its heap) are rebuilt without touching `.buffer`.
    const small = decode(Codec.Int16, new Uint8Array([1, 0, 2, 0]), 0) as Int16Array;
    expect(small).toEqual(new Int16Array([1, 2]));
  });

  it('rejects a raw payload that is not a whole number of elements as corrupt', () => {
    expect(() => decode(Codec.Float64, new Uint8Array(12), 3)).toThrow(expect.objectContaining({ code: 'ERR_IVCOM_CORRUPT' }));
    expect(() => decode(99, new Uint8Array(1), 3)).toThrow(/unknown codec/);
    expect(() => decode(Codec.Msgpack, new Uint8Array([0xdb, 0xff, 0xff, 0xff, 0x7f, 0x41]), 3)).toThrow(expect.objectContaining({ code: 'ERR_IVCOM_CORRUPT' }));
  });

  it('keeps structured values through msgpackr', () => {
    const v = { m: new Map([[1, new Set(['a'])]]), d: new Date(3), b: 1n << 300n, u: undefined, n: [null, new Uint16Array([7])] };
    expect(isDeepStrictEqual(roundTrip(v), v)).toBe(true);
  });
});
