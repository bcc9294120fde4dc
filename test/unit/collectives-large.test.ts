// Large typed arrays (the ring / scatter-allgather / reduce-scatter algorithms) and the
// hierarchical (multi-host) algorithms, over the in-memory port.

import { describe, expect, it } from 'vitest';
import {
  allgather,
  allreduce,
  alltoall,
  barrier,
  bcast,
  gather,
  Op,
  reduce,
  scatter,
} from '../../runtime/collectives/index.js';
import {
  ALLREDUCE_RING_BYTES,
  BCAST_LARGE_BYTES,
  REDUCE_LARGE_BYTES,
  RING_PIECE_BYTES,
} from '../../runtime/collectives/select.js';
import { createMemWorld, runRanks, withWorld } from '../helpers/memport.js';

const M = 1 << 20;

function ramp(n: number, r: number): Float64Array {
  const a = new Float64Array(n);
  for (let i = 0; i < n; i++) a[i] = (i % 1000) + r;
  return a;
}

/** Fast exact comparison of typed arrays (vitest's deep equality is slow on millions of elements). */
function expectSameArray(actual: unknown, expected: ArrayBufferView): void {
  expect(Object.getPrototypeOf(actual)).toBe(Object.getPrototypeOf(expected));
  const a = actual as ArrayBufferView;
  const same = Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(
    Buffer.from(expected.buffer, expected.byteOffset, expected.byteLength),
  );
  expect(same).toBe(true);
}

function expectRampSum(v: Float64Array, n: number, size: number): void {
  expect(v).toBeInstanceOf(Float64Array);
  expect(v.length).toBe(n);
  const base = (size * (size - 1)) / 2;
  for (let i = 0; i < n; i++) {
    if (v[i] !== size * (i % 1000) + base) {
      throw new Error(`element ${i}: ${v[i]} instead of ${size * (i % 1000) + base}`);
    }
  }
}

