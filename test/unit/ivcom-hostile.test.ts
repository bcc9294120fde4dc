// The segment is hostile input: the peer is another VM and may write anything anywhere in it.
// Whatever it writes, the victim must fail the channel once with CorruptError naming the peer
// (or keep going if the bytes happen to be well-formed), never throw, never read out of bounds,
// never hang.

import { describe, expect, it } from 'vitest';
import {
  CONS_OFFSET,
  CTRL_BYTES,
  DIR_CTRL_BYTES,
  FRAG_FIRST,
  FRAG_LAST,
  RECORD_MAGIC,
  segmentBytes,
} from '../../transport/ivcom/layout.js';
import { MAX_MESSAGE_BYTES } from '../../transport/wire.js';
import { makePair, makeSide, msg, pattern, rng, type Side } from './ivcom-helpers.js';

const RING = 4096;

/**
 * Writes records into ring 0 (A→B) by hand, as a hostile A would. A record is published the
 * moment its magic word is written (it is written last, as the producer does).
 */
class Forger {
  readonly i32: Int32Array;
  prod = 0;
  constructor(readonly sab: SharedArrayBuffer, readonly ring = RING) {
    this.i32 = new Int32Array(sab);
  }
  record(o: { len?: number; magic?: number; ctx?: number; source?: number; tag?: number; codec?: number; flags?: number; total?: number; hi?: number; reserved?: number }, advance?: number) {
    const len = o.len ?? 8;
    const off = this.prod & (this.ring - 1);
    const w = (CTRL_BYTES + off) >> 2;
    const total = o.total ?? len;
    this.i32[w] = len;
    this.i32[w + 2] = o.ctx ?? 0;
    this.i32[w + 3] = o.source ?? 0;
    this.i32[w + 4] = o.tag ?? 0;
    this.i32[w + 5] = (o.codec ?? 0) | ((o.flags ?? FRAG_FIRST | FRAG_LAST) << 8) | ((o.reserved ?? 0) << 16);
    this.i32[w + 6] = total;
    this.i32[w + 7] = o.hi ?? Math.floor(total / 4294967296);
    Atomics.store(this.i32, w + 1, o.magic ?? RECORD_MAGIC);
    this.prod = (this.prod + (advance ?? 32 + ((Math.min(len, 1 << 20) + 7) & ~7))) >>> 0;
    return this;
  }
}

function victim(limits = { maxCodec: 10, maxCtx: 1000, maxMessageBytes: 1 << 20 }) {
  const sab = new SharedArrayBuffer(segmentBytes(RING));
  const b = makeSide(sab, false, 1, 0, RING, () => {}, { limits });
  return { sab, b, f: new Forger(sab) };
}

function expectCorruptOnce(b: Side, peer = 0) {
  let polled = 0;
  expect(() => {
    polled += b.ch.poll();
    polled += b.ch.idle();
    polled += b.ch.poll();
  }).not.toThrow();
  expect(b.fails.length).toBe(1);
  const e = b.fails[0] as Error & { code?: string; peer?: number; rank?: number };
  expect(e.code).toBe('ERR_IVCOM_CORRUPT');
  expect(e.name).toBe('CorruptError');
  expect(e.peer).toBe(peer);
  expect(e.message).toContain(`rank ${peer}`);
  return polled;
}

