// A large allreduce by single copy in the host group (runtime/host-slots.ts, runtime/host-copy.ts)
// between ranks that are views of one real group segment in this process, reading each other by
// real process_vm_readv (of this process): results against a reference for 2 and 3 ranks, fresh,
// into and in place, uneven chunks; every rank going by messages when one cannot copy; an in-place
// call whose copy fails half-way rejecting on every rank; lengths that differ named.

import { afterEach, describe, expect, it } from 'vitest';
import * as kmod from '../../kmod/index.js';
import { closeFd, eventfdCreate, recvFds, segmentCreate, sendFds, socketPair } from '../../kmod/index.js';
import { groupBytes } from '../../transport/ivcom/group-layout.js';
import { HostGroup } from '../../transport/ivcom/group.js';
import { CrossMemory } from '../../transport/cma.js';
import { HostSlots } from '../../runtime/host-slots.js';
import { Progress } from '../../runtime/progress.js';
import { kernel, type AnyTypedArray } from '../../runtime/collectives/op.js';
import { ALLREDUCE_COPY_BYTES, ALLREDUCE_COPY_BYTES_TWO_RANKS } from '../../runtime/collectives/select.js';
import type { SlotCopier } from '../../runtime/host-copy.js';

const open: HostGroup[] = [];
afterEach(() => {
  for (const g of open.splice(0)) g.close();
});

/** World ranks 10, 11, ... of one host group, each with its own fds (as ranks get theirs). */
function groups(n: number): HostGroup[] {
  const ranks = Array.from({ length: n }, (_, i) => 10 + i);
  const seg = segmentCreate('ivcom-host-copy-test', groupBytes(n));
  const bells = ranks.map(() => eventfdCreate());
  const out: HostGroup[] = [];
  for (const r of ranks) {
    const [s0, s1] = socketPair();
    sendFds(s0, [seg, ...bells], new Uint8Array(1));
    const fds = recvFds(s1)!.fds;
    closeFd(s0);
    closeFd(s1);
    out.push(new HostGroup({ ranks, segmentFd: fds[0]!, bellFds: fds.slice(1) }, r, kmod));
  }
  for (const fd of [seg, ...bells]) closeFd(fd);
  open.push(...out);
  return out;
}

/** Reads this process (every "rank" lives here). */
function realCopier(): CrossMemory {
  return new CrossMemory(kmod, () => process.pid);
}

function slotsFor(gs: HostGroup[], copiers: Array<SlotCopier | undefined>): HostSlots[] {
  return gs.map((g, i) => new HostSlots(() => Promise.resolve(g), new Progress(g.ranks[i]!, [], gs.length), g.ranks[i]!, new Set(), copiers[i]));
}

/** Elements past the threshold, and not a multiple of 2 or 3: the chunks are uneven. */
const N = ALLREDUCE_COPY_BYTES / 8 + 7;
const SUM = kernel('SUM', 'Float64Array')!;

/**
 * Rank r's part. Inexact by default (tenths), so a sum's bits depend on the order of its terms:
 * out of place every rank must get the rank-order fold's bits. In place this rank's own part
 * comes first, so those checks use exact quarters.
 */
function contribution(r: number, exact = false): Float64Array {
  const x = new Float64Array(N);
  for (let i = 0; i < N; i++) x[i] = exact ? (i % 977) * 0.25 + r * 1.5 : (i % 977) * 0.1 + r * 1.7 + 0.3;
  return x;
}

function expected(size: number, exact = false): Float64Array {
  const want = contribution(0, exact);
  for (let r = 1; r < size; r++) SUM(want, want, 0, contribution(r, exact), 0, N);
  return want;
}

/** Runs one allreduce by copy on every rank at once; undefined where the ranks went by messages. */
function allByCopy(slots: HostSlots[], data: Float64Array[], into?: Array<Float64Array | undefined>): Promise<Array<AnyTypedArray | undefined>> {
  return Promise.all(slots.map((s, i) => s.allreduceByCopy(data[i]!, 'SUM', SUM, into?.[i], undefined)));
}

