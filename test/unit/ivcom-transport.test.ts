// IvcomTransport glue with a fake kmod (fd table, eventfds, watchers) and a fake grant authority.

import { describe, expect, it } from 'vitest';
import type { IncomingMessage, Upcalls } from '../../transport/transport.js';
import type { Grant, GrantSource } from '../../transport/ivcom/grant.js';
import {
  CPU_OFF,
  CPU_POLLING,
  CPU_WORKING,
  ON_CPU_OFFSET_HIGH,
  ON_CPU_OFFSET_LOW,
  segmentBytes,
} from '../../transport/ivcom/layout.js';
import { IvcomTransport, KEEP_CPU_POLLS, type FdWatcherLike, type KmodLike } from '../../transport/ivcom/transport.js';
import { msg, pattern, sameBytes, spinUntil } from './ivcom-helpers.js';

class FakeEventfd {
  count = 0;
  watchers = new Set<FakeWatcher>();
  ring() {
    this.count++;
    for (const w of this.watchers) w.kick();
  }
}

class FakeWatcher implements FdWatcherLike {
  started = false;
  refed = true;
  closedW = false;
  private scheduled = false;
  constructor(readonly efd: FakeEventfd, readonly cb: () => void) {
    efd.watchers.add(this);
  }
  kick() {
    if (!this.started || this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      if (this.started && this.efd.count > 0) this.cb();
    });
  }
  start() {
    this.started = true;
    if (this.efd.count > 0) this.kick();
  }
  stop() {
    this.started = false;
  }
  ref() {
    this.refed = true;
  }
  unref() {
    this.refed = false;
  }
  close() {
    this.started = false;
    this.closedW = true;
    this.efd.watchers.delete(this);
  }
}

/** One fd table for every fake process (fd numbers are unique across them). */
class FakeKernel {
  private next = 100;
  readonly table = new Map<number, SharedArrayBuffer | FakeEventfd>();
  readonly closed: number[] = [];
  readonly watchers: FakeWatcher[] = [];
  rings = 0;
  yields = 0;
  fd(obj: SharedArrayBuffer | FakeEventfd): number {
    const fd = this.next++;
    this.table.set(fd, obj);
    return fd;
  }
  kmod(): KmodLike {
    const k = this;
    const get = (fd: number) => {
      const o = k.table.get(fd);
      if (o === undefined) throw Object.assign(new Error(`EBADF ${fd}`), { code: 'EBADF' });
      return o;
    };
    return {
      segmentMap(fd, bytes) {
        const s = get(fd);
        if (!(s instanceof SharedArrayBuffer) || s.byteLength !== bytes) throw new Error('EINVAL');
        return s;
      },
      eventfdCreate: () => k.fd(new FakeEventfd()),
      doorbellRing(fd) {
        k.rings++;
        (get(fd) as FakeEventfd).ring();
      },
      doorbellDrain(fd) {
        const e = get(fd) as FakeEventfd;
        const n = e.count;
        e.count = 0;
        return n;
      },
      FdWatcher: class {
        constructor(fd: number, cb: () => void) {
          const w = new FakeWatcher(get(fd) as FakeEventfd, cb);
          k.watchers.push(w);
          return w;
        }
      } as unknown as KmodLike['FdWatcher'],
      cpuYield() {
        k.yields++;
      },
      closeFd(fd) {
        get(fd);
        k.table.delete(fd);
        k.closed.push(fd);
      },
    };
  }
}

