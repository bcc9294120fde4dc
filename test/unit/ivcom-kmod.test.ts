// IvcomTransport over the REAL native addon (memfd segment mapped twice, eventfd doorbells,
// uv_poll watchers), two transports in one process. Skipped when the addon is not built.
// Only closeFd is wrapped: both "ranks" live in one process and share fd numbers, so the test
// records the closes and closes each real fd once at the end.

import { describe, expect, it } from 'vitest';
import type { IncomingMessage } from '../../transport/transport.js';
import type { Grant, GrantSource } from '../../transport/ivcom/grant.js';
import { segmentBytes } from '../../transport/ivcom/layout.js';
import { IvcomTransport, type KmodLike } from '../../transport/ivcom/transport.js';
import { msg, pattern, sameBytes } from './ivcom-helpers.js';

type Kmod = KmodLike & {
  segmentCreate(name: string, bytes: number): number;
  closeFd(fd: number): void;
};

let kmod: Kmod | undefined;
try {
  kmod = (await import('../../kmod/index.js')) as unknown as Kmod;
} catch {
  kmod = undefined;
}

function until(cond: () => boolean, ms = 10_000): Promise<void> {
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    const tick = () => {
      if (cond()) resolve();
      else if (Date.now() - t0 > ms) reject(new Error('timeout'));
      else setTimeout(tick, 1);
    };
    tick();
  });
}

describe.skipIf(kmod === undefined)('IvcomTransport over the native kmod', () => {
  it('delivers through a real memfd + eventfd doorbells to a receiver that never polls', async () => {
    const k = kmod!;
    const ringBytes = 256 * 1024;
    const bytes = segmentBytes(ringBytes);
    const seg = k.segmentCreate('ivcom-unit', bytes);
    const efd0 = k.eventfdCreate(); // rank 0 watches
    const efd1 = k.eventfdCreate(); // rank 1 watches
    const closed: number[] = [];
    const wrapped: KmodLike = {
      segmentMap: k.segmentMap,
      eventfdCreate: k.eventfdCreate,
      doorbellRing: k.doorbellRing,
      doorbellDrain: k.doorbellDrain,
      FdWatcher: k.FdWatcher,
      copyBytes: k.copyBytes,
      closeFd: (fd) => closed.push(fd),
    };
    const handlers = new Map<number, (g: Grant) => void>();
    let granted = false;
    const source = (rank: number): GrantSource => ({
      request: () => {
        if (granted) return;
        granted = true;
        setImmediate(() => {
          handlers.get(0)!({ peer: 1, segmentFd: seg, bytes, localBellFd: efd0, peerBellFd: efd1, low: true });
          handlers.get(1)!({ peer: 0, segmentFd: seg, bytes, localBellFd: efd1, peerBellFd: efd0, low: false });
        });
      },
      onGrant: (cb) => handlers.set(rank, cb),
    });
    const got: IncomingMessage[][] = [[], []];
    const fails: Error[] = [];
    const t = [0, 1].map(
      (rank) =>
        new IvcomTransport({
          rank,
          grants: source(rank),
          kmod: wrapped,
          ringBytes,
          upcalls: { deliver: (m) => got[rank]!.push(m), fail: (e) => fails.push(e) },
        }),
    );
    try {
      const big = pattern(8 * 1024 * 1024 + 5, 1);
      const ep = t[0]!.endpoint(1);
      const p1 = ep.send(msg(pattern(100, 0), 0));
      const p2 = ep.send(msg(big, 1));
      await p1;
      await p2; // streamed through a 256 KiB ring: every refill was driven by doorbells
      await until(() => got[1]!.length === 2);
      expect(sameBytes(got[1]![0]!.payload, pattern(100, 0))).toBe(true);
      expect(sameBytes(got[1]![1]!.payload, big)).toBe(true);
      // Reply; rank 0 sleeps on its doorbell too.
      t[0]!.idle();
      t[1]!.endpoint(0).send(msg(pattern(10, 2), 2));
      await until(() => got[0]!.length === 1);
      expect(got[0]![0]!.tag).toBe(2);
      expect(fails).toEqual([]);
      // The segment fd was given up right after mapping, by both sides.
      expect(closed).toEqual([seg, seg]);
      await t[0]!.close();
      await t[1]!.close();
      expect(closed.sort()).toEqual([seg, seg, efd0, efd0, efd1, efd1].sort());
    } finally {
      await Promise.all(t.map((x) => x.close()));
      for (const fd of [seg, efd0, efd1]) k.closeFd(fd);
    }
  });
});
