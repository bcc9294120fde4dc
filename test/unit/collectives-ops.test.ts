// Every built-in op on every natively reducible type (numbers, booleans, bigints, every typed-array
// kind), through reduce, allreduce, scan and exscan, against an independent local reference.

import { describe, expect, it } from 'vitest';
import { allreduce, exscan, Op, reduce, scan } from '../../runtime/collectives/index.js';
import type { OpLike } from '../../runtime/collectives/index.js';
import type { CollPort } from '../../runtime/collectives/port.js';
import { withWorld } from '../helpers/memport.js';

type OpName = keyof typeof Op;
const OPS: OpName[] = ['SUM', 'PROD', 'MIN', 'MAX', 'LAND', 'LOR', 'BAND', 'BOR', 'BXOR'];
const SIZES = [1, 2, 3, 4, 5, 6, 7, 8, 9];

// ---- reference semantics, written independently of op.ts ----------------------------------------

interface KindInfo {
  ctor: { new (n: number): ArrayLike<unknown> & { [i: number]: unknown }; name: string };
  bits: number;
  signed: boolean;
  float: boolean;
  big: boolean;
  clamped?: boolean;
}
const KINDS: KindInfo[] = [
  { ctor: Int8Array, bits: 8, signed: true, float: false, big: false },
  { ctor: Uint8Array, bits: 8, signed: false, float: false, big: false },
  { ctor: Uint8ClampedArray, bits: 8, signed: false, float: false, big: false, clamped: true },
  { ctor: Int16Array, bits: 16, signed: true, float: false, big: false },
  { ctor: Uint16Array, bits: 16, signed: false, float: false, big: false },
  { ctor: Int32Array, bits: 32, signed: true, float: false, big: false },
  { ctor: Uint32Array, bits: 32, signed: false, float: false, big: false },
  { ctor: Float32Array, bits: 32, signed: true, float: true, big: false },
  { ctor: Float64Array, bits: 64, signed: true, float: true, big: false },
  { ctor: BigInt64Array, bits: 64, signed: true, float: false, big: true },
  { ctor: BigUint64Array, bits: 64, signed: false, float: false, big: true },
];

/** Reference element op on exact integers (bigint) then wrapped / clamped into the kind. */
function refInt(op: OpName, k: KindInfo, x: bigint, y: bigint): bigint {
  let v: bigint;
  switch (op) {
    case 'SUM': v = x + y; break;
    case 'PROD': v = x * y; break;
    case 'MIN': v = x < y ? x : y; break;
    case 'MAX': v = x > y ? x : y; break;
    case 'LAND': v = x !== 0n && y !== 0n ? 1n : 0n; break;
    case 'LOR': v = x !== 0n || y !== 0n ? 1n : 0n; break;
    case 'BAND': v = x & y; break;
    case 'BOR': v = x | y; break;
    case 'BXOR': v = x ^ y; break;
  }
  if (k.clamped) return v < 0n ? 0n : v > 255n ? 255n : v;
  return k.signed ? BigInt.asIntN(k.bits, v) : BigInt.asUintN(k.bits, v);
}

function refFloat(op: OpName, k: KindInfo, x: number, y: number): number {
  let v: number;
  switch (op) {
    case 'SUM': v = x + y; break;
    case 'PROD': v = x * y; break;
    case 'MIN': v = Math.min(x, y); break;
    case 'MAX': v = Math.max(x, y); break;
    case 'LAND': v = x !== 0 && y !== 0 ? 1 : 0; break;
    case 'LOR': v = x !== 0 || y !== 0 ? 1 : 0; break;
    default: throw new Error('no bitwise on floats');
  }
  return k.bits === 32 ? Math.fround(v) : v;
}

function applies(op: OpName, k: KindInfo): boolean {
  return !(k.float && (op === 'BAND' || op === 'BOR' || op === 'BXOR'));
}

const LEN = 13;