/** The launcher: creates a zero-filled segment per pair on first request, grants both sides. */
class FakeLauncher {
  readonly handlers = new Map<number, (g: Grant) => void>();
  readonly requests: [number, number][] = [];
  readonly granted = new Set<string>();
  readonly fdsOf = new Map<number, number[]>();
  /** Segments by pair "low-high" (what a hostile peer would scribble into). */
  readonly sabs = new Map<string, SharedArrayBuffer>();
  hold = false;
  held: (() => void)[] = [];
  constructor(readonly kernel: FakeKernel, readonly ringBytes = 64 * 1024, readonly bytesOverride?: number) {}
  source(rank: number): GrantSource {
    return {
      request: (peer) => {
        this.requests.push([rank, peer]);
        const key = `${Math.min(rank, peer)}-${Math.max(rank, peer)}`;
        if (this.granted.has(key)) return;
        this.granted.add(key);
        const go = () => this.grant(rank, peer);
        if (this.hold) this.held.push(go);
        else setImmediate(go);
      },
      onGrant: (cb) => this.handlers.set(rank, cb),
    };
  }
  release() {
    for (const f of this.held.splice(0)) f();
  }
  private grant(x: number, y: number) {
    const k = this.kernel;
    const bytes = this.bytesOverride ?? segmentBytes(this.ringBytes);
    const sab = new SharedArrayBuffer(segmentBytes(this.ringBytes));
    this.sabs.set(`${Math.min(x, y)}-${Math.max(x, y)}`, sab);
    const efdX = new FakeEventfd();
    const efdY = new FakeEventfd();
    const gx: Grant = { peer: y, segmentFd: k.fd(sab), bytes, localBellFd: k.fd(efdX), peerBellFd: k.fd(efdY), low: x < y };
    const gy: Grant = { peer: x, segmentFd: k.fd(sab), bytes, localBellFd: k.fd(efdY), peerBellFd: k.fd(efdX), low: y < x };
    this.fdsOf.set(x, [...(this.fdsOf.get(x) ?? []), gx.segmentFd, gx.localBellFd, gx.peerBellFd]);
    this.fdsOf.set(y, [...(this.fdsOf.get(y) ?? []), gy.segmentFd, gy.localBellFd, gy.peerBellFd]);
    this.handlers.get(x)?.(gx);
    this.handlers.get(y)?.(gy);
  }
}

function rankWith(launcher: FakeLauncher, rank: number, opts: { limits?: { maxCodec?: number } } = {}) {
  const got: IncomingMessage[] = [];
  const fails: Error[] = [];
  const upcalls: Upcalls = { deliver: (m) => got.push(m), fail: (e) => fails.push(e) };
  const t = new IvcomTransport({
    rank,
    grants: launcher.source(rank),
    upcalls,
    kmod: launcher.kernel.kmod(),
    ringBytes: launcher.ringBytes,
    chunkBytes: 8192,
    ...opts,
  });
  return { t, got, fails };
}

/** Ranks 0 and 1 with their channel attached on both sides: rank 0's first message (`bytes` long) delivered. */
async function attachedPair(bytes: number) {
  const kernel = new FakeKernel();
  const l = new FakeLauncher(kernel);
  const r0 = rankWith(l, 0);
  const r1 = rankWith(l, 1);
  r0.t.endpoint(1).send(msg(pattern(bytes, 1)));
  await spinUntil(() => r1.got.length === 1);
  return { kernel, l, r0, r1 };
}

