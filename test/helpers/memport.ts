// An in-memory family of CollPorts: N ranks in one process, for testing the collectives.
//
//  - Matching is exact (source, tag) with MPI's non-overtaking order per (source, dest, tag);
//    messages with different tags or from different sources may overtake each other.
//  - Delivery is always asynchronous (setImmediate, or a random delay of up to maxDelayMs with a
//    seeded generator) to shake out ordering bugs.
//  - Values arrive as copies: raw kinds (typed arrays, Buffer, DataView, ArrayBuffer) as the same
//    type, other values through structuredClone (or the real runtime codec, msgpackr, with
//    codec: 'msgpack').
//  - Raw values are copied only when the send completes (like a zero-copy transport reading the
//    caller's memory until then), so a collective that modifies a buffer before its send has
//    completed delivers wrong data and fails its test.
//  - rendezvousBytes: sends of at least that many bytes complete only once the receiver has taken
//    the message (0: every send is synchronous, MPI_Ssend), which turns "awaited a send whose
//    receive the peer posts later" into a hang that the runner reports.

import type { CollPort } from '../../runtime/collectives/port.js';
import { encode } from '../../runtime/codec.js';
import { decodeLocal } from './local-decode.js';
import { rng } from './rng.js';

export interface MemWorldOptions {
  /** Host index per rank (array or function) for hierarchical algorithms; default all on host 0. */
  hosts?: readonly number[] | ((rank: number) => number);
  /** Random extra delay per message, 0..maxDelayMs milliseconds (default 0: next setImmediate). */
  maxDelayMs?: number;
  /** Seed of the delay generator. */
  seed?: number;
  /** Sends of at least this many bytes complete only when received (default: never, all eager). */
  rendezvousBytes?: number;
  /** How non-raw values are copied: structuredClone (default) or the runtime's msgpackr codec. */
  codec?: 'clone' | 'msgpack';
  /**
   * Milliseconds a rank takes to post each receive (a busy or slow rank): with rendezvous sends
   * its senders' sends stay pending meanwhile, while those senders go on with other peers.
   */
  recvDelayMs?: (rank: number) => number;
}

export interface MemStats {
  messages: number;
  bytes: number;
  /** Messages sent by each rank. */
  sentBy: number[];
  /** Raw bytes sent by each rank. */
  bytesBy: number[];
  /** Largest single message in bytes (raw byteLength, or encoded size with codec 'msgpack'). */
  maxMessage: number;
  /** Messages between ranks on different hosts. */
  crossHost: number;
}

export interface MemWorld {
  readonly ports: CollPort[];
  readonly stats: MemStats;
  /** Anything left over: messages nobody received, receives never matched, messages in flight. */
  outstanding(): { unexpected: number; posted: number; inflight: number; detail: string[] };
  resetStats(): void;
}

interface Msg {
  /** Materializes the received value (copying raw bytes now, if not done yet). */
  take(): unknown;
  /** Called when the receiver takes the message. */
  taken(): void;
}

interface Slot {
  msgs: Msg[];
  waiters: Array<(v: unknown) => void>;
}


function isRaw(v: unknown): v is ArrayBufferView | ArrayBuffer {
  return ArrayBuffer.isView(v) || v instanceof ArrayBuffer;
}

function copyRaw(v: ArrayBufferView | ArrayBuffer): unknown {
  if (v instanceof ArrayBuffer) return v.slice(0);
  if (Buffer.isBuffer(v)) return Buffer.from(v);
  if (v instanceof DataView) return new DataView(v.buffer.slice(v.byteOffset, v.byteOffset + v.byteLength));
  return (v as unknown as { slice(): unknown }).slice();
}

function wait(ms: number): Promise<void> {
  return new Promise((res) => (ms <= 0 ? setImmediate(res) : setTimeout(res, ms)));
}

