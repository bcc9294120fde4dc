import { constants as bufferConstants } from 'node:buffer';
import { isDeepStrictEqual } from 'node:util';
import { describe, expect, it } from 'vitest';
import { MAX_DEPTH } from '../../runtime/clonable.js';
import { Codec, encode } from '../../runtime/codec.js';
import { decodeLocal } from '../helpers/local-decode.js';
import { CorruptError, TooLargeError, UnserializableError } from '../../runtime/errors.js';
import { MAX_MESSAGE_BYTES } from '../../transport/wire.js';

const roundTrip = (v: unknown) => {
  const e = encode(v);
  return decodeLocal(e.codec, e.bytes.slice(), 0);
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
    const v = decodeLocal(e.codec, shifted.subarray(1), 0) as Float64Array;
    expect(Array.from(v)).toEqual([1.5, 2.5]);
  });

  it('gives every received view a buffer of its own, even when the payload sits in a shared slab', () => {
    const slab = new Uint8Array(4096);
    slab.set(new Uint8Array(new Float64Array([7, 8]).buffer), 64);
    const v = decodeLocal(Codec.Float64, slab.subarray(64, 80), 0) as Float64Array;
    expect(Array.from(v)).toEqual([7, 8]);
    expect(v.buffer.byteLength).toBe(16);
    const dv = decodeLocal(Codec.DataView, slab.subarray(64, 72), 0) as DataView;
    expect(dv.buffer.byteLength).toBe(8);
    // An exactly-sized payload is used in place (no copy).
    const own = new Uint8Array(128);
    expect((decodeLocal(Codec.Float64, own, 0) as Float64Array).buffer).toBe(own.buffer);
    // Small ones (V8 keeps them on its heap) are rebuilt without touching `.buffer`.
    const small = decodeLocal(Codec.Int16, new Uint8Array([1, 0, 2, 0]), 0) as Int16Array;
    expect(small).toEqual(new Int16Array([1, 2]));
  });

  it('rejects a raw payload that is not a whole number of elements as corrupt', () => {
    expect(() => decodeLocal(Codec.Float64, new Uint8Array(12), 3)).toThrow(expect.objectContaining({ code: 'ERR_IVCOM_CORRUPT' }));
    expect(() => decodeLocal(99, new Uint8Array(1), 3)).toThrow(/unknown codec/);
    expect(() => decodeLocal(Codec.Msgpack, new Uint8Array([0xdb, 0xff, 0xff, 0xff, 0x7f, 0x41]), 3)).toThrow(expect.objectContaining({ code: 'ERR_IVCOM_CORRUPT' }));
  });

  it('small msgpack values own what they hold: decoding the next message does not change them', () => {
    // Small payloads are decoded out of one reused scratch; binary values must not be views of it.
    const first = { b: Buffer.from([1, 2, 3]), u: new Uint8Array([4, 5]), f: new Float64Array([6.5]), s: 'x' };
    const e1 = encode(first);
    expect(e1.bytes.byteLength).toBeLessThanOrEqual(64);
    const got = decodeLocal(e1.codec, e1.bytes.slice(), 0) as Record<string, ArrayLike<number>>;
    const e2 = encode({ b: Buffer.from([9, 9, 9]), u: new Uint8Array([9, 9]), f: new Float64Array([9]), s: 'y' });
    decodeLocal(e2.codec, e2.bytes.slice(), 0);
    expect([...got.b!]).toEqual([1, 2, 3]);
    expect([...got.u!]).toEqual([4, 5]);
    expect([...got.f!]).toEqual([6.5]);
    expect(got.s).toBe('x');
  });

  it('a getter that sends while its object is being packed: both messages come out whole', () => {
    // msgpackr packs the getter's value in the middle of the outer value (re-entrantly); each
    // output is read off msgpackr's buffer (packed.ts) as soon as its own pack returns.
    let inner: { codec: number; bytes: Uint8Array } | undefined;
    const outer = {
      a: 1,
      get b(): number {
        const e = encode({ x: 'inner', n: [1, 2, 3] });
        inner = { codec: e.codec, bytes: e.bytes.slice() };
        return 2;
      },
      c: 'outer'.repeat(20), // more than 64 bytes encoded: a view of msgpackr's buffer
    };
    const e = encode(outer);
    const out = { codec: e.codec, bytes: e.bytes.slice() };
    expect(out.codec).toBe(Codec.MsgpackShaped);
    expect(decodeLocal(out.codec, out.bytes, 0)).toEqual({ a: 1, b: 2, c: 'outer'.repeat(20) });
    expect(decodeLocal(inner!.codec, inner!.bytes, 0)).toEqual({ x: 'inner', n: [1, 2, 3] });
  });

  it('keeps structured values through msgpackr', () => {
    const v = { m: new Map([[1, new Set(['a'])]]), d: new Date(3), b: 1n << 300n, u: undefined, n: [null, new Uint16Array([7])] };
    expect(isDeepStrictEqual(roundTrip(v), v)).toBe(true);
  });
});

