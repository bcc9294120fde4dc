import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { reduceInto } from '../../kmod/index.js';
import { NATIVE_REDUCE_MIN, kernel, useNativeKernels, type AnyTypedArray, type NativeReduce } from '../../runtime/collectives/op.js';
import { rng } from '../helpers/rng.js';

const KINDS = [
  Int8Array, Uint8Array, Int16Array, Uint16Array, Int32Array, Uint32Array, Float32Array, Float64Array, BigInt64Array, BigUint64Array,
] as const;
const OPS = ['SUM', 'PROD', 'MIN', 'MAX', 'BAND', 'BOR', 'BXOR'] as const;
type Ctor = (typeof KINDS)[number];

/** Random elements with the edge cases of each kind mixed in (extremes, ±0, NaN, ±Infinity). */
function fill(ctor: Ctor, n: number, rand: () => number): AnyTypedArray {
  const x = new ctor(n) as AnyTypedArray;
  const big = ctor === BigInt64Array || ctor === BigUint64Array;
  const float = ctor === Float32Array || ctor === Float64Array;
  const edges: unknown[] = float
    ? [0, -0, NaN, Infinity, -Infinity, Number.MAX_VALUE, -Number.MIN_VALUE, 1e-40]
    : big
      ? [0n, -1n, 1n << 63n, (1n << 63n) - 1n, 3n]
      : [0, -1, 127, -128, 255, 32767, -32768, 65535, 2 ** 31 - 1, -(2 ** 31), 2 ** 32 - 1];
  const o = x as unknown as { [i: number]: unknown };
  for (let i = 0; i < n; i++) {
    if (rand() < 0.05) o[i] = edges[Math.floor(rand() * edges.length)];
    else if (big) o[i] = BigInt(Math.floor((rand() - 0.5) * 2 ** 52)) * BigInt(Math.floor(rand() * 4096));
    else if (float) o[i] = (rand() - 0.5) * 10 ** Math.floor(rand() * 12 - 6);
    else o[i] = Math.floor((rand() - 0.5) * 2 ** 33);
  }
  return x;
}

function bytes(x: AnyTypedArray): Buffer {
  return Buffer.from(x.buffer, x.byteOffset, x.byteLength);
}

/** Same elements: bit for bit, except that any NaN equals any NaN (JS cannot tell them apart). */
function same(a: AnyTypedArray, b: AnyTypedArray): boolean {
  if (a instanceof Float32Array || a instanceof Float64Array) {
    for (let i = 0; i < a.length; i++) if (!Object.is(a[i], (b as Float64Array)[i])) return false;
    return a.length === b.length;
  }
  return bytes(a).equals(bytes(b));
}

