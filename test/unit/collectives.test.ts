// Collectives over the in-memory port: every collective for sizes 1..9, against local references.

import { describe, expect, it } from 'vitest';
import {
  allgather,
  allreduce,
  alltoall,
  barrier,
  bcast,
  exscan,
  gather,
  Op,
  reduce,
  scan,
  scatter,
} from '../../runtime/collectives/index.js';
import { exchange } from '../../runtime/collectives/util.js';
import { withWorld } from '../helpers/memport.js';

const SIZES = [1, 2, 3, 4, 5, 6, 7, 8, 9];

/** A value of some kind for rank r (mixes raw kinds and structured values). */
function valueFor(r: number, salt = 0): unknown {
  switch ((r + salt) % 9) {
    case 0:
      return r * 10 + salt;
    case 1:
      return `rank-${r}-${salt}`;
    case 2:
      return new Float64Array([r, salt, r * 0.5]);
    case 3:
      return { r, salt, nested: { list: [r, 'x', null], big: BigInt(r) ** 30n } };
    case 4:
      return new Map<unknown, unknown>([[r, new Set([salt, 'a'])], ['d', new Date(1_700_000_000_000 + r)]]);
    case 5:
      return Buffer.from(`buf-${r}-${salt}`);
    case 6:
      return undefined;
    case 7:
      return new Int16Array(r + salt + 1).fill(-r);
    default:
      return [r, [salt], { deep: [new Uint8Array([r, salt])] }];
  }
}

/** Deep equality that also checks raw kinds' exact type. */
function expectSame(actual: unknown, expected: unknown): void {
  if (ArrayBuffer.isView(expected)) {
    expect(Object.getPrototypeOf(actual)).toBe(Object.getPrototypeOf(expected));
    const a = actual as ArrayBufferView;
    expect(Buffer.from(a.buffer, a.byteOffset, a.byteLength)).toEqual(
      Buffer.from(expected.buffer, expected.byteOffset, expected.byteLength),
    );
    return;
  }
  expect(actual).toStrictEqual(expected);
}