describe('large allreduce by single copy in the host group', () => {
  it.each([2, 3, 4])('gives every one of %i ranks the rank-order reduction, fresh and into a buffer, and the reduction in place', async (n) => {
    const gs = groups(n);
    const slots = slotsFor(gs, gs.map(() => realCopier()));
    const want = expected(n);
    const from = n === 2 ? ALLREDUCE_COPY_BYTES_TWO_RANKS : ALLREDUCE_COPY_BYTES;
    expect(slots[0]!.copies(new Float64Array(from / 8), SUM, n)).toBe(true);
    expect(slots[0]!.copies(new Float64Array(from / 8 - 1), SUM, n)).toBe(false);

    const data = gs.map((_, r) => contribution(r));
    const fresh = await allByCopy(slots, data);
    for (let r = 0; r < n; r++) {
      expect(fresh[r]).toEqual(want);
      expect(data[r]).toEqual(contribution(r));
    }
    const into = gs.map(() => new Float64Array(N));
    const got = await allByCopy(slots, data, into);
    for (let r = 0; r < n; r++) {
      expect(got[r]).toBe(into[r]);
      expect(into[r]).toEqual(want);
    }
    // In place (the first call proved every peer readable, so no probe round): twice, so the
    // second starts from this call's results.
    const own = gs.map((_, r) => contribution(r, true));
    for (let k = 0; k < 2; k++) {
      const res = await allByCopy(slots, own, own);
      for (let r = 0; r < n; r++) expect(res[r]).toBe(own[r]);
    }
    const exact = expected(n, true);
    const twice = new Float64Array(N);
    for (let i = 0; i < N; i++) twice[i] = exact[i]! * n;
    for (let r = 0; r < n; r++) expect(own[r]).toEqual(twice);
  });

  it('probes first when a contribution is its own result and no peer was read before', async () => {
    const gs = groups(2);
    const slots = slotsFor(gs, gs.map(() => realCopier()));
    const own = gs.map((_, r) => contribution(r, true));
    const res = await allByCopy(slots, own, own);
    expect(res[0]).toBe(own[0]);
    expect(own[0]).toEqual(expected(2, true));
    expect(own[1]).toEqual(expected(2, true));
  });

  it('sends every rank by messages when one rank cannot copy (no copier, or refused), changing nothing', async () => {
    const refusing: SlotCopier = {
      allowed: () => true,
      proven: () => false,
      address: (v) => kmod.memAddress(v),
      read: () => false,
      lastRefusal: 'EPERM (test)',
    };
    for (const other of [undefined, refusing]) {
      const gs = groups(2);
      const slots = slotsFor(gs, [realCopier(), other]);
      const own = gs.map((_, r) => contribution(r));
      // In place: the refusal must come before anybody changed its contribution.
      expect(await allByCopy(slots, own, own)).toEqual([undefined, undefined]);
      for (let r = 0; r < 2; r++) expect(own[r]).toEqual(contribution(r));
      // Out of place, the same answer, and the group goes on.
      expect(await allByCopy(slots, own)).toEqual([undefined, undefined]);
      await Promise.all(slots.map((s) => s.barrier(undefined)));
    }
  });

  it('rejects on every rank when a copy fails after an in-place result has begun', async () => {
    const gs = groups(2);
    const real = realCopier();
    let failing = false;
    const flaky: SlotCopier = {
      allowed: (p) => real.allowed(p),
      proven: (p) => real.proven(p),
      address: (v) => real.address(v),
      read: (p, a, d, o, n) => !failing && real.read(p, a, d, o, n),
      lastRefusal: 'ESRCH (test)',
    };
    const slots = slotsFor(gs, [real, flaky]);
    const data = gs.map((_, r) => contribution(r));
    await allByCopy(slots, data); // proves both peers: no probe round next
    failing = true;
    const own = gs.map((_, r) => contribution(r));
    const settled = await Promise.allSettled(slots.map((s, i) => s.allreduceByCopy(own[i]!, 'SUM', SUM, own[i], undefined)));
    for (const [i, s] of settled.entries()) {
      expect(s.status).toBe('rejected');
      const err = (s as PromiseRejectedResult).reason as Error & { code?: string };
      expect(err.code).toBe('ERR_IVCOM_PEER_LOST');
      expect(err.message).toMatch(new RegExp(`^rank ${10 + i}: a single copy between the host's ranks failed in the middle of an in-place allreduce`));
    }
  });

  it('names both lengths when the ranks pass arrays of different lengths', async () => {
    const gs = groups(2);
    const slots = slotsFor(gs, gs.map(() => realCopier()));
    const settled = await Promise.allSettled([
      slots[0]!.allreduceByCopy(contribution(0), 'SUM', SUM, undefined, undefined),
      slots[1]!.allreduceByCopy(new Float64Array(N + 1), 'SUM', SUM, undefined, undefined),
    ]);
    const msgs = settled.map((s) => ((s as PromiseRejectedResult).reason as Error & { code?: string }));
    expect(msgs.map((e) => e.code)).toEqual(['ERR_IVCOM_COLLECTIVE_MISMATCH', 'ERR_IVCOM_COLLECTIVE_MISMATCH']);
    expect(msgs[0]!.message).toContain(`rank 10: its allreduce of ${N * 8} bytes met rank 11's allreduce of ${(N + 1) * 8} bytes`);
  });
});
