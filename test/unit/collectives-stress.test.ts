// Back-to-back and concurrent collectives under random delays and synchronous sends, and the
// argument errors (raised before any communication).

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
import type { CollPort } from '../../runtime/collectives/port.js';
import { rng } from '../helpers/rng.js';
import { createMemWorld, runRanks, withWorld } from '../helpers/memport.js';


/**
 * Step i of a deterministic program of mixed collectives (same on every rank): returns a value
 * that can be checked against `expected(i)` on every rank.
 */
function program(size: number, count: number, seed: number) {
  const r = rng(seed);
  const steps = Array.from({ length: count }, () => ({ kind: Math.floor(r() * 11), root: Math.floor(r() * size), len: 1 + Math.floor(r() * 40) }));
  const cat = (a: string, b: string): string => a + b;
  const letters = (lo: number, hi: number): string => Array.from({ length: hi - lo + 1 }, (_, k) => String.fromCharCode(65 + lo + k)).join('');
  const vec = (rank: number, i: number, len: number): Int32Array => new Int32Array(len).map((_, k) => rank * 1000 + i + k);
  const run = async (p: CollPort, i: number): Promise<unknown> => {
    const { kind, root, len } = steps[i]!;
    const me = p.rank;
    switch (kind) {
      case 0: await barrier(p); return 'barrier';
      case 1: return bcast(p, me === root ? { i, root, v: vec(root, i, len) } : null, root);
      case 2: return reduce(p, vec(me, i, len), Op.SUM, root);
      case 3: return allreduce(p, String.fromCharCode(65 + me), cat);
      case 4: return gather(p, [me, i], root);
      case 5: return allgather(p, vec(me, i, len));
      case 6: return scatter(p, me === root ? Array.from({ length: size }, (_, j) => `${i}:${j}`) : undefined, root);
      case 7: return alltoall(p, Array.from({ length: size }, (_, j) => me * 100 + j + i));
      case 8: return scan(p, String.fromCharCode(65 + me), cat);
      case 9: return exscan(p, BigInt(me + i), Op.SUM);
      default: return allreduce(p, vec(me, i, len), Op.MAX);
    }
  };
  const expected = (rank: number, i: number): unknown => {
    const { kind, root, len } = steps[i]!;
    switch (kind) {
      case 0: return 'barrier';
      case 1: return { i, root, v: vec(root, i, len) };
      case 2: {
        if (rank !== root) return undefined;
        const out = new Int32Array(len);
        for (let q = 0; q < size; q++) vec(q, i, len).forEach((v, k) => (out[k] += v));
        return out;
      }
      case 3: return letters(0, size - 1);
      case 4: return rank === root ? Array.from({ length: size }, (_, q) => [q, i]) : undefined;
      case 5: return Array.from({ length: size }, (_, q) => vec(q, i, len));
      case 6: return `${i}:${rank}`;
      case 7: return Array.from({ length: size }, (_, q) => q * 100 + rank + i);
      case 8: return letters(0, rank);
      case 9: {
        if (rank === 0) return undefined;
        let s = 0n;
        for (let q = 0; q < rank; q++) s += BigInt(q + i);
        return s;
      }
      default: return vec(size - 1, i, len);
    }
  };
  return { run, expected };
}

describe('back-to-back and concurrent collectives', () => {
  it.each([
    [5, { maxDelayMs: 0.5, seed: 1 }],
    [7, { maxDelayMs: 0.5, seed: 2, rendezvousBytes: 0 }],
    [8, { seed: 3, codec: 'msgpack' as const }],
  ])('200 mixed collectives back to back on %i ranks (%j)', async (size, opts) => {
    const COUNT = 200;
    const prog = program(size, COUNT, size * 7);
    const res = await withWorld(
      size,
      async (p) => {
        const out: unknown[] = [];
        for (let i = 0; i < COUNT; i++) out.push(await prog.run(p, i));
        return out;
      },
      { ...opts, timeoutMs: 50_000 },
    );
    res.forEach((out, rank) => out.forEach((v, i) => expect(v, `rank ${rank} step ${i}`).toStrictEqual(prog.expected(rank, i))));
  });

  it('collectives started without awaiting the previous one do not mix up', async () => {
    const size = 6;
    const COUNT = 40;
    const prog = program(size, COUNT, 99);
    const res = await withWorld(size, (p) => Promise.all(Array.from({ length: COUNT }, (_, i) => prog.run(p, i))), {
      maxDelayMs: 1,
      seed: 5,
    });
    res.forEach((out, rank) => out.forEach((v, i) => expect(v, `rank ${rank} step ${i}`).toStrictEqual(prog.expected(rank, i))));
  });
});