describe('native reduction kernels', () => {
  beforeAll(() => useNativeKernels(undefined));
  afterAll(() => useNativeKernels(undefined));

  it('give the JS kernels\' results (bit for bit but for NaN payloads), for every op and kind, in place and out of place', () => {
    const rand = rng(7);
    const n = 3001; // odd: the vectorized loops end in a scalar tail
    let compared = 0;
    for (const ctor of KINDS) {
      for (const op of OPS) {
        const js = kernel(op, ctor.name as never);
        const a = fill(ctor, n, rand);
        const b = fill(ctor, n + 5, rand);
        const code = OPS.indexOf(op);
        if (js === undefined) {
          // Bitwise ops on floats: JS has no kernel, native declines.
          expect(reduceInto(code, new ctor(n) as never, a as never, 0, b as never, 5, n)).toBe(false);
          continue;
        }
        const want = new ctor(n) as AnyTypedArray;
        js(want, a, 0, b, 5, n);
        const got = new ctor(n) as AnyTypedArray;
        expect(reduceInto(code, got as never, a as never, 0, b as never, 5, n)).toBe(true);
        expect(same(got, want)).toBe(true);
        // In place, on a sub-range.
        const inPlace = (a as unknown as { slice(): AnyTypedArray }).slice();
        const wantIn = (a as unknown as { slice(): AnyTypedArray }).slice();
        js(wantIn, wantIn, 100, b, 0, n - 200);
        expect(reduceInto(code, inPlace as never, inPlace as never, 100, b as never, 0, n - 200)).toBe(true);
        expect(same(inPlace, wantIn)).toBe(true);
        compared++;
      }
    }
    expect(compared).toBe(10 * 4 + 6 * 3 + 2 * 3);
  });

  it('follows Math.min / Math.max on zeros and NaN', () => {
    const a = new Float64Array([0, -0, NaN, 1, -0, 5]);
    const b = new Float64Array([-0, 0, 1, NaN, -0, 5]);
    const min = new Float64Array(6);
    const max = new Float64Array(6);
    expect(reduceInto(2, min, a, 0, b, 0, 6)).toBe(true);
    expect(reduceInto(3, max, a, 0, b, 0, 6)).toBe(true);
    for (let i = 0; i < 6; i++) {
      expect(Object.is(min[i], Math.min(a[i]!, b[i]!))).toBe(true);
      expect(Object.is(max[i], Math.max(a[i]!, b[i]!))).toBe(true);
    }
  });

  it('declines what it leaves to JS, and rejects bad arguments', () => {
    const c = new Uint8ClampedArray(10);
    expect(reduceInto(0, c, c, 0, new Uint8ClampedArray(10), 0, 10)).toBe(false);
    const x = new Float64Array(100);
    // b overlapping out (other than a, in place) would change the sequential result: declined.
    expect(reduceInto(0, x.subarray(0, 50), x.subarray(0, 50), 0, x.subarray(10, 60), 0, 50)).toBe(false);
    expect(() => reduceInto(0, x, new Float32Array(100), 0, x, 0, 10)).toThrow(TypeError);
    expect(() => reduceInto(0, x, x, 95, new Float64Array(100), 0, 10)).toThrow(RangeError);
    expect(() => reduceInto(0, x, x, 0, new Float64Array(5), 0, 10)).toThrow(RangeError);
    expect(() => reduceInto(0, x, x, -1, x, 0, 1)).toThrow(RangeError);
  });

  it('serve the collectives\' kernels above NATIVE_REDUCE_MIN elements, same results', () => {
    const rand = rng(11);
    const n = NATIVE_REDUCE_MIN * 4 + 3;
    const a = fill(Float64Array, n, rand);
    const b = fill(Float64Array, n, rand);
    const want = new Float64Array(n);
    kernel('SUM', 'Float64Array')!(want, a, 0, b, 0, n);
    let calls = 0;
    useNativeKernels(((...args: Parameters<NativeReduce>) => {
      calls++;
      return reduceInto(...(args as Parameters<typeof reduceInto>));
    }) as NativeReduce);
    const got = new Float64Array(n);
    const k = kernel('SUM', 'Float64Array')!;
    k(got, a, 0, b, 0, n);
    k(got, a, 0, b, 0, 10); // too small to be worth the call
    expect(calls).toBe(1);
    expect(bytes(got).equals(bytes(want))).toBe(true);
  });
});

describe('native kernels on SharedArrayBuffer-backed arrays', () => {
  // Regression: the kernels took their base pointer through the ArrayBuffer object, which is
  // null for a SharedArrayBuffer (the process crashed on an allreduce of such an array).
  it('reduce from and into shared memory', () => {
    const n = 5000;
    const a = new Float64Array(new SharedArrayBuffer(8 * n)).map((_, i) => i);
    const b = new Float64Array(n).fill(0.5);
    const out = new Float64Array(new SharedArrayBuffer(8 * n));
    expect(reduceInto(0, out, a, 0, b, 0, n)).toBe(true);
    expect(out[4999]).toBe(4999.5);
    expect(reduceInto(3, b, b, 0, a, 0, n)).toBe(true);
    expect(b[0]).toBe(0.5);
    expect(b[10]).toBe(10);
  });
});
