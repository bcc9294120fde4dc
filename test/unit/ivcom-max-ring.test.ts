// The ring-size limits, through the real addon: segments of the largest and smallest allowed
// ring are created and mapped by kmod (ftruncate, seals, mmap of 2^31 + 4 KiB bytes), and both
// directions are lapped with content checks. Direction 1 of the largest ring lies above 2^31
// bytes into the segment, where a signed word index (`>> 2`) turned negative and every record
// there was lost. Skipped when the addon is not built.

import { randomFillSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { IncomingMessage } from '../../transport/transport.js';
import { IvcomChannel } from '../../transport/ivcom/channel.js';
import { MAX_RING_BYTES, MIN_RING_BYTES, segmentBytes, wordAt } from '../../transport/ivcom/layout.js';
import { msg } from './ivcom-helpers.js';

type Kmod = typeof import('../../kmod/index.js');
let kmod: Kmod | undefined;
try {
  kmod = await import('../../kmod/index.js');
} catch {
  kmod = undefined;
}

interface Direction {
  /** Random bytes; message i is this rotated left by `shift(i)` bytes (sent as two parts). */
  src: Uint8Array;
  /** Reused destination of every message (the allocate hook), checked as each one arrives. */
  dst: Uint8Array;
  checked: number;
  bad: string[];
}

/** Rotation of message i: differs between neighbours, so a message in another's place is caught. */
const shift = (i: number, len: number) => (i * 40_961 + 17) % len;

function rotatedParts(src: Uint8Array, i: number): Uint8Array[] {
  const k = shift(i, src.byteLength);
  return [src.subarray(k), src.subarray(0, k)];
}

function sameAsRotated(got: Uint8Array, src: Uint8Array, i: number): boolean {
  const k = shift(i, src.byteLength);
  const n = src.byteLength - k;
  const b = Buffer.from(got.buffer, got.byteOffset, got.byteLength);
  return b.subarray(0, n).equals(src.subarray(k)) && b.subarray(n).equals(src.subarray(0, k));
}

describe.skipIf(kmod === undefined)('ivcom rings at the size limits, through the addon', () => {
  it('indexes every word of the largest segment with non-negative indices', () => {
    const bytes = segmentBytes(MAX_RING_BYTES);
    expect(bytes).toBe(2 ** 31 + 4096);
    expect(wordAt(bytes - 4)).toBe((2 ** 31 + 4092) / 4);
  });

  // Laps per direction [0 (low→high), 1 (high→low)]: past one, so every offset is reused after a
  // wrap. Of the largest ring, direction 1 (the one above 2^31) is lapped and direction 0 only
  // carries traffic at the same time: first touch of shared memory costs ~1.1 s per GiB here.
  it.each([
    ['largest', MAX_RING_BYTES, 48 << 20, [0.2, 1.25]],
    ['smallest', MIN_RING_BYTES, 1_000, [20, 20]],
  ])('laps the %s ring (%i bytes) with every byte checked', (_name, ringBytes, messageBytes, laps) => {
    const k = kmod!;
    const bytes = segmentBytes(ringBytes);
    const fd = k.segmentCreate('ivcom-max-ring-test', bytes);
    let sab: SharedArrayBuffer;
    try {
      sab = k.segmentMap(fd, bytes);
    } finally {
      k.closeFd(fd);
    }
    expect(sab.byteLength).toBe(bytes);
    const counts = laps.map((l) => Math.ceil((l * ringBytes) / messageBytes));
    const dirs: Direction[] = [0, 1].map(() => {
      const src = new Uint8Array(messageBytes);
      randomFillSync(src);
      return { src, dst: new Uint8Array(messageBytes), checked: 0, bad: [] };
    });
    const fails: Error[] = [];
    const side = (low: boolean): IvcomChannel => {
      const rx = dirs[low ? 1 : 0]!;
      return new IvcomChannel({
        sab,
        ringBytes,
        low,
        rank: low ? 0 : 1,
        peer: low ? 1 : 0,
        bell: { ring: () => {} },
        copy: k.copyBytes,
        allocate: () => rx.dst,
        deliver: (m: IncomingMessage) => {
          const i = rx.checked++;
          if (m.tag !== i) rx.bad.push(`message ${i} arrived with tag ${m.tag}`);
          else if (!sameAsRotated(m.payload, rx.src, i)) rx.bad.push(`message ${i} differs`);
        },
        fail: (e) => fails.push(e),
      });
    };
    const a = side(true);
    const b = side(false);
    const pending: Promise<void>[] = [];
    for (let i = 0; i < Math.max(...counts); i++) {
      for (const [dir, ch] of [a, b].entries()) {
        if (i >= counts[dir]!) continue;
        const p = ch.send(msg(rotatedParts(dirs[dir]!.src, i), i));
        if (p !== undefined) pending.push(p);
      }
    }
    // One thread plays both ranks: each poll drains what the other wrote and refills its ring.
    // A lost record stops progress, so the loop is bounded by a generous count of idle rounds.
    let idle = 0;
    while ((dirs[0]!.checked < counts[0]! || dirs[1]!.checked < counts[1]!) && fails.length === 0 && idle < 1000) {
      const n = a.poll() + b.poll();
      idle = n === 0 ? idle + 1 : 0;
    }
    expect(fails).toEqual([]);
    expect(dirs.map((d) => d.bad)).toEqual([[], []]);
    expect(dirs.map((d) => d.checked)).toEqual(counts);
    expect(a.pendingSends + b.pendingSends).toBe(0);
    a.shutdown();
    b.shutdown();
    return Promise.all(pending);
  }, 60_000);
});
