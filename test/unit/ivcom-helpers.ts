// Helpers for the ivcom unit tests: in-process channel pairs over a plain SharedArrayBuffer with
// counting bells, a seeded PRNG, and a transpiler that turns the ivcom sources into plain JS for
// worker_threads (vitest transforms only the main thread's imports).

import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import type { IncomingMessage, OutgoingMessage } from '../../transport/transport.js';
import { IvcomChannel, type ChannelOptions } from '../../transport/ivcom/channel.js';
import type { Grant, GrantSource } from '../../transport/ivcom/grant.js';
import { segmentBytes } from '../../transport/ivcom/layout.js';
import { IvcomTransport, type KmodLike } from '../../transport/ivcom/transport.js';
export { rng } from '../helpers/rng.js';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

export interface Side {
  ch: IvcomChannel;
  got: IncomingMessage[];
  fails: Error[];
  /** Times this side rang the peer's bell. */
  rings: number;
  /** Messages delivered at each moment the peer's in-order close was reported. */
  closedAfter: number[];
}

export interface Pair {
  sab: SharedArrayBuffer;
  a: Side;
  b: Side;
}

export interface PairOptions {
  ringBytes?: number;
  chunkBytes?: number;
  /** A bell wakes the other side (setImmediate → idle(), like the doorbell watcher). */
  autoWake?: boolean;
  rankA?: number;
  rankB?: number;
  sab?: SharedArrayBuffer;
  limits?: ChannelOptions['limits'];
  allocate?: ChannelOptions['allocate'];
  copy?: ChannelOptions['copy'];
  toPeer?: ChannelOptions['toPeer'];
}

export function makeSide(
  sab: SharedArrayBuffer,
  low: boolean,
  rank: number,
  peer: number,
  ringBytes: number,
  ring: () => void,
  o: PairOptions = {},
): Side {
  const side: Side = { ch: undefined as unknown as IvcomChannel, got: [], fails: [], rings: 0, closedAfter: [] };
  side.ch = new IvcomChannel({
    sab,
    ringBytes,
    low,
    rank,
    peer,
    chunkBytes: o.chunkBytes,
    limits: o.limits,
    allocate: o.allocate,
    copy: o.copy,
    toPeer: o.toPeer,
    bell: {
      ring: () => {
        side.rings++;
        ring();
      },
    },
    deliver: (m) => side.got.push(m),
    fail: (e) => side.fails.push(e),
    peerClosed: () => side.closedAfter.push(side.got.length),
  });
  return side;
}

export function makePair(o: PairOptions = {}): Pair {
  const ringBytes = o.ringBytes ?? 64 * 1024;
  const sab = o.sab ?? new SharedArrayBuffer(segmentBytes(ringBytes));
  const rankA = o.rankA ?? 0;
  const rankB = o.rankB ?? 1;
  const pair = {} as Pair;
  pair.sab = sab;
  pair.a = makeSide(sab, true, rankA, rankB, ringBytes, () => {
    if (o.autoWake) setImmediate(() => pair.b.ch.idle());
  }, o);
  pair.b = makeSide(sab, false, rankB, rankA, ringBytes, () => {
    if (o.autoWake) setImmediate(() => pair.a.ch.idle());
  }, o);
  return pair;
}

export function msg(payload: Uint8Array | Uint8Array[], tag = 0, ctx = 0, codec = 0, source = 0): OutgoingMessage {
  const parts = Array.isArray(payload) ? payload : [payload];
  return { ctx, source, tag, codec, parts, byteLength: parts.reduce((s, p) => s + p.byteLength, 0) };
}


/** Deterministic payload: byte i of message `id` is a function of both. */
export function pattern(len: number, id: number): Uint8Array {
  const u = new Uint8Array(len);
  let x = (id * 2654435761) >>> 0;
  for (let i = 0; i < len; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    u[i] = x >>> 24;
  }
  return u;
}

export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false;
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

/** Runs `step` on each turn of the event loop until `done()` or `maxTurns`. */
export async function spinUntil(done: () => boolean, step: () => void = () => {}, maxTurns = 100_000): Promise<void> {
  for (let i = 0; i < maxTurns && !done(); i++) {
    step();
    await new Promise<void>((r) => setImmediate(r));
  }
  if (!done()) throw new Error('spinUntil: condition not reached');
}

/** The native addon's functions the real-kmod tests use. */
export type NativeKmod = KmodLike & {
  segmentCreate(name: string, bytes: number): number;
  closeFd(fd: number): void;
};

export interface NativePair {
  /** Rank 0's and rank 1's transports, attached to one real memfd segment. */
  t: [IvcomTransport, IvcomTransport];
  got: [IncomingMessage[], IncomingMessage[]];
  fails: [Error[], Error[]];
  /** The fds the transports closed (recorded, not closed: both live in this process). */
  closed: number[];
  seg: number;
  efd0: number;
  efd1: number;
  /** Closes both transports, then each real fd once. */
  dispose(): Promise<void>;
}

/**
 * Two IvcomTransports (ranks 0 and 1) in this process over a REAL memfd segment and eventfd
 * doorbells watched by the event loop, granted as the launcher would. Only closeFd is wrapped:
 * both "ranks" share fd numbers, so closes are recorded and each real fd is closed once at the end.
 */
export function nativePair(k: NativeKmod, ringBytes: number): NativePair {
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
  const got: [IncomingMessage[], IncomingMessage[]] = [[], []];
  const fails: [Error[], Error[]] = [[], []];
  const t = [0, 1].map(
    (rank) =>
      new IvcomTransport({
        rank,
        grants: source(rank),
        kmod: wrapped,
        ringBytes,
        upcalls: { deliver: (m) => got[rank]!.push(m), fail: (e) => fails[rank]!.push(e) },
      }),
  ) as [IvcomTransport, IvcomTransport];
  return {
    t,
    got,
    fails,
    closed,
    seg,
    efd0,
    efd1,
    async dispose() {
      await Promise.all(t.map((x) => x.close()));
      for (const fd of [seg, efd0, efd1]) k.closeFd(fd);
    },
  };
}

/** Resolves once `cond()` holds; rejects after `ms` (real time: for event-loop driven tests). */
export function until(cond: () => boolean, ms = 10_000): Promise<void> {
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

/**
 * Transpiles the ivcom sources (and what they import) into plain ESM JavaScript under a fresh
 * temporary directory mirroring the repository layout; returns that directory.
 */
export function transpileIvcom(extra: Record<string, string> = {}): string {
  const out = mkdtempSync(join(tmpdir(), 'ivcom-js-'));
  const files = [
    'transport/errors.ts',
    'transport/transport.ts',
    'transport/wire.ts',
    'transport/ivcom/layout.ts',
    'transport/ivcom/grant.ts',
    'transport/ivcom/ring.ts',
    'transport/ivcom/ring-tx.ts',
    'transport/ivcom/ring-rx.ts',
    'transport/ivcom/channel.ts',
  ];
  for (const f of files) {
    const src = readFileSync(join(ROOT, f), 'utf8');
    const js = ts.transpileModule(src, {
      compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
      fileName: f,
    }).outputText;
    const dest = join(out, f.replace(/\.ts$/, '.js'));
    mkdirSync(dirname(dest), { recursive: true });
    writeFileSync(dest, js);
  }
  writeFileSync(join(out, 'package.json'), '{"type":"module"}');
  for (const [name, text] of Object.entries(extra)) writeFileSync(join(out, name), text);
  return out;
}