describe('ivcom hostile peer: crafted consumer-side violations', () => {
  const cases: [string, (f: Forger) => void][] = [
    ['record longer than the ring can hold', (f) => f.record({ len: RING - 56 })],
    ['record length 2^32-1', (f) => f.record({ len: -1 }, 64)],
    ['bad magic', (f) => f.record({ magic: 0x12345678 })],
    ['wrong source', (f) => f.record({ source: 5 })],
    ['source is the victim itself', (f) => f.record({ source: 1 })],
    ['ctx above the limit', (f) => f.record({ ctx: 1001 })],
    ['codec above the limit', (f) => f.record({ codec: 11 })],
    ['unknown flag bits', (f) => f.record({ flags: 0x83 })],
    ['reserved bits set', (f) => f.record({ reserved: 1 })],
    ['length above 2^53', (f) => f.record({ hi: 0x200000 })],
    ['message above maxMessageBytes', (f) => f.record({ len: 8, total: (1 << 20) + 1, flags: FRAG_FIRST })],
    ['single record whose length differs from total', (f) => f.record({ len: 8, total: 16 })],
    ['first fragment as long as the whole message', (f) => f.record({ len: 16, total: 16, flags: FRAG_FIRST })],
    ['middle fragment without a first', (f) => f.record({ len: 8, total: 64, flags: 0 })],
    ['last fragment without a first', (f) => f.record({ len: 8, total: 64, flags: FRAG_LAST })],
    ['second first fragment', (f) => f.record({ len: 8, total: 64, flags: FRAG_FIRST }).record({ len: 8, total: 64, flags: FRAG_FIRST })],
    ['fragment with another tag', (f) => f.record({ len: 8, total: 64, flags: FRAG_FIRST }).record({ len: 8, total: 64, flags: 0, tag: 3 })],
    ['fragment with another total', (f) => f.record({ len: 8, total: 64, flags: FRAG_FIRST }).record({ len: 8, total: 72, flags: 0 })],
    ['last fragment short of the total', (f) => f.record({ len: 8, total: 64, flags: FRAG_FIRST }).record({ len: 8, total: 64, flags: FRAG_LAST })],
    ['fragments overrunning the total', (f) => f.record({ len: 56, total: 64, flags: FRAG_FIRST }).record({ len: 16, total: 64, flags: 0 })],
    ['empty middle fragment', (f) => f.record({ len: 8, total: 64, flags: FRAG_FIRST }).record({ len: 0, total: 64, flags: 0 })],
  ];
  for (const [name, forge] of cases) {
    it(name, () => {
      const { b, f } = victim();
      forge(f);
      expectCorruptOnce(b);
      expect(b.got.length).toBe(0);
    });
  }

  it('a message claimed larger than one Node array is corrupt even under the default limits', () => {
    const sab = new SharedArrayBuffer(segmentBytes(RING));
    const b = makeSide(sab, false, 1, 0, RING, () => {});
    new Forger(sab).record({ len: 8, total: MAX_MESSAGE_BYTES + 8, flags: FRAG_FIRST });
    expectCorruptOnce(b);
    expect(b.fails[0]!.message).toContain(`exceeds the limit ${MAX_MESSAGE_BYTES}`);
  });

  it('after the tail too short for a header, the record at the ring start is checked like any other', () => {
    const { b, f } = victim();
    // Valid records up to 8 bytes before the end of the ring.
    while (f.prod < RING - 64) f.record({ len: 0 }, 32);
    f.record({ len: 24, total: 24 }); // ends at RING - 8
    expect(b.ch.poll()).toBeGreaterThan(0);
    expect(b.fails.length).toBe(0);
    // A producer would have cleared the magic word at the ring's start; this one scribbles it.
    Atomics.store(f.i32, (CTRL_BYTES >> 2) + 1, 0x12345678);
    expectCorruptOnce(b);
  });

  it('valid traffic before the violation is delivered, nothing after', () => {
    const { b, f } = victim();
    f.record({ len: 8, tag: 1 }).record({ len: 8, tag: 2 }).record({ len: 8, tag: 3, source: 9 }).record({ len: 8, tag: 4 });
    expect(b.ch.poll()).toBe(2);
    expect(b.got.map((m) => m.tag)).toEqual([1, 2]);
    expect(b.fails.length).toBe(1);
    f.record({ len: 8, tag: 5 });
    expect(b.ch.poll()).toBe(0);
    expect(b.ch.idle()).toBe(0);
    expect(b.fails.length).toBe(1);
  });

  it('rejects the hostile consumer index on the producer side (beyond what was written, misaligned, backwards)', async () => {
    for (const bad of [(prod: number) => prod + 8, (prod: number) => prod - 4, () => 0xfffff000]) {
      const { sab, a, b } = makePair({ ringBytes: RING });
      // b consumes a little legitimately, then a fills the ring so it must look at cons again.
      a.ch.send(msg(pattern(100, 1)));
      b.ch.poll();
      const ps: (Promise<void> | undefined)[] = [];
      for (let i = 0; i < 40; i++) ps.push(a.ch.send(msg(pattern(200, i))));
      const pending = ps.filter((p) => p !== undefined) as Promise<void>[];
      expect(pending.length).toBeGreaterThan(0);
      const settled = pending.map((p) => p.then(() => 'ok', (e) => e as Error));
      const i32 = new Int32Array(sab);
      // The producer's index is private: read it from a's ring half.
      const prod = (a.ch as unknown as { tx: { prod: number } }).tx.prod;
      Atomics.store(i32, (0 * DIR_CTRL_BYTES + CONS_OFFSET) >> 2, bad(prod));
      expect(() => a.ch.poll()).not.toThrow();
      expect(a.fails.length).toBe(1);
      expect((a.fails[0] as { code?: string; peer?: number }).code).toBe('ERR_IVCOM_CORRUPT');
      expect((a.fails[0] as { peer?: number }).peer).toBe(1);
      // Pending sends are rejected with the same error, new ones too.
      for (const r of await Promise.all(settled)) expect(r).toBe(a.fails[0]);
      await expect(a.ch.send(msg(pattern(1, 1)))!).rejects.toBe(a.fails[0]);
    }
  });
});