describe('IvcomTransport', () => {
  it('has the declared capabilities', () => {
    const l = new FakeLauncher(new FakeKernel());
    const { t } = rankWith(l, 0);
    expect(t.caps).toEqual({ name: 'ivcom', latencyClass: 'memory', eagerLimit: 8192, maxFrame: 8192 });
  });

  it('opens lazily, queues sends before the grant, flushes them in order; the peer attaches unrequested', async () => {
    const kernel = new FakeKernel();
    const l = new FakeLauncher(kernel);
    l.hold = true;
    const r0 = rankWith(l, 0);
    const r1 = rankWith(l, 1);
    expect(l.requests).toEqual([]);
    const ep = r0.t.endpoint(1);
    expect(r0.t.endpoint(1)).toBe(ep);
    expect(l.requests).toEqual([[0, 1]]);
    expect(ep.caps.name).toBe('ivcom');
    const early = [];
    for (let i = 0; i < 5; i++) early.push(ep.send(msg(pattern(100 * i, i), i, 3, 1)));
    expect(early.every((p) => p instanceof Promise)).toBe(true);
    l.release();
    await Promise.all(early);
    // After the grant: sends that fit return undefined.
    expect(ep.send(msg(pattern(10, 5), 5, 3, 1))).toBeUndefined();
    // Rank 1 never called endpoint(0) nor poll(): its doorbell watcher delivered everything.
    await spinUntil(() => r1.got.length === 6);
    expect(r1.got.map((m) => m.tag)).toEqual([0, 1, 2, 3, 4, 5]);
    r1.got.forEach((m, i) => {
      expect(m.source).toBe(0);
      expect(m.ctx).toBe(3);
      expect(sameBytes(m.payload, pattern(i === 5 ? 10 : 100 * i, i))).toBe(true);
    });
    // Rank 1 answers on the same channel without a second request.
    expect(r1.t.endpoint(0).send(msg(pattern(7, 1), 99))).toBeUndefined();
    await spinUntil(() => r0.got.length === 1);
    expect(r0.got[0]!.tag).toBe(99);
    expect(l.requests).toEqual([[0, 1]]);
    expect(r0.fails).toEqual([]);
    expect(r1.fails).toEqual([]);
    await r0.t.close();
    await r1.t.close();
  });

  it('closes the segment fd right after mapping, the bell fds at close, each exactly once', async () => {
    const { kernel, l, r0, r1 } = await attachedPair(10);
    const [seg0, local0, peer0] = l.fdsOf.get(0)!;
    const [seg1, local1, peer1] = l.fdsOf.get(1)!;
    expect(kernel.closed.sort()).toEqual([seg0, seg1].sort());
    // Watchers are started and unref'd (an idle process may exit).
    expect(kernel.watchers.length).toBe(2);
    for (const w of kernel.watchers) {
      expect(w.started).toBe(true);
      expect(w.refed).toBe(false);
    }
    await r0.t.close();
    await r1.t.close();
    await r0.t.close(); // idempotent
    expect(kernel.closed.sort()).toEqual([seg0, local0, peer0, seg1, local1, peer1].sort());
    expect(new Set(kernel.closed).size).toBe(kernel.closed.length);
    for (const w of kernel.watchers) expect(w.closedW).toBe(true);
    await expect(r0.t.endpoint(1).send(msg(pattern(1, 1)))!).rejects.toMatchObject({ code: 'ERR_IVCOM_STATE' });
  });

  it('refs the watcher while sends wait for ring space, and close() flushes them first', async () => {
    const kernel = new FakeKernel();
    const l = new FakeLauncher(kernel, 16 * 1024);
    const r0 = rankWith(l, 0);
    const r1 = rankWith(l, 1);
    const ep = r0.t.endpoint(1);
    await spinUntil(() => kernel.watchers.length === 2);
    const big = pattern(1_000_000, 3);
    const p = ep.send(msg(big, 1));
    expect(p).toBeInstanceOf(Promise);
    const w0 = kernel.watchers.find((w) => [...w.efd.watchers].length > 0 && l.fdsOf.get(0)!.some((fd) => kernel.table.get(fd) === w.efd))!;
    expect(w0.refed).toBe(true);
    const closing = r0.t.close();
    await p;
    await closing;
    expect(w0.refed).toBe(false);
    await spinUntil(() => r1.got.length === 1);
    expect(sameBytes(r1.got[0]!.payload, big)).toBe(true);
    await r1.t.close();
  });

  it('poll() and idle() cover every channel; a sleeping receiver costs one doorbell per burst', async () => {
    const kernel = new FakeKernel();
    const l = new FakeLauncher(kernel);
    const r = [0, 1, 2].map((k) => rankWith(l, k));
    r[1]!.t.endpoint(0);
    r[2]!.t.endpoint(0);
    await spinUntil(() => kernel.watchers.length === 4);
    r[0]!.t.poll(); // rank 0 spins: withdraws the doorbell request made on attach
    const before = kernel.rings;
    for (let i = 0; i < 10; i++) {
      r[1]!.t.endpoint(0).send(msg(pattern(8, i), i));
      r[2]!.t.endpoint(0).send(msg(pattern(8, i), 100 + i));
    }
    expect(r[0]!.t.poll()).toBe(20);
    expect(kernel.rings).toBe(before);
    r[0]!.t.idle(); // sleeps
    for (let i = 0; i < 10; i++) r[1]!.t.endpoint(0).send(msg(pattern(8, i), i));
    expect(kernel.rings).toBe(before + 1);
    await spinUntil(() => r[0]!.got.length === 30);
    for (const x of r) await x.t.close();
  });

  it('a corrupt ring fails that channel once via upcalls.fail, others keep working', async () => {
    const kernel = new FakeKernel();
    const l = new FakeLauncher(kernel);
    const r = [0, 1, 2].map((k) => rankWith(l, k));
    r[1]!.t.endpoint(0).send(msg(pattern(8, 1)));
    r[2]!.t.endpoint(0).send(msg(pattern(8, 1)));
    await spinUntil(() => r[0]!.got.length === 2);
    // Rank 1 turns hostile: a bad magic word where its next record starts (after one record of
    // 32 + 8 bytes in direction 1, 1→0). Every segment fd is closed by now (mapped at once).
    expect([...kernel.table.values()].some((v) => v instanceof SharedArrayBuffer)).toBe(false);
    const sab = l.sabs.get('0-1')!;
    const i32 = new Int32Array(sab);
    const ring = (sab.byteLength - 4096) / 2;
    Atomics.store(i32, ((4096 + ring + 40) >> 2) + 1, 0x12345678);
    expect(() => r[0]!.t.poll()).not.toThrow();
    expect(r[0]!.fails.length).toBe(1);
    expect(r[0]!.fails[0]).toMatchObject({ code: 'ERR_IVCOM_CORRUPT', peer: 1 });
    r[0]!.t.poll();
    r[0]!.t.idle();
    expect(r[0]!.fails.length).toBe(1);
    r[2]!.t.endpoint(0).send(msg(pattern(8, 2), 2));
    await spinUntil(() => r[0]!.got.length === 3);
    await expect(r[0]!.t.endpoint(1).send(msg(pattern(8, 1)))!).rejects.toMatchObject({ code: 'ERR_IVCOM_CORRUPT' });
    for (const x of r) await x.t.close();
  });

  it('refuses a bad grant: fds closed, early sends rejected, failure reported', async () => {
    const kernel = new FakeKernel();
    const l = new FakeLauncher(kernel, 64 * 1024, 12345);
    const r0 = rankWith(l, 0);
    const p = r0.t.endpoint(1).send(msg(pattern(8, 1)));
    await expect(p!).rejects.toMatchObject({ code: 'ERR_IVCOM_BOOTSTRAP' });
    expect(r0.fails.length).toBe(1);
    expect(kernel.closed.sort()).toEqual(l.fdsOf.get(0)!.sort());
    await r0.t.close();
  });

  it('keeps the CPU while the awaited peer works, for KEEP_CPU_POLLS polls at most; words only once it yields', async () => {
    const { kernel, l, r0, r1 } = await attachedPair(8);
    const i32 = new Int32Array(l.sabs.get('0-1')!);
    const word0 = ON_CPU_OFFSET_LOW >> 2;
    const word1 = ON_CPU_OFFSET_HIGH >> 2;
    // A rank that never yielded writes no word (a store per channel saved on every poll).
    r0.t.poll();
    r1.t.poll();
    expect([i32[word0], i32[word1]]).toEqual([CPU_OFF, CPU_OFF]);
    // Rank 1 yields once (no peer named): from then on its word tells what it does.
    r1.t.relax();
    expect(kernel.yields).toBe(1);
    expect(i32[word1]).toBe(CPU_POLLING);
    r1.t.poll();
    expect(i32[word1]).toBe(CPU_POLLING);
    r0.t.endpoint(1).send(msg(pattern(8, 2)));
    expect(r1.t.poll()).toBe(1);
    expect(i32[word1]).toBe(CPU_WORKING);
    r1.t.idle();
    expect(i32[word1]).toBe(CPU_OFF);
    // Rank 0 waits for rank 1: a polling or sleeping peer is no reason to keep the CPU.
    const before = kernel.yields;
    i32[word1] = CPU_POLLING;
    r0.t.relax(1);
    i32[word1] = CPU_OFF;
    r0.t.relax(1);
    expect(kernel.yields).toBe(before + 2);
    // A working peer is: rank 0 polls on without yielding, but only KEEP_CPU_POLLS times in a row.
    i32[word1] = CPU_WORKING;
    for (let k = 0; k < KEEP_CPU_POLLS; k++) expect(r0.t.relax(1)).toBe(false);
    expect(kernel.yields).toBe(before + 2);
    expect(r0.t.relax(1)).toBe(true);
    expect(kernel.yields).toBe(before + 3);
    // Waiting for any peer, or for one without a channel: yield.
    r0.t.relax();
    r0.t.relax(5);
    expect(kernel.yields).toBe(before + 5);
    // A hostile word is only compared: any other value means yield, and nothing throws.
    for (const v of [7, -1, 0x7fffffff]) {
      i32[word1] = v;
      expect(() => r0.t.relax(1)).not.toThrow();
    }
    expect(kernel.yields).toBe(before + 8);
    for (const x of [r0, r1]) expect(x.fails).toEqual([]);
    await r0.t.close();
    await r1.t.close();
  });

  it('rejects endpoints to itself', () => {
    const l = new FakeLauncher(new FakeKernel());
    const { t } = rankWith(l, 2);
    expect(() => t.endpoint(2)).toThrow(/no channel/);
  });
});