describe.each(SIZES)('collectives on %i ranks', (size) => {
  it('barrier completes, repeatedly', async () => {
    const order: string[] = [];
    await withWorld(
      size,
      async (p) => {
        for (let i = 0; i < 3; i++) {
          order.push(`in${i}`);
          await barrier(p);
          order.push(`out${i}`);
        }
      },
      { maxDelayMs: 1 },
    );
    // Nobody leaves barrier i before everybody entered it.
    for (let i = 0; i < 3; i++) {
      const lastIn = order.lastIndexOf(`in${i}`);
      const firstOut = order.indexOf(`out${i}`);
      expect(lastIn).toBeLessThan(firstOut);
    }
  });

  it('bcast every kind of value from every root', async () => {
    for (let root = 0; root < size; root++) {
      for (let salt = 0; salt < 9; salt++) {
        const expected = valueFor(root, salt);
        const res = await withWorld(size, (p) => bcast(p, p.rank === root ? valueFor(root, salt) : 'ignored', root));
        for (const v of res) expectSame(v, expected);
      }
    }
  });

  it('gather / allgather collect one value per rank in rank order', async () => {
    for (let root = 0; root < size; root++) {
      const res = await withWorld(size, (p) => gather(p, valueFor(p.rank, root), root));
      res.forEach((v, r) => {
        if (r !== root) expect(v).toBeUndefined();
        else {
          expect(v).toHaveLength(size);
          v!.forEach((e, i) => expectSame(e, valueFor(i, root)));
        }
      });
    }
    const all = await withWorld(size, (p) => allgather(p, valueFor(p.rank, 3)), { maxDelayMs: 1 });
    for (const v of all) {
      expect(v).toHaveLength(size);
      v.forEach((e, i) => expectSame(e, valueFor(i, 3)));
    }
  });

  it('scatter gives rank i entry i, from every root', async () => {
    for (let root = 0; root < size; root++) {
      const entries = Array.from({ length: size }, (_, i) => valueFor(i, root + 1));
      const res = await withWorld(size, (p) => scatter(p, p.rank === root ? entries : undefined, root));
      res.forEach((v, i) => expectSame(v, valueFor(i, root + 1)));
    }
  });

  it('alltoall: entry j of rank i arrives as entry i on rank j', async () => {
    const entry = (i: number, j: number): unknown => (j % 2 === 0 ? `${i}->${j}` : new Uint32Array([i, j]));
    const res = await withWorld(size, (p) => alltoall(p, Array.from({ length: size }, (_, j) => entry(p.rank, j))), {
      maxDelayMs: 1,
    });
    res.forEach((v, j) => {
      expect(v).toHaveLength(size);
      v.forEach((e, i) => expectSame(e, entry(i, j)));
    });
  });

  it('values survive the real codec (msgpackr) through bcast, allgather, scatter, alltoall', async () => {
    const opts = { codec: 'msgpack' as const, maxDelayMs: 0.5 };
    const res = await withWorld(
      size,
      async (p) => {
        const root = size - 1;
        return {
          b: await bcast(p, p.rank === root ? valueFor(root, 4) : null, root),
          ag: await allgather(p, valueFor(p.rank, 2)),
          sc: await scatter(p, p.rank === root ? Array.from({ length: size }, (_, i) => valueFor(i, 5)) : undefined, root),
          at: await alltoall(p, Array.from({ length: size }, (_, j) => valueFor(p.rank + j, 6))),
        };
      },
      opts,
    );
    res.forEach(({ b, ag, sc, at }, r) => {
      expectSame(b, valueFor(size - 1, 4));
      ag.forEach((v, i) => expectSame(v, valueFor(i, 2)));
      expectSame(sc, valueFor(r, 5));
      at.forEach((v, i) => expectSame(v, valueFor(i + r, 6)));
    });
  });

  it('reduce / allreduce / scan / exscan of numbers with SUM by default', async () => {
    const x = (r: number): number => r * r + 1;
    const prefix = (r: number): number => Array.from({ length: r + 1 }, (_, i) => x(i)).reduce((a, b) => a + b, 0);
    for (let root = 0; root < size; root++) {
      const red = await withWorld(size, (p) => reduce(p, x(p.rank), undefined, root));
      red.forEach((v, r) => expect(v).toBe(r === root ? prefix(size - 1) : undefined));
    }
    const all = await withWorld(size, (p) => allreduce(p, x(p.rank)));
    for (const v of all) expect(v).toBe(prefix(size - 1));
    const sc = await withWorld(size, (p) => scan(p, x(p.rank)));
    sc.forEach((v, r) => expect(v).toBe(prefix(r)));
    const ex = await withWorld(size, (p) => exscan(p, x(p.rank)));
    ex.forEach((v, r) => expect(v).toBe(r === 0 ? undefined : prefix(r - 1)));
  });

  it('non-commutative custom ops give the rank-order fold on every rank, for every root', async () => {
    const cat = (a: string, b: string): string => a + b;
    const s = (r: number): string => String.fromCharCode(97 + r);
    const word = (lo: number, hi: number): string => Array.from({ length: hi - lo + 1 }, (_, i) => s(lo + i)).join('');
    for (let root = 0; root < size; root++) {
      const red = await withWorld(size, (p) => reduce(p, s(p.rank), cat, root), { maxDelayMs: 1 });
      red.forEach((v, r) => expect(v).toBe(r === root ? word(0, size - 1) : undefined));
    }
    const all = await withWorld(size, (p) => allreduce(p, s(p.rank), cat), { maxDelayMs: 1 });
    for (const v of all) expect(v).toBe(word(0, size - 1));
    const sc = await withWorld(size, (p) => scan(p, s(p.rank), cat), { maxDelayMs: 1 });
    sc.forEach((v, r) => expect(v).toBe(word(0, r)));
    const ex = await withWorld(size, (p) => exscan(p, s(p.rank), cat), { maxDelayMs: 1 });
    ex.forEach((v, r) => expect(v).toBe(r === 0 ? undefined : word(0, r - 1)));

    // 2x2 integer matrices mod a prime: associative, not commutative.
    type M = [number, number, number, number];
    const P = 10007;
    const mul = (a: M, b: M): M => [
      (a[0] * b[0] + a[1] * b[2]) % P,
      (a[0] * b[1] + a[1] * b[3]) % P,
      (a[2] * b[0] + a[3] * b[2]) % P,
      (a[2] * b[1] + a[3] * b[3]) % P,
    ];
    const m = (r: number): M => [r + 1, 2, r % 3, 1];
    const fold = (lo: number, hi: number): M => {
      let acc = m(lo);
      for (let i = lo + 1; i <= hi; i++) acc = mul(acc, m(i));
      return acc;
    };
    const mroot = size - 1;
    const mr = await withWorld(size, (p) => reduce(p, m(p.rank), mul, mroot));
    expect(mr[mroot]).toEqual(fold(0, size - 1));
    const ma = await withWorld(size, (p) => allreduce(p, m(p.rank), mul));
    for (const v of ma) expect(v).toEqual(fold(0, size - 1));
    const ms = await withWorld(size, (p) => scan(p, m(p.rank), mul));
    ms.forEach((v, r) => expect(v).toEqual(fold(0, r)));
    const me = await withWorld(size, (p) => exscan(p, m(p.rank), mul));
    me.forEach((v, r) => expect(v).toEqual(r === 0 ? undefined : fold(0, r - 1)));
  });

  it('custom functions that mutate their arguments never touch the callers inputs', async () => {
    // A common JS reduction style: push into the accumulator and return it.
    const push = (a: number[], b: number[]): number[] => {
      a.push(...b);
      return a;
    };
    const inputs = Array.from({ length: size }, (_, r) => [r]);
    const all = await withWorld(size, (p) => allreduce(p, inputs[p.rank]!, push), { maxDelayMs: 1 });
    for (const v of all) expect(v).toEqual(Array.from({ length: size }, (_, i) => i));
    const ex = await withWorld(size, (p) => exscan(p, inputs[p.rank]!, push), { maxDelayMs: 1 });
    ex.forEach((v, r) => expect(v).toEqual(r === 0 ? undefined : Array.from({ length: r }, (_, i) => i)));
    const sc = await withWorld(size, (p) => scan(p, inputs[p.rank]!, push));
    sc.forEach((v, r) => expect(v).toEqual(Array.from({ length: r + 1 }, (_, i) => i)));
    const rd = await withWorld(size, (p) => reduce(p, inputs[p.rank]!, push, size - 1));
    expect(rd[size - 1]).toEqual(Array.from({ length: size }, (_, i) => i));
    inputs.forEach((v, r) => expect(v).toEqual([r]));
  });

  it('results never alias the inputs, inputs are never mutated', async () => {
    const mk = (r: number): Float64Array => new Float64Array([r, r + 1, r + 2]);
    const inputs = Array.from({ length: size }, (_, r) => mk(r));
    const entries = Array.from({ length: size }, (_, r) => Array.from({ length: size }, (_, j) => mk(r * 100 + j)));
    const out = await withWorld(size, async (p) => {
      const x = inputs[p.rank]!;
      return [
        await bcast(p, x, 0),
        await reduce(p, x, Op.MAX, 0),
        await allreduce(p, x, Op.SUM),
        await allreduce(p, x, (a: Float64Array, b: Float64Array) => a.map((v, i) => v + b[i]!)),
        await scan(p, x, Op.PROD),
        await exscan(p, x, Op.MIN),
        ...((await gather(p, x, 0)) ?? []),
        ...(await allgather(p, x)),
        await scatter(p, p.rank === 0 ? entries[0] : undefined, 0),
        ...(await alltoall(p, entries[p.rank]!)),
      ];
    });
    inputs.forEach((x, r) => expect(x).toEqual(mk(r)));
    entries.forEach((row, r) => row.forEach((x, j) => expect(x).toEqual(mk(r * 100 + j))));
    const buffers = new Set<ArrayBufferLike>([...inputs, ...entries.flat()].map((x) => x.buffer));
    for (const results of out) {
      for (const v of results) {
        if (v === undefined) continue;
        expect(buffers.has((v as Float64Array).buffer)).toBe(false);
      }
    }
  });
});

describe('exchange (the step of the small collectives)', () => {
  it('fails at once when its send fails, even though the receive never completes', async () => {
    const boom = Object.assign(new Error('cannot encode'), { code: 'ERR_TEST' });
    let received = false;
    const port = {
      rank: 0,
      size: 2,
      worldRank: 0,
      send: () => Promise.reject(boom),
      recv: () => new Promise<unknown>(() => {}), // the peer never sends
      hostOf: () => 0,
    };
    await expect(exchange(port, 1, 1, 1, 7)).rejects.toBe(boom);
    // And a receive that fails later is not an unhandled rejection (vitest would report it).
    let fail!: (e: Error) => void;
    const port2 = { ...port, recv: () => new Promise<unknown>((_, rej) => (fail = rej)) };
    await expect(exchange(port2, 1, 1, 1, 7)).rejects.toBe(boom);
    fail(new Error('channel closed'));
    await new Promise((r) => setTimeout(r, 10));
    // The happy path: the received value, once the send is done.
    const port3 = { ...port, send: () => Promise.resolve(), recv: () => ((received = true), Promise.resolve(42)) };
    await expect(exchange(port3, 1, 1, 1, 7)).resolves.toBe(42);
    expect(received).toBe(true);
  });
});