describe('ivcom hostile peer: random scribbles into a live segment', () => {
  it('never throws, never hangs, fails at most once with an error naming the peer (600 seeds)', () => {
    let corruptions = 0;
    let deliveredTotal = 0;
    for (let seed = 1; seed <= 600; seed++) {
      const r = rng(seed);
      const ringBytes = r() < 0.5 ? 4096 : 8192;
      const { sab, a, b } = makePair({
        ringBytes,
        chunkBytes: 512,
        limits: { maxMessageBytes: 1 << 20, maxCodec: 200 },
      });
      const u8 = new Uint8Array(sab);
      const i32 = new Int32Array(sab);
      const segBytes = segmentBytes(ringBytes);
      const scribbleAt = Math.floor(r() * 40);
      let id = 0;
      for (let step = 0; step < 60; step++) {
        if (step === scribbleAt || (step > scribbleAt && r() < 0.1)) {
          const kind = r();
          if (kind < 0.3) {
            // Random bytes anywhere in the segment.
            const n = 1 + Math.floor(r() * 64);
            for (let k = 0; k < n; k++) u8[Math.floor(r() * segBytes)] = Math.floor(r() * 256);
          } else if (kind < 0.6) {
            // A random value into one of the index/flag words.
            const dir = r() < 0.5 ? 0 : 1;
            const word = [0, 64, 128, 192][Math.floor(r() * 4)]!;
            const v = r() < 0.5 ? Math.floor(r() * 4294967296) : (Atomics.load(i32, (dir * 256 + word) >> 2) + (Math.floor(r() * 64) - 32) * 8) >>> 0;
            Atomics.store(i32, (dir * 256 + word) >> 2, v);
          } else {
            // Random words over the live area of a ring (record headers likely).
            const dir = r() < 0.5 ? 0 : 1;
            const base = CTRL_BYTES + dir * ringBytes;
            const n = 1 + Math.floor(r() * 16);
            for (let k = 0; k < n; k++) {
              i32[(base + Math.floor(r() * ringBytes)) >> 2] = Math.floor(r() * 4294967296);
            }
          }
        }
        const act = r();
        expect(() => {
          const len = r() < 0.1 ? Math.floor(r() * 5000) : Math.floor(r() * 200);
          if (act < 0.35) void a.ch.send(msg(pattern(len, id++), id, 1, 2))?.catch(() => {});
          else if (act < 0.6) void b.ch.send(msg(pattern(len, id++), id, 1, 2))?.catch(() => {});
          else if (act < 0.75) a.ch.poll();
          else if (act < 0.9) b.ch.poll();
          else if (act < 0.95) a.ch.idle();
          else b.ch.idle();
        }).not.toThrow();
      }
      // Drain whatever is left; bounded.
      for (let k = 0; k < 50; k++) {
        expect(() => {
          a.ch.poll();
          b.ch.poll();
        }).not.toThrow();
      }
      for (const [side, peer] of [[a, 1], [b, 0]] as const) {
        expect(side.fails.length).toBeLessThanOrEqual(1);
        for (const e of side.fails) {
          // A scribble on the peer's closed word reads as "peer closed" (PeerLostError) when
          // sends are blocked: also a clean, named failure.
          const code = (e as { code?: string }).code;
          expect(['ERR_IVCOM_CORRUPT', 'ERR_IVCOM_PEER_LOST']).toContain(code);
          expect((e as { peer?: number }).peer).toBe(peer);
          if (code === 'ERR_IVCOM_CORRUPT') corruptions++;
        }
        for (const m of side.got) {
          expect(m.source).toBe(peer);
          expect(m.payload.byteLength).toBeLessThanOrEqual(1 << 20);
        }
        deliveredTotal += side.got.length;
      }
    }
    console.log(`scribble seeds: ${corruptions} corruptions detected, ${deliveredTotal} messages delivered`);
    // The scribbles must actually have hit something most of the time.
    expect(corruptions).toBeGreaterThan(200);
    expect(deliveredTotal).toBeGreaterThan(1000);
  });
});