describe('large typed arrays', () => {
  it('thresholds are sane', () => {
    expect(ALLREDUCE_RING_BYTES).toBeLessThanOrEqual(M * 8);
    expect(BCAST_LARGE_BYTES).toBeLessThanOrEqual(M * 8);
    expect(REDUCE_LARGE_BYTES).toBeLessThanOrEqual(M * 8);
  });

  it.each([
    [2, M],
    [3, 4 * M],
    [4, M + 3],
    [7, M],
  ])('allreduce SUM on %i ranks of %i float64 uses the pipelined ring', async (size, n) => {
    const world = createMemWorld(size);
    const inputs = Array.from({ length: size }, (_, r) => ramp(n, r));
    const res = await runRanks(world, (p) => allreduce(p, inputs[p.rank]!, Op.SUM), 60_000);
    for (const v of res) expectRampSum(v, n, size);
    // Ring: no message larger than a piece (recursive doubling would send whole arrays).
    expect(world.stats.maxMessage).toBeLessThanOrEqual(RING_PIECE_BYTES);
    // Bandwidth-optimal: every rank sends 2 (p-1)/p of the data.
    for (const s of world.stats.sentBy) expect(s).toBeGreaterThan(0);
    expect(world.stats.bytes).toBeLessThanOrEqual(2 * (size - 1) * n * 8 + 1024);
    // The ring reads the callers' arrays in place: they must come back untouched, and no result
    // may share memory with an input.
    inputs.forEach((x, r) => {
      const fresh = ramp(n, r);
      let differ = 0;
      for (let i = 0; i < n; i++) if (x[i] !== fresh[i]) differ++;
      expect(differ).toBe(0);
    });
    res.forEach((v) => inputs.forEach((x) => expect((v as Float64Array).buffer).not.toBe(x.buffer)));
  });

  it('allreduce of large integer kinds: MAX on Int32, BXOR on BigUint64, LAND on Uint8', async () => {
    const size = 5;
    const n = 300_000;
    const res = await withWorld(size, async (p) => {
      const a = new Int32Array(n).map((_, i) => ((i * 7 + p.rank * 13) % 1001) - 500);
      const b = new BigUint64Array(n / 8).map((_, i) => BigInt(i) << BigInt(p.rank));
      const c = new Uint8Array(n).map((_, i) => (i % (p.rank + 2) === 0 ? 0 : 3));
      return [await allreduce(p, a, Op.MAX), await allreduce(p, b, Op.BXOR), await allreduce(p, c, Op.LAND)] as const;
    });
    for (const [a, b, c] of res) {
      for (let i = 0; i < n; i += 997) {
        let mx = -Infinity;
        for (let r = 0; r < size; r++) mx = Math.max(mx, ((i * 7 + r * 13) % 1001) - 500);
        expect(a[i]).toBe(mx);
        let land = 1;
        for (let r = 0; r < size; r++) if (i % (r + 2) === 0) land = 0;
        expect(c[i]).toBe(land);
      }
      for (let i = 0; i < n / 8; i += 101) {
        let x = 0n;
        for (let r = 0; r < size; r++) x ^= BigInt.asUintN(64, BigInt(i) << BigInt(r));
        expect(b[i]).toBe(x);
      }
    }
  });

  it('allreduce ring survives synchronous sends and random delays', async () => {
    const size = 5;
    const n = (ALLREDUCE_RING_BYTES / 8) * 9 + 7;
    const res = await withWorld(size, (p) => allreduce(p, ramp(n, p.rank)), {
      rendezvousBytes: 0,
      maxDelayMs: 2,
      seed: 7,
    });
    for (const v of res) expectRampSum(v, n, size);
  });

  it.each([
    [3, 0, 4 * M],
    [5, 2, 2 * M],
    [9, 8, M],
  ])('bcast on %i ranks from root %i of %i float64 uses scatter + allgather', async (size, root, n) => {
    const world = createMemWorld(size);
    const data = ramp(n, 0);
    const res = await runRanks(world, (p) => bcast(p, p.rank === root ? data : undefined, root), 60_000);
    for (const v0 of res) {
      const v = v0!;
      expect(v).toBeInstanceOf(Float64Array);
      expect(v === data).toBe(false);
      expect(v.length).toBe(n);
      for (let i = 0; i < n; i += 1009) expect(v[i]).toBe(i % 1000);
      expect(v[n - 1]).toBe((n - 1) % 1000);
    }
    // The root sends (p-1)/p of the array in the scatter and as much in the ring, instead of
    // the whole array once per tree level; no message carries the whole array.
    expect(world.stats.bytesBy[root]!).toBeLessThanOrEqual((2 * (size - 1) * n * 8) / size + 1024);
    expect(world.stats.maxMessage).toBeLessThan(n * 8);
    expect(world.stats.bytes).toBeLessThan(2 * size * n * 8);
  });

  it.each([
    ['small, recursive doubling', 5, 37],
    ['small, two ranks (one exchange, no prepared copy)', 2, 37],
    ['large, the ring', 3, ALLREDUCE_RING_BYTES / 8 + 11],
  ])('allreduce into a caller buffer (%s), also in place, reused across calls', async (_what, size, n) => {
    const inputs = Array.from({ length: size }, (_, r) => ramp(n, r));
    const outs = Array.from({ length: size }, () => new Float64Array(n).fill(-1));
    const res = await withWorld(
      size,
      async (p) => {
        const a = await allreduce(p, inputs[p.rank]!, Op.SUM, outs[p.rank]);
        const again = await allreduce(p, inputs[p.rank]!, Op.MAX, outs[p.rank]);
        const mine = ramp(n, p.rank);
        const inPlace = await allreduce(p, mine, Op.SUM, mine);
        return { a, again, inPlace, mine };
      },
      { maxDelayMs: 1 },
    );
    res.forEach((r, rank) => {
      expect(r.a).toBe(outs[rank]); // the very buffer, no fresh result
      expect(r.again).toBe(outs[rank]);
      expect(r.inPlace).toBe(r.mine);
      for (let i = 0; i < n; i += 7) {
        expect(r.again[i]).toBe((i % 1000) + size - 1); // MAX overwrote the SUM
        expect(r.inPlace[i]).toBe(size * (i % 1000) + (size * (size - 1)) / 2);
      }
      expectRampSum(r.inPlace, n, size);
    });
    inputs.forEach((x, r) => expect(x[9]).toBe(9 + r)); // contributions untouched
  });

  it('allreduce into rejects a buffer of another kind, length or a partial overlap, before communicating', async () => {
    const world = createMemWorld(1);
    const [p] = world.ports;
    const x = new Float64Array(10);
    await expect(allreduce(p!, x, Op.SUM, new Float32Array(10))).rejects.toMatchObject({ code: 'ERR_INVALID_ARG_TYPE' });
    await expect(allreduce(p!, x, Op.SUM, new Float64Array(9))).rejects.toMatchObject({ code: 'ERR_OUT_OF_RANGE' });
    await expect(allreduce(p!, 5, Op.SUM, new Float64Array(1))).rejects.toMatchObject({ code: 'ERR_INVALID_ARG_TYPE' });
    const big = new Float64Array(20);
    await expect(allreduce(p!, big.subarray(0, 10), Op.SUM, big.subarray(5, 15))).rejects.toMatchObject({ code: 'ERR_OUT_OF_RANGE' });
    expect(world.stats.messages).toBe(0);
  });

  it('allreduce of a large Buffer gives a Buffer (ring, read in place)', async () => {
    const n = ALLREDUCE_RING_BYTES + 13;
    const inputs = Array.from({ length: 3 }, (_, r) => Buffer.alloc(n, 1 << r));
    const res = await withWorld(3, (p) => allreduce(p, inputs[p.rank]!, Op.BOR), { maxDelayMs: 1 });
    for (const v of res) {
      expect(Buffer.isBuffer(v)).toBe(true);
      expect((v as Buffer).equals(Buffer.alloc(n, 7))).toBe(true);
    }
    inputs.forEach((x, r) => expect(x.equals(Buffer.alloc(n, 1 << r))).toBe(true));
  });

  it('bcast of a large Buffer and a large BigInt64Array keeps the type', async () => {
    const buf = Buffer.alloc(BCAST_LARGE_BYTES + 5, 7);
    const big = new BigInt64Array(BCAST_LARGE_BYTES / 8 + 3).fill(-5n);
    const res = await withWorld(4, async (p) => [await bcast(p, p.rank === 1 ? buf : null, 1), await bcast(p, p.rank === 3 ? big : null, 3)] as const, {
      maxDelayMs: 1,
    });
    for (const [b, g] of res) {
      expect(Buffer.isBuffer(b)).toBe(true);
      expect((b as Buffer).equals(buf)).toBe(true);
      expectSameArray(g, big);
    }
  });

  it.each([
    [4, 1, 2 * M],
    [3, 0, M + 1],
    [8, 7, M],
  ])('reduce on %i ranks to root %i of %i float64 uses reduce-scatter + gather', async (size, root, n) => {
    const world = createMemWorld(size);
    const res = await runRanks(world, (p) => reduce(p, ramp(n, p.rank), Op.SUM, root), 60_000);
    res.forEach((v, r) => {
      if (r === root) expectRampSum(v!, n, size);
      else expect(v).toBeUndefined();
    });
    expect(world.stats.maxMessage).toBeLessThan(n * 8);
  });

  it('gather / allgather / scatter / alltoall move large typed arrays intact', async () => {
    const size = 4;
    const n = 256 * 1024;
    const mk = (a: number, b: number): Float32Array => new Float32Array(n).fill(a * 10 + b);
    const res = await withWorld(
      size,
      async (p) => {
        const g = await gather(p, mk(p.rank, 0), 2);
        const ag = await allgather(p, mk(p.rank, 1));
        const sc = await scatter(p, p.rank === 3 ? Array.from({ length: size }, (_, j) => mk(j, 2)) : undefined, 3);
        const at = await alltoall(p, Array.from({ length: size }, (_, j) => mk(p.rank, j)));
        return { g, ag, sc, at };
      },
      { maxDelayMs: 1, rendezvousBytes: 64 * 1024 },
    );
    res.forEach(({ g, ag, sc, at }, r) => {
      if (r === 2) g!.forEach((v, i) => expectSameArray(v, mk(i, 0)));
      else expect(g).toBeUndefined();
      ag.forEach((v, i) => expectSameArray(v, mk(i, 1)));
      expectSameArray(sc, mk(r, 2));
      at.forEach((v, i) => expectSameArray(v, mk(i, r)));
    });
  });
});