export function createMemWorld(size: number, opts: MemWorldOptions = {}): MemWorld {
  const hostOf =
    typeof opts.hosts === 'function'
      ? opts.hosts
      : opts.hosts !== undefined
        ? (r: number) => (opts.hosts as readonly number[])[r]!
        : () => 0;
  const rnd = rng(opts.seed ?? 12345);
  const maxDelay = opts.maxDelayMs ?? 0;
  const rendezvous = opts.rendezvousBytes ?? Number.POSITIVE_INFINITY;
  const msgpack = opts.codec === 'msgpack';
  const inbox: Array<Map<string, Slot>> = Array.from({ length: size }, () => new Map());
  const chains = new Map<string, Promise<void>>();
  const stats: MemStats = { messages: 0, bytes: 0, sentBy: new Array<number>(size).fill(0), bytesBy: new Array<number>(size).fill(0), maxMessage: 0, crossHost: 0 };
  let inflight = 0;

  const slot = (dst: number, src: number, tag: number): Slot => {
    const key = `${src}#${tag}`;
    let s = inbox[dst]!.get(key);
    if (s === undefined) {
      s = { msgs: [], waiters: [] };
      inbox[dst]!.set(key, s);
    }
    return s;
  };

  const checkRank = (what: string, me: number, r: number): void => {
    if (!Number.isInteger(r) || r < 0 || r >= size) throw new Error(`memport rank ${me}: bad ${what} ${r}`);
  };
  const checkTag = (me: number, t: number): void => {
    if (!Number.isInteger(t) || t < 0 || t > 0x7fffffff) throw new Error(`memport rank ${me}: bad tag ${t}`);
  };

  const ports: CollPort[] = [];
  for (let me = 0; me < size; me++) {
    ports.push({
      rank: me,
      size,
      worldRank: me,
      hostOf: (r: number) => {
        checkRank('rank for hostOf', me, r);
        return hostOf(r);
      },
      send(data: unknown, dest: number, tag: number): Promise<void> {
        checkRank('dest', me, dest);
        checkTag(me, tag);
        // Non-raw values are encoded now (as msgpackr does at post time); raw bytes are read
        // only when the send completes.
        let value: unknown;
        let bytes: number;
        let materialized = false;
        let materialize: () => void;
        if (msgpack) {
          if (isRaw(data)) {
            bytes = data.byteLength;
            let enc: ReturnType<typeof encode> | undefined;
            materialize = () => {
              if (materialized) return;
              materialized = true;
              enc = encode(data);
              const copy = enc.bytes.slice();
              value = decodeLocal(enc.codec, copy, me);
            };
          } else {
            const enc = encode(data);
            const copy = enc.bytes.slice();
            bytes = copy.byteLength;
            value = decodeLocal(enc.codec, copy, me);
            materialized = true;
            materialize = () => {};
          }
        } else if (isRaw(data)) {
          bytes = data.byteLength;
          materialize = () => {
            if (materialized) return;
            materialized = true;
            value = copyRaw(data);
          };
        } else {
          value = structuredClone(data);
          bytes = 0;
          materialized = true;
          materialize = () => {};
        }
        stats.messages++;
        stats.bytes += bytes;
        stats.sentBy[me]!++;
        stats.bytesBy[me]! += bytes;
        stats.maxMessage = Math.max(stats.maxMessage, bytes);
        if (hostOf(me) !== hostOf(dest)) stats.crossHost++;
        const sync = bytes >= rendezvous;
        let onTaken!: () => void;
        const takenP = new Promise<void>((res) => (onTaken = res));
        const msg: Msg = {
          take: () => {
            materialize();
            return value;
          },
          taken: () => onTaken(),
        };
        const key = `${me}>${dest}#${tag}`;
        const prev = chains.get(key) ?? Promise.resolve();
        const delay = maxDelay > 0 ? rnd() * maxDelay : 0;
        inflight++;
        const delivered = prev
          .then(() => wait(delay))
          .then(() => {
            inflight--;
            if (!sync) materialize();
            const s = slot(dest, me, tag);
            const w = s.waiters.shift();
            if (w !== undefined) {
              w(msg.take());
              msg.taken();
            } else {
              s.msgs.push(msg);
            }
          });
        chains.set(key, delivered);
        return sync ? takenP : delivered;
      },
      recv(source: number, tag: number): Promise<unknown> {
        checkRank('source', me, source);
        checkTag(me, tag);
        const lag = opts.recvDelayMs?.(me) ?? 0;
        if (lag > 0) return wait(lag).then(() => post(source, tag));
        return post(source, tag);
      },
    });
    const post = (source: number, tag: number): Promise<unknown> => {
      const s = slot(me, source, tag);
      const m = s.msgs.shift();
      if (m !== undefined) {
        const v = m.take();
        m.taken();
        return Promise.resolve(v);
      }
      return new Promise((res) => s.waiters.push(res));
    };
  }

  return {
    ports,
    stats,
    outstanding() {
      let unexpected = 0;
      let posted = 0;
      const detail: string[] = [];
      inbox.forEach((m, dst) => {
        for (const [key, s] of m) {
          unexpected += s.msgs.length;
          posted += s.waiters.length;
          if (s.msgs.length > 0) detail.push(`rank ${dst}: ${s.msgs.length} unreceived from ${key}`);
          if (s.waiters.length > 0) detail.push(`rank ${dst}: ${s.waiters.length} receive(s) waiting on ${key}`);
        }
      });
      return { unexpected, posted, inflight, detail };
    },
    resetStats() {
      stats.messages = 0;
      stats.bytes = 0;
      stats.maxMessage = 0;
      stats.crossHost = 0;
      stats.sentBy.fill(0);
      stats.bytesBy.fill(0);
    },
  };
}

/**
 * Runs fn on every rank of a world and resolves to the per-rank results, or rejects with a
 * description of what was left waiting if the ranks do not all finish within timeoutMs.
 */
export async function runRanks<T>(
  world: MemWorld,
  fn: (p: CollPort, rank: number) => Promise<T>,
  timeoutMs = 20_000,
): Promise<T[]> {
  let timer: NodeJS.Timeout | undefined;
  const done = Promise.all(world.ports.map((p, r) => fn(p, r)));
  const timeout = new Promise<never>((_, rej) => {
    timer = setTimeout(() => {
      const o = world.outstanding();
      rej(new Error(`ranks did not finish in ${timeoutMs} ms (hang?):\n  ${o.detail.slice(0, 20).join('\n  ')}`));
    }, timeoutMs);
  });
  try {
    return await Promise.race([done, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Like runRanks, in a fresh world of `size` ranks; also checks that nothing was left over. */
export async function withWorld<T>(
  size: number,
  fn: (p: CollPort, rank: number) => Promise<T>,
  opts: MemWorldOptions & { timeoutMs?: number } = {},
): Promise<T[]> {
  const world = createMemWorld(size, opts);
  const out = await runRanks(world, fn, opts.timeoutMs);
  // Let deliveries of already-completed sends settle, then nothing may be left over.
  await wait(Math.ceil(opts.maxDelayMs ?? 0) + 1);
  const o = world.outstanding();
  if (o.unexpected + o.posted + o.inflight > 0) {
    throw new Error(`left over after the collectives: ${JSON.stringify(o)}`);
  }
  return out;
}