describe('codec limits', () => {
  // ArrayBuffers are zero pages until written: 5 GiB of address space, no 5 GiB of memory.
  const FIVE_GIB = 5 * 2 ** 30;
  const codeOf = (f: () => unknown) => {
    try {
      f();
    } catch (e) {
      return e as Error & { code?: string };
    }
    throw new Error('did not throw');
  };

  it('refuses a message larger than one Node array (ERR_IVCOM_TOO_LARGE), naming the limit and the way out', () => {
    expect(MAX_MESSAGE_BYTES).toBe(bufferConstants.MAX_LENGTH);
    const f64 = new Float64Array(new ArrayBuffer(FIVE_GIB));
    for (const v of [f64, f64.buffer, new DataView(f64.buffer), { nested: f64 }, [1, f64]]) {
      const e = codeOf(() => encode(v));
      expect(e).toBeInstanceOf(TooLargeError);
      expect(e.code).toBe('ERR_IVCOM_TOO_LARGE');
      expect(e.message).toContain(String(MAX_MESSAGE_BYTES));
      expect(e.message).toMatch(/send it in parts/);
    }
    expect(codeOf(() => encode(f64)).message).toContain(`${FIVE_GIB} bytes`);
    // The limit itself is allowed: a view of exactly MAX_MESSAGE_BYTES encodes (zero-copy).
    expect(encode(new Uint8Array(f64.buffer, 0, MAX_MESSAGE_BYTES)).bytes.byteLength).toBe(MAX_MESSAGE_BYTES);
  });

  it(`refuses a value nested deeper than ${MAX_DEPTH} levels (ERR_IVCOM_UNSERIALIZABLE) without overflowing the stack`, () => {
    const nest = (depth: number, wrap: (x: unknown) => unknown) => {
      let v: unknown = 1;
      for (let i = 0; i < depth; i++) v = wrap(v);
      return v;
    };
    const wraps: Array<(x: unknown) => unknown> = [(x) => [x], (x) => ({ k: x }), (x) => new Map([[0, x]]), (x) => new Set([x])];
    for (const wrap of wraps) {
      expect(isDeepStrictEqual(roundTrip(nest(MAX_DEPTH, wrap)), nest(MAX_DEPTH, wrap))).toBe(true);
      for (const depth of [MAX_DEPTH + 1, 10_000]) {
        const e = codeOf(() => encode(nest(depth, wrap)));
        expect(e).toBeInstanceOf(UnserializableError);
        expect(e.code).toBe('ERR_IVCOM_UNSERIALIZABLE');
        expect(e.message).toContain(`${MAX_DEPTH} levels`);
      }
    }
    // Shared and cyclic references are not nesting: a second visit is a reference.
    const shared = nest(MAX_DEPTH - 2, (x) => [x]); // under cyc and its array: exactly MAX_DEPTH
    const cyc: { self?: unknown; deep: unknown } = { deep: [shared, shared] };
    cyc.self = cyc;
    expect(() => encode(cyc)).not.toThrow();
  });

  it('decodes a hostile deeply nested frame as ERR_IVCOM_CORRUPT, and decodes normally afterwards', () => {
    // 200,000 nested one-element arrays: far past what recursion can unpack.
    const depth = 200_000;
    const bytes = new Uint8Array(depth + 1).fill(0x91);
    bytes[depth] = 0xc0;
    const e = codeOf(() => decodeLocal(Codec.Msgpack, bytes, 7));
    expect(e).toBeInstanceOf(CorruptError);
    expect(e.code).toBe('ERR_IVCOM_CORRUPT');
    expect(e.message).toMatch(/rank 7 nests too deeply/);
    expect(roundTrip({ after: [1, 2] })).toEqual({ after: [1, 2] });
  });

  it('delivers sparse-array holes as undefined entries (documented in docs/api.md)', () => {
    const a: unknown[] = [1, , 3]; // eslint-disable-line no-sparse-arrays
    a[6] = 7;
    const b = roundTrip(a) as unknown[];
    expect(b.length).toBe(7);
    expect(b[1]).toBeUndefined();
    expect(1 in b).toBe(true); // structured clone would keep the hole (1 in clone === false)
    expect([b[0], b[2], b[6]]).toEqual([1, 3, 7]);
  });
});
