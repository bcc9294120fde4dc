// IvcomTransport over the REAL native addon (memfd segment mapped twice, eventfd doorbells,
// uv_poll watchers), two transports in one process. Skipped when the addon is not built.
// Only closeFd is wrapped: both "ranks" live in one process and share fd numbers, so the test
// records the closes and closes each real fd once at the end.

import { describe, expect, it } from 'vitest';
import { msg, nativePair, pattern, sameBytes, until, type NativeKmod } from './ivcom-helpers.js';

let kmod: NativeKmod | undefined;
try {
  kmod = (await import('../../kmod/index.js')) as unknown as NativeKmod;
} catch {
  kmod = undefined;
}

describe.skipIf(kmod === undefined)('IvcomTransport over the native kmod', () => {
  it('delivers through a real memfd + eventfd doorbells to a receiver that never polls', async () => {
    const { t, got, fails, closed, seg, efd0, efd1, dispose } = nativePair(kmod!, 256 * 1024);
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
      expect(fails).toEqual([[], []]);
      // The segment fd was given up right after mapping, by both sides.
      expect(closed).toEqual([seg, seg]);
      await t[0]!.close();
      await t[1]!.close();
      expect(closed.sort()).toEqual([seg, seg, efd0, efd0, efd1, efd1].sort());
    } finally {
      await dispose();
    }
  });
});