describe('hierarchical (several hosts)', () => {
  // Contiguous blocks: ranks 0-2 on host 10, 3-5 on host 20, 6-7 on host 30.
  const blocks = [10, 10, 10, 20, 20, 20, 30, 30];
  // Round robin: rank r on host r % 3 (host blocks are not contiguous).
  const robin = (r: number): number => r % 3;

  it('allreduce goes intra-host, then across leaders, then intra-host', async () => {
    const world = createMemWorld(8, { hosts: blocks, maxDelayMs: 1 });
    const res = await runRanks(world, (p) => allreduce(p, p.rank + 1));
    for (const v of res) expect(v).toBe(36);
    // 3 leaders: 1 message folding the odd leader in, 2 for the exchange, 1 back.
    expect(world.stats.crossHost).toBe(4);
  });

  it('allreduce with a non-commutative function keeps rank order (contiguous hosts)', async () => {
    const world = createMemWorld(8, { hosts: blocks });
    const res = await runRanks(world, (p) => allreduce(p, String(p.rank), (a: string, b: string) => a + b));
    for (const v of res) expect(v).toBe('01234567');
    expect(world.stats.crossHost).toBe(4); // hierarchical
  });

  it('allreduce with a non-commutative function on non-contiguous hosts stays correct (flat)', async () => {
    const world = createMemWorld(8, { hosts: robin });
    const res = await runRanks(world, (p) => allreduce(p, String(p.rank), (a: string, b: string) => a + b));
    for (const v of res) expect(v).toBe('01234567');
    const w2 = createMemWorld(8, { hosts: robin });
    const res2 = await runRanks(w2, (p) => allreduce(p, p.rank, Op.MAX));
    for (const v of res2) expect(v).toBe(7);
    expect(w2.stats.crossHost).toBeLessThan(world.stats.crossHost); // built-in op: hierarchical
  });

  it('large allreduce across hosts', async () => {
    const n = M / 2;
    const res = await withWorld(7, (p) => allreduce(p, ramp(n, p.rank)), { hosts: [0, 0, 0, 1, 1, 2, 2] });
    for (const v of res) expectRampSum(v, n, 7);
  });

  it('bcast goes root -> leaders -> hosts, from any root, small and large', async () => {
    for (const root of [0, 4, 7]) {
      const world = createMemWorld(8, { hosts: blocks, maxDelayMs: 1 });
      const res = await runRanks(world, (p) => bcast(p, p.rank === root ? { hello: root } : null, root));
      for (const v of res) expect(v).toEqual({ hello: root });
      expect(world.stats.crossHost).toBe(2);
    }
    const big = ramp(BCAST_LARGE_BYTES / 8 + 11, 3);
    const res = await withWorld(8, (p) => bcast(p, p.rank === 5 ? big : null, 5), { hosts: robin });
    for (const v of res) expectSameArray(v, big);
  });

  it('barrier across hosts only synchronises the leaders across hosts', async () => {
    const world = createMemWorld(8, { hosts: blocks, maxDelayMs: 1 });
    const order: string[] = [];
    await runRanks(world, async (p) => {
      order.push('in');
      await barrier(p);
      order.push('out');
    });
    expect(order.lastIndexOf('in')).toBeLessThan(order.indexOf('out'));
    expect(world.stats.crossHost).toBe(6); // dissemination among 3 leaders: 2 rounds x 3
  });
});