/** Deterministic input of rank r for (op, kind): small for PROD and floats, so results are exact. */
function input(op: OpName, k: KindInfo, r: number): ArrayLike<unknown> & { [i: number]: unknown } {
  const a = new k.ctor(LEN);
  for (let i = 0; i < LEN; i++) {
    let v: number;
    const h = (r * 31 + i * 17 + 7) % 101;
    if (op === 'LAND' || op === 'LOR') v = (r + i) % 3 === 0 ? 0 : h;
    else if (op === 'PROD') v = k.float ? (h % 5) - 2 : (h % 7) - 3 + (i === 0 ? 97 : 0); // i=0 overflows
    else if (k.float) v = h - 50 + (i % 3) * 0.25;
    else v = h * 1_234_567 - 50_000_000; // wraps in narrow kinds: fine, stored as the kind stores it
    if (!k.signed && !k.float && v < 0) v = -v;
    if (k.clamped) v = Math.abs(v) % 256;
    a[i] = k.big ? BigInt(v) * (op === 'PROD' ? 1n : 123_456_789_01n) : v;
  }
  return a;
}

function refFold(op: OpName, k: KindInfo, xs: Array<ArrayLike<unknown>>): ArrayLike<unknown> {
  const out = new k.ctor(LEN);
  for (let i = 0; i < LEN; i++) {
    if (k.float) {
      let acc = xs[0]![i] as number;
      if (op === 'LAND' || op === 'LOR') acc = acc !== 0 ? 1 : 0;
      for (let r = 1; r < xs.length; r++) acc = refFloat(op, k, acc, xs[r]![i] as number);
      out[i] = acc;
    } else {
      let acc = BigInt(xs[0]![i] as number | bigint);
      if (op === 'LAND' || op === 'LOR') acc = acc !== 0n ? 1n : 0n;
      for (let r = 1; r < xs.length; r++) acc = refInt(op, k, acc, BigInt(xs[r]![i] as number | bigint));
      out[i] = k.big ? acc : Number(acc);
    }
  }
  return out;
}

/** Runs reduce (root size-1), allreduce, scan, exscan of x(rank) with op; checks all against fold. */
async function checkAll<T>(
  size: number,
  op: OpLike,
  x: (r: number) => T,
  fold: (xs: T[]) => unknown,
  cmp: (a: unknown, b: unknown) => void = (a, b) => expect(a).toStrictEqual(b),
): Promise<void> {
  const xs = Array.from({ length: size }, (_, r) => x(r));
  const snapshot = structuredClone(xs);
  const root = size - 1;
  const res = await withWorld(size, async (p: CollPort) => {
    const mine = xs[p.rank]!;
    return [await reduce(p, mine, op, root), await allreduce(p, mine, op), await scan(p, mine, op), await exscan(p, mine, op)];
  });
  for (let r = 0; r < size; r++) {
    const [rd, ar, sc, ex] = res[r]!;
    if (r === root) cmp(rd, fold(xs));
    else expect(rd).toBeUndefined();
    cmp(ar, fold(xs));
    cmp(sc, fold(xs.slice(0, r + 1)));
    if (r === 0) expect(ex).toBeUndefined();
    else cmp(ex, fold(xs.slice(0, r)));
  }
  expect(xs).toStrictEqual(snapshot); // inputs untouched
}

