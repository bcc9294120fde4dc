import { describe, expect, it } from 'vitest';
import { ANY, Matcher, type Envelope, type Request } from '../../runtime/match.js';

let seq = 0;
const env = (source: number, tag: number, v = 0): Envelope => ({ source, tag, codec: 0, payload: new Uint8Array([v]), seq: seq++ });
function req(source: number, tag: number, got: Envelope[]): Request {
  return { source, tag, seq: seq++, done: false, complete: (e) => got.push(e) };
}

describe('Matcher', () => {
  it('matches an unexpected message with a later receive, oldest first', () => {
    const m = new Matcher();
    m.arrive(env(1, 5, 1));
    m.arrive(env(1, 5, 2));
    const got: Envelope[] = [];
    m.post(req(1, 5, got));
    m.post(req(1, 5, got));
    expect(got.map((e) => e.payload[0])).toEqual([1, 2]);
    expect(m.unexpectedCount).toBe(0);
  });

  it('gives an arriving message to the oldest posted receive among all patterns that fit', () => {
    const m = new Matcher();
    const a: Envelope[] = [];
    const b: Envelope[] = [];
    const c: Envelope[] = [];
    m.post(req(ANY, 7, a)); // oldest
    m.post(req(2, ANY, b));
    m.post(req(2, 7, c));
    m.arrive(env(2, 7, 1));
    m.arrive(env(2, 7, 2));
    m.arrive(env(2, 7, 3));
    expect([a, b, c].map((x) => x.map((e) => e.payload[0]))).toEqual([[1], [2], [3]]);
  });

  it('ANY_SOURCE/ANY_TAG take the oldest queued message across queues', () => {
    const m = new Matcher();
    m.arrive(env(3, 1, 1));
    m.arrive(env(2, 9, 2));
    m.arrive(env(3, 2, 3));
    const got: Envelope[] = [];
    m.post(req(ANY, ANY, got));
    m.post(req(3, ANY, got));
    m.post(req(ANY, 9, got));
    expect(got.map((e) => e.payload[0])).toEqual([1, 3, 2]);
  });

  it('probe does not consume; a blocking probe is woken by a fitting arrival only', () => {
    const m = new Matcher();
    const seen: Envelope[] = [];
    m.probe(req(4, 1, seen));
    m.arrive(env(4, 2));
    expect(seen).toHaveLength(0);
    m.arrive(env(4, 1, 9));
    expect(seen.map((e) => e.payload[0])).toEqual([9]);
    expect(m.peek(4, 1)?.payload[0]).toBe(9);
  });

  it('keeps FIFO order through wrap-around, growth and removals in the middle of a queue', () => {
    const m = new Matcher();
    const got: number[] = [];
    const posted: Request[] = [];
    const post = (k: number) => {
      const r: Request = { source: 1, tag: 3, seq: seq++, done: false, complete: () => got.push(k) };
      posted[k] = r;
      m.post(r);
    };
    // Fill and drain a few times so the ring's head wraps, then outgrow it (4 slots at first).
    let k = 0;
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 3; i++) post(k++);
      for (let i = 0; i < 3; i++) m.arrive(env(1, 3));
    }
    for (let i = 0; i < 11; i++) post(k++);
    expect(m.cancel(posted[12]!)).toBe(true); // a middle one
    expect(m.cancel(posted[9]!)).toBe(true); // the head
    expect(m.cancel(posted[19]!)).toBe(true); // the tail
    expect(m.cancel(posted[12]!)).toBe(false);
    for (let i = 0; i < 8; i++) m.arrive(env(1, 3));
    expect(got).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 13, 14, 15, 16, 17, 18]);
    expect(m.pendingReceives).toBe(0);
    // The queue still works after all that: unexpected messages queue in order too.
    for (let i = 0; i < 6; i++) m.arrive(env(1, 3, i));
    const late: Envelope[] = [];
    for (let i = 0; i < 6; i++) m.post(req(1, 3, late));
    expect(late.map((e) => e.payload[0])).toEqual([0, 1, 2, 3, 4, 5]);
  });

  it('a cancelled receive never matches', () => {
    const m = new Matcher();
    const a: Envelope[] = [];
    const b: Envelope[] = [];
    const r = req(1, 1, a);
    m.post(r);
    m.post(req(1, 1, b));
    expect(m.cancel(r)).toBe(true);
    m.arrive(env(1, 1, 5));
    expect(a).toHaveLength(0);
    expect(b.map((e) => e.payload[0])).toEqual([5]);
    expect(m.cancel(r)).toBe(false);
  });

  it('stays correct with tens of thousands of queued messages over many (source, tag) queues', () => {
    const m = new Matcher();
    const N = 40_000;
    for (let i = 0; i < N; i++) m.arrive(env(i % 16, i % 7, i & 0xff));
    const got: Envelope[] = [];
    // Drain by specific source, by tag, then wildcards: every message exactly once, in order per queue.
    for (let i = 0; i < N / 4; i++) m.post(req(3, ANY, got));
    const last = new Map<string, number>();
    for (const e of got) {
      const k = `${e.source}/${e.tag}`;
      expect(e.seq).toBeGreaterThan(last.get(k) ?? -1);
      last.set(k, e.seq);
    }
    while (m.unexpectedCount > 0) m.post(req(ANY, ANY, got));
    expect(got).toHaveLength(N);
    const seqs = got.slice(N / 4).map((e) => e.seq);
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
  });

  it('lets a starting large message claim an exact receive with a buffer, unless an older wildcard would take it', () => {
    const m = new Matcher();
    const got: Envelope[] = [];
    const r = { ...req(1, 4, got), into: new Uint8Array(100) };
    m.post(r);
    expect(m.claim(1, 4, 101)).toBeUndefined(); // does not fit
    expect(m.claim(1, 5, 10)).toBeUndefined(); // other tag
    expect(m.claim(1, 4, 100)).toBe(r);
    expect(r.claimed).toBe(true);
    expect(m.cancel(r)).toBe(false); // its bytes are already arriving
    m.arrive(env(1, 4));
    expect(got).toHaveLength(0); // claimed requests are completed by the engine, not by matching
    const older = req(ANY, 6, got);
    m.post(older);
    m.post({ ...req(2, 6, got), into: new Uint8Array(100) });
    expect(m.claim(2, 6, 50)).toBeUndefined();
  });
  it('finds the messages and receives of a source whose emptied table went and came back', () => {
    // More sources than the matcher keeps when they have nothing queued: emptying a table drops
    // it, and the source's next message or receive must be seen by exact and wildcard lookups.
    const m = new Matcher();
    const got: Envelope[] = [];
    const SOURCES = 12;
    for (let round = 0; round < 3; round++) {
      for (let s = 0; s < SOURCES; s++) m.arrive(env(s, 5, s));
      for (let s = 0; s < SOURCES; s++) m.post(req(s, 5, got));
      expect(m.unexpectedCount).toBe(0);
      // Back again: found by ANY_SOURCE (a walk over the sources) and by an exact receive.
      for (let s = 0; s < SOURCES; s++) m.arrive(env(s, 6, s));
      for (let s = 0; s < SOURCES / 2; s++) m.post(req(ANY, 6, got));
      for (let s = SOURCES / 2; s < SOURCES; s++) m.post(req(s, 6, got));
      expect(m.unexpectedCount).toBe(0);
      // Receives first this time: a posted table that went and came back.
      for (let s = 0; s < SOURCES; s++) m.post(req(s, 7, got));
      for (let s = 0; s < SOURCES; s++) m.arrive(env(s, 7, s));
      expect(m.pendingReceives).toBe(0);
    }
    expect(got.map((e) => `${e.source}/${e.tag}`)).toEqual(
      Array.from({ length: 3 }, () => [
        ...Array.from({ length: SOURCES }, (_, s) => `${s}/5`),
        ...Array.from({ length: SOURCES }, (_, s) => `${s}/6`),
        ...Array.from({ length: SOURCES }, (_, s) => `${s}/7`),
      ]).flat(),
    );
  });

  it('matches as a plain list would while tags come and go, past the scanned tags and back', () => {
    // A reference: every posted receive and queued message in one list, the oldest that fits wins.
    const fits = (r: { source: number; tag: number }, e: Envelope) => (r.source === ANY || r.source === e.source) && (r.tag === ANY || r.tag === e.tag);
    let rnd = 12345;
    const next = (n: number) => ((rnd = (rnd * 1103515245 + 12345) & 0x7fffffff) % n);
    const m = new Matcher();
    const refPosted: Request[] = [];
    const refQueued: Envelope[] = [];
    const got = new Map<Request, Envelope>();
    const want = new Map<Request, Envelope>();
    for (let round = 0; round < 3; round++) {
      // Few tags (scanned), then many at once (indexed), then few again after everything drained;
      // the window of tags slides, so new tags keep taking the slots of emptied ones.
      const tags = round === 1 ? 40 : 6;
      for (let i = 0; i < 4000; i++) {
        const op = next(10);
        const source = next(3);
        const tag = round * 10_000 + (i >> (round === 1 ? 4 : 6)) + next(tags);
        if (op < 5) {
          const e = env(source, tag, i & 0xff);
          m.arrive(e);
          const j = refPosted.findIndex((r) => fits(r, e));
          if (j >= 0) want.set(refPosted.splice(j, 1)[0]!, e);
          else refQueued.push(e);
        } else if (op < 9) {
          const r: Request = { source: next(8) === 0 ? ANY : source, tag: next(8) === 0 ? ANY : tag, seq: seq++, done: false, complete: (e) => got.set(r, e) };
          m.post(r);
          const j = refQueued.findIndex((e) => fits(r, e));
          if (j >= 0) want.set(r, refQueued.splice(j, 1)[0]!);
          else refPosted.push(r);
        } else if (refPosted.length > 0) {
          const r = refPosted.splice(next(refPosted.length), 1)[0]!;
          expect(m.cancel(r)).toBe(true);
        }
      }
      // Drain: every queued message to an exact receive, every posted receive cancelled.
      for (const e of [...refQueued]) {
        const r: Request = { source: e.source, tag: e.tag, seq: seq++, done: false, complete: (x) => got.set(r, x) };
        m.post(r);
        want.set(r, refQueued.splice(refQueued.indexOf(e), 1)[0]!);
      }
      for (const r of refPosted.splice(0)) expect(m.cancel(r)).toBe(true);
      expect(m.unexpectedCount).toBe(0);
      expect(m.pendingReceives).toBe(0);
    }
    expect(got.size).toBe(want.size);
    for (const [r, e] of want) expect(got.get(r)).toBe(e);
  });
});