describe('buffers in flight', () => {
  it('no buffer is overwritten while a send of it is pending (slow receiver, rendezvous)', async () => {
    // Rank 2 is slow to post its receives: its left neighbour's ring sends stay pending while
    // that neighbour already receives (and writes) the allgather phase from its own left.
    const n = (ALLREDUCE_RING_BYTES / 8) * 20;
    for (const size of [3, 4]) {
      const res = await withWorld(size, (p) => allreduce(p, ramp(n, p.rank)), {
        rendezvousBytes: 0,
        recvDelayMs: (r) => (r === 2 ? 3 : 0),
      });
      for (const v of res) expectRampSum(v, n, size);
      const big = ramp(BCAST_LARGE_BYTES / 8 + 100, 1);
      const b = await withWorld(size, (p) => bcast(p, p.rank === 0 ? big : null, 0), {
        rendezvousBytes: 0,
        recvDelayMs: (r) => (r === 2 ? 3 : 0),
      });
      for (const v of b) expectSameArray(v, big);
      const red = await withWorld(size, (p) => reduce(p, ramp(REDUCE_LARGE_BYTES / 8 + 100, p.rank), Op.SUM, 1), {
        rendezvousBytes: 0,
        recvDelayMs: (r) => (r === 2 || r === 1 ? 2 : 0),
      });
      expectRampSum(red[1]!, REDUCE_LARGE_BYTES / 8 + 100, size);
    }
  });
});