describe.each(SIZES)('built-in ops on %i ranks', (size) => {
  it.each(KINDS.map((k) => [k.ctor.name, k] as const))('every op on %s', async (_name, k) => {
    for (const op of OPS) {
      if (!applies(op, k)) continue;
      await checkAll(
        size,
        Op[op],
        (r) => input(op, k, r),
        (xs) => refFold(op, k, xs),
      );
    }
  });

  it('numbers (integers beyond 32 bits for BAND/BOR/BXOR)', async () => {
    const num = (r: number): number => (r % 2 ? -1 : 1) * (r * 3 + 1);
    const ref = (op: OpName, xs: number[]): unknown => {
      switch (op) {
        case 'SUM': return xs.reduce((a, b) => a + b);
        case 'PROD': return xs.reduce((a, b) => a * b);
        case 'MIN': return Math.min(...xs);
        case 'MAX': return Math.max(...xs);
        case 'LAND': return xs.every((v) => v !== 0);
        case 'LOR': return xs.some((v) => v !== 0);
        default: {
          const big = xs.map((v) => BigInt(v));
          const f = op === 'BAND' ? (a: bigint, b: bigint) => a & b : op === 'BOR' ? (a: bigint, b: bigint) => a | b : (a: bigint, b: bigint) => a ^ b;
          return Number(big.reduce(f));
        }
      }
    };
    for (const op of OPS) {
      const x = op === 'LAND' || op === 'LOR' ? (r: number) => (r === 2 ? 0 : num(r)) : op.startsWith('B') ? (r: number) => num(r) * 2 ** 33 + r : num;
      await checkAll(size, Op[op], x, (xs) => ref(op, xs));
    }
  });

  it('bigints (beyond 64 bits)', async () => {
    const big = (r: number): bigint => (r % 2 ? -1n : 1n) * (2n ** 70n + BigInt(r) * 12345n);
    const ref = (op: OpName, xs: bigint[]): unknown => {
      switch (op) {
        case 'SUM': return xs.reduce((a, b) => a + b);
        case 'PROD': return xs.reduce((a, b) => a * b);
        case 'MIN': return xs.reduce((a, b) => (b < a ? b : a));
        case 'MAX': return xs.reduce((a, b) => (b > a ? b : a));
        case 'LAND': return xs.every((v) => v !== 0n);
        case 'LOR': return xs.some((v) => v !== 0n);
        case 'BAND': return xs.reduce((a, b) => a & b);
        case 'BOR': return xs.reduce((a, b) => a | b);
        case 'BXOR': return xs.reduce((a, b) => a ^ b);
      }
    };
    for (const op of OPS) {
      const x = op === 'LAND' || op === 'LOR' ? (r: number) => (r === 3 ? 0n : big(r)) : big;
      await checkAll(size, Op[op], x, (xs) => ref(op, xs));
    }
  });

  it('booleans: logical and bitwise ops and MIN/MAX give booleans, SUM/PROD count', async () => {
    const b = (r: number): boolean => r % 3 !== 1;
    const ref = (op: OpName, xs: boolean[]): unknown => {
      switch (op) {
        case 'SUM': return xs.filter(Boolean).length;
        case 'PROD': return xs.every(Boolean) ? 1 : 0;
        case 'MIN': case 'LAND': case 'BAND': return xs.every(Boolean);
        case 'MAX': case 'LOR': case 'BOR': return xs.some(Boolean);
        case 'BXOR': return xs.filter(Boolean).length % 2 === 1;
      }
    };
    for (const op of OPS) await checkAll(size, Op[op], b, (xs) => ref(op, xs));
  });

  it('objects with a custom function', async () => {
    // Affine maps x -> mul*x + add composed left to right (associative, not commutative), plus
    // order-sensitive lists and maps.
    type V = { mul: number; add: number; tags: string[]; m: Map<string, number> };
    const v = (r: number): V => ({ mul: 1 + (r % 2), add: r, tags: [`t${r}`], m: new Map([[`k${r % 4}`, r]]) });
    const f = (a: V, b: V): V => ({
      mul: a.mul * b.mul,
      add: a.add * b.mul + b.add,
      tags: [...a.tags, ...b.tags],
      m: new Map([...a.m, ...b.m]),
    });
    await checkAll(size, f, v, (xs) => xs.reduce(f));
  });
});

describe('Op', () => {
  it('is frozen: string constants, and MINLOC/MAXLOC as functions on [value, index] pairs', () => {
    expect(Object.isFrozen(Op)).toBe(true);
    expect(Object.keys(Op).sort()).toEqual([...OPS, 'MINLOC', 'MAXLOC'].sort());
    for (const k of OPS) expect(Op[k]).toBe(k);
    expect(Op.MINLOC([3, 2], [3, 1])).toEqual([3, 1]);
    expect(Op.MINLOC([2, 5], [3, 1])).toEqual([2, 5]);
    expect(Op.MAXLOC([3, 2], [4, 9])).toEqual([4, 9]);
    expect(Op.MAXLOC([4, 2], [4, 1])).toEqual([4, 1]);
    expect(() => Op.MINLOC(3 as never, [1, 1])).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
  });

  it('Buffers reduce element-wise and stay Buffers', async () => {
    const res = await withWorld(3, (p) => allreduce(p, Buffer.from([p.rank, 1, 200]), Op.SUM));
    for (const v of res) {
      expect(Buffer.isBuffer(v)).toBe(true);
      expect([...v]).toEqual([3, 3, (600 % 256)]);
    }
  });
});