describe('argument errors, raised before any communication', () => {
  async function rejects(size: number, fn: (p: CollPort) => Promise<unknown>, code: string): Promise<void> {
    const world = createMemWorld(size);
    for (const p of world.ports) {
      await expect(fn(p)).rejects.toMatchObject({ code });
    }
    expect(world.stats.messages).toBe(0);
    expect(world.outstanding().posted).toBe(0);
  }

  it('bad roots', async () => {
    for (const root of [-1, 4, 1.5, Number.NaN]) {
      await rejects(4, (p) => bcast(p, 1, root), 'ERR_OUT_OF_RANGE');
      await rejects(4, (p) => reduce(p, 1, Op.SUM, root), 'ERR_OUT_OF_RANGE');
      await rejects(4, (p) => gather(p, 1, root), 'ERR_OUT_OF_RANGE');
      await rejects(4, (p) => scatter(p, [1, 2, 3, 4], root), 'ERR_OUT_OF_RANGE');
    }
    await rejects(4, (p) => bcast(p, 1, '0' as unknown as number), 'ERR_INVALID_ARG_TYPE');
    await rejects(4, (p) => reduce(p, 1, Op.SUM, null as unknown as number), 'ERR_INVALID_ARG_TYPE');
  });

  it('wrong entry counts and non-arrays', async () => {
    const world = createMemWorld(3);
    await expect(scatter(world.ports[0]!, [1, 2], 0)).rejects.toMatchObject({ code: 'ERR_OUT_OF_RANGE' });
    await expect(scatter(world.ports[1]!, [1, 2, 3, 4], 1)).rejects.toMatchObject({ code: 'ERR_OUT_OF_RANGE' });
    await expect(scatter(world.ports[0]!, undefined, 0)).rejects.toMatchObject({ code: 'ERR_INVALID_ARG_TYPE' });
    await expect(scatter(world.ports[0]!, 'abc' as unknown as string[], 0)).rejects.toMatchObject({ code: 'ERR_INVALID_ARG_TYPE' });
    await expect(alltoall(world.ports[2]!, [1, 2])).rejects.toMatchObject({ code: 'ERR_OUT_OF_RANGE' });
    await expect(alltoall(world.ports[2]!, new Int32Array(3) as unknown as number[])).rejects.toMatchObject({
      code: 'ERR_INVALID_ARG_TYPE',
    });
    expect(world.stats.messages).toBe(0);
  });

  it('ops that cannot handle a value, and bad ops', async () => {
    const un = 'ERR_IVCOM_UNSUPPORTED';
    await rejects(3, (p) => allreduce(p, 'text'), un);
    await rejects(3, (p) => reduce(p, { a: 1 }, Op.MAX), un);
    await rejects(3, (p) => scan(p, [1, 2], Op.SUM), un);
    await rejects(3, (p) => exscan(p, null, Op.LOR), un);
    await rejects(3, (p) => allreduce(p, new Float64Array(4), Op.BAND), un);
    await rejects(3, (p) => allreduce(p, new DataView(new ArrayBuffer(8)), Op.SUM), un);
    await rejects(3, (p) => allreduce(p, 1.5, Op.BXOR), un);
    const err = await allreduce(createMemWorld(2).ports[1]!, new Float32Array(2), Op.BOR).catch((e: Error) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toMatch(/Op\.BOR/);
    expect((err as Error).message).toMatch(/Float32Array/);
    await rejects(3, (p) => allreduce(p, 1, 'SUMM' as never), 'ERR_INVALID_ARG_TYPE');
    await rejects(3, (p) => reduce(p, 1, 42 as never), 'ERR_INVALID_ARG_TYPE');
  });

  it('participants that disagree get CollectiveMismatchError', async () => {
    const world = createMemWorld(2);
    const res = await runRanks(world, (p) =>
      allreduce(p, new Float64Array(p.rank === 0 ? 3 : 4)).then(
        () => 'ok',
        (e: { code: string }) => e.code,
      ),
    );
    expect(res).toEqual(['ERR_IVCOM_COLLECTIVE_MISMATCH', 'ERR_IVCOM_COLLECTIVE_MISMATCH']);
    const w2 = createMemWorld(2);
    const res2 = await runRanks(w2, (p) =>
      allreduce(p, p.rank === 0 ? 1 : 1n, Op.SUM).then(
        () => 'ok',
        (e: { code: string }) => e.code,
      ),
    );
    expect(res2).toEqual(['ERR_IVCOM_COLLECTIVE_MISMATCH', 'ERR_IVCOM_COLLECTIVE_MISMATCH']);
  });
});
