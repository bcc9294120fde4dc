// The large-message protocol between two in-process ends joined by fake endpoints (the real
// transports carry it in the integration tests: p2p 'stalled' and 'rndvmix').
import { describe, expect, it } from 'vitest';
import type { Endpoint, IncomingMessage, OutgoingMessage } from '../../transport/transport.js';
import { CrossMemory } from '../../transport/cma.js';
import { Codec } from '../../runtime/codec-ids.js';
import { Rendezvous, announcedBytes } from '../../runtime/rendezvous.js';
import { StagingPool } from '../../runtime/staging.js';
import type { Envelope, Request } from '../../runtime/match.js';

interface End {
  rank: number;
  rv: Rendezvous;
  failures: Error[];
  /** What arrived here (an RTS is what matching would queue). */
  inbox: IncomingMessage[];
}

/** With shared words: frames of these codecs arrive at once (as if the peer polled on another core). */
const deliveredAtOnce = new Set<number>();

function pair(
  cma?: (reader: number) => CrossMemory | undefined,
  staging: () => StagingPool = () => new StagingPool(),
  /** Words the two ends share (as an ivcom segment's), one array per direction; frames then arrive a microtask later, as from a ring. */
  shared?: [Int32Array, Int32Array],
): [End, End] {
  const ends: End[] = [];
  const deliver = (to: number, m: OutgoingMessage) => {
    if (shared !== undefined && !deliveredAtOnce.has(m.codec)) {
      // Copied now (the sender may reuse the parts), delivered later.
      const copy = { ...m, parts: m.parts.map((x) => x.slice()) };
      queueMicrotask(() => arrive(to, copy));
    } else arrive(to, m);
  };
  const arrive = (to: number, m: OutgoingMessage) => {
    const e = ends[to]!;
    const bytes = new Uint8Array(m.byteLength);
    let off = 0;
    for (const p of m.parts) {
      bytes.set(p, off);
      off += p.byteLength;
    }
    let payload = bytes;
    if (m.codec === Codec.Data) {
      const placed = e.rv.placeData(m.source, m.tag, m.byteLength);
      if (placed !== undefined) {
        placed.set(bytes);
        payload = placed;
      }
    }
    const msg: IncomingMessage = { ctx: m.ctx, source: m.source, tag: m.tag, codec: m.codec, payload, seq: 0 };
    if (m.codec > Codec.Rts) e.rv.control(msg);
    else e.inbox.push(msg);
  };
  for (const rank of [0, 1]) {
    const ep: Endpoint = {
      peer: 1 - rank,
      caps: { name: 'ivcom', eagerLimit: 1024, maxFrame: 1024, latencyClass: 'memory' },
      // Direction 0 carries rank 0's data to rank 1.
      shared: shared && { inbound: shared[1 - rank]!, outbound: shared[rank]! },
      send: (m) => {
        deliver(1 - rank, m);
        return undefined;
      },
    };
    const end: End = { rank, failures: [], inbox: [], rv: undefined as unknown as Rendezvous };
    end.rv = new Rendezvous({ rank, staging: staging(), endpointTo: () => ep, fail: (e) => end.failures.push(e) }, cma?.(rank));
    ends.push(end);
  }
  return ends as [End, End];
}

function receive(into?: Uint8Array): Request & { got?: Envelope; err?: Error } {
  const r: Request & { got?: Envelope; err?: Error; fail(e: Error): void } = {
    source: 0,
    tag: 5,
    seq: 0,
    done: true,
    into,
    complete(env) {
      r.got = env;
    },
    fail(e) {
      r.err = e;
    },
  };
  return r;
}

describe('rendezvous', () => {
  it('holds the send until a receive pulls it, then streams it into the receive\'s buffer', async () => {
    const [a, b] = pair();
    const data = Uint8Array.from({ length: 5000 }, (_, i) => i & 0xff);
    let settled = false;
    const sent = a.rv.send(pairEndpoint(a), 1, 3, 5, Codec.Uint8, data).then(() => (settled = true));
    await Promise.resolve();
    expect(settled).toBe(false);
    expect(b.inbox).toHaveLength(1);
    const rts = b.inbox[0]!;
    expect(rts.codec).toBe(Codec.Rts);
    expect(announcedBytes(rts.payload)).toBe(5000);
    const into = new Uint8Array(8000);
    const r = receive(into);
    b.rv.pull(r, rts);
    await sent;
    expect(r.got?.codec).toBe(Codec.Uint8);
    expect(r.got?.payload.byteLength).toBe(5000);
    expect(r.got?.payload.buffer).toBe(into.buffer); // straight into the receive's memory
    expect([...into.subarray(0, 5000)]).toEqual([...data]);
    expect(a.failures.concat(b.failures)).toEqual([]);
  });

  it('copies once through CrossMemory when allowed, and falls back to streaming when refused', async () => {
    const src = Uint8Array.from({ length: 3000 }, (_, i) => (i * 7) & 0xff);
    let refuse = false;
    const fake = new CrossMemory(
      {
        memAddress: () => 0x1000n,
        vmRead: (_pid, address, dst, off, n) => {
          if (refuse) throw Object.assign(new Error('process_vm_readv failed: (EPERM)'), { errno: 1 });
          expect(address).toBe(0x1000n);
          (dst as Uint8Array).set(src.subarray(0, n), off);
        },
        vmWrite: () => {
          throw new Error('3000 bytes are below a shared copy: the sender never writes');
        },
      },
      () => 4242,
    );
    for (const refused of [false, true]) {
      refuse = refused;
      const [a, b] = pair(() => fake);
      const sent = a.rv.send(pairEndpoint(a), 1, 0, 5, Codec.Uint8, src);
      const r = receive();
      b.rv.pull(r, b.inbox[0]!);
      await sent;
      expect([...r.got!.payload]).toEqual([...src]);
    }
    expect(fake.allowed(0)).toBe(false); // the reader (rank 1) stops trying rank 0
  });

  it('shares the copy of a large message with the sender, which settles when the bytes are in place', async () => {
    // Two "processes": each end's memory is its own array, at a fake address.
    const n = (3 << 20) + 5;
    const src = Uint8Array.from({ length: n }, (_, i) => (i * 7 + (i >> 16)) & 0xff);
    const SRC = 0x1000000n;
    const DEST = 0x9000000n;
    let dest: Uint8Array | undefined;
    const written: number[] = [];
    const fake = new CrossMemory(
      {
        memAddress: (v) => (v === src ? SRC : DEST),
        vmRead: (_pid, address, dst, off, len) => (dst as Uint8Array).set(src.subarray(Number(address - SRC), Number(address - SRC) + len), off),
        vmWrite: (_pid, address, from, off, len) => {
          written.push(off);
          dest!.set((from as Uint8Array).subarray(off, off + len), Number(address - DEST));
        },
      },
      () => 4242,
    );
    fake.read(0, SRC, new Uint8Array(1)); // rank 0 read from once: proven
    const words = new Int32Array(new SharedArrayBuffer(128));
    const [a, b] = pair(() => fake, undefined, [words, new Int32Array(new SharedArrayBuffer(128))]);
    const sent = a.rv.send(pairEndpoint(a), 1, 0, 5, Codec.Uint8, src);
    await Promise.resolve();
    dest = new Uint8Array(n);
    const r = receive(dest);
    // The receiver takes every chunk before the sender sees the request (delivery is a microtask
    // later): then its FIN settles the send, and the late request claims nothing.
    b.rv.pull(r, b.inbox[0]!);
    expect(Buffer.compare(dest, src)).toBe(0);
    await sent;
    expect(written).toEqual([]);
    expect(a.failures.concat(b.failures)).toEqual([]);
    expect(r.got?.payload).toBe(dest);
    // Now the sender takes part: its HELP reaches it at once, and it takes every chunk before the
    // receiver starts; its send settles when its count completes the copy, the receiver sees the
    // count complete and completes the receive (no FIN), and passes over the COPIED that follows.
    const dest2 = new Uint8Array(n);
    dest = dest2;
    const sent2 = a.rv.send(pairEndpoint(a), 1, 0, 5, Codec.Uint8, src);
    await Promise.resolve();
    const r2 = receive(dest2);
    deliveredAtOnce.add(Codec.Help);
    try {
      b.rv.pull(r2, b.inbox[1]!);
    } finally {
      deliveredAtOnce.clear();
    }
    expect(written).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12].map((k) => k * 256 * 1024));
    expect(r2.got?.payload).toBe(dest2);
    await sent2;
    await Promise.resolve();
    await Promise.resolve();
    expect(Buffer.compare(dest2, src)).toBe(0);
    expect(a.failures.concat(b.failures)).toEqual([]);
  });

  it('rejects the receive with ERR_IVCOM_NO_MEMORY when the receiving side cannot get memory for the bytes, and releases the sender', async () => {
    class Exhausted extends StagingPool {
      override take(): Uint8Array | undefined {
        throw new RangeError('Array buffer allocation failed');
      }
    }
    const [a, b] = pair(undefined, () => new Exhausted());
    const sent = a.rv.send(pairEndpoint(a), 1, 0, 5, Codec.Uint8, new Uint8Array(5000));
    const r = receive();
    b.rv.pull(r, b.inbox[0]!);
    await sent; // the sender is released, not left waiting for a pull that will never come
    expect((r.err as { code?: string })?.code).toBe('ERR_IVCOM_NO_MEMORY');
    expect(r.err?.message).toMatch(/rank 1: cannot allocate 5000 bytes for a message from rank 0 .*recvInto/);
    expect(r.got).toBeUndefined();
  });

  it('treats a malformed announcement or an unknown transfer as a corrupt peer', () => {
    const [a, b] = pair();
    const r = receive();
    b.rv.pull(r, { source: 0, tag: 5, codec: Codec.Rts, payload: new Uint8Array(7), seq: 0 });
    expect(b.failures[0]).toMatchObject({ code: 'ERR_IVCOM_CORRUPT', peer: 0 });
    const huge = new Uint8Array(24);
    huge[0] = 1;
    huge.fill(0xff, 8, 16);
    b.rv.pull(r, { source: 0, tag: 5, codec: Codec.Rts, payload: huge, seq: 0 });
    expect(b.failures[1]?.message).toMatch(/announcement id 1/);
    const overLimit = new Uint8Array(24);
    overLimit[0] = 1;
    overLimit[8] = 1;
    overLimit[12] = 1; // 2^32 + 1 bytes: more than one Node array holds
    b.rv.pull(r, { source: 0, tag: 5, codec: Codec.Rts, payload: overLimit, seq: 0 });
    expect(b.failures[2]).toMatchObject({ code: 'ERR_IVCOM_CORRUPT', peer: 0 });
    expect(b.failures[2]?.message).toMatch(/announcement id 1, 4294967297 bytes/);
    a.rv.control({ ctx: 0, source: 1, tag: 99, codec: Codec.Fin, payload: new Uint8Array(0), seq: 0 });
    a.rv.control({ ctx: 0, source: 1, tag: 98, codec: Codec.Data, payload: new Uint8Array(10), seq: 0 });
    expect(a.failures.map((e) => (e as { code?: string }).code)).toEqual(['ERR_IVCOM_CORRUPT', 'ERR_IVCOM_CORRUPT']);
  });

  it('rejects what is pending when the job fails', async () => {
    const [a, b] = pair();
    const sent = a.rv.send(pairEndpoint(a), 1, 0, 5, Codec.Uint8, new Uint8Array(2000));
    const err = new Error('gone');
    a.rv.failAll(err);
    await expect(sent).rejects.toBe(err);
    // A pull waiting for its data fails too.
    const [c, d] = pair();
    void c.rv.send(
      { ...pairEndpoint(c), send: (m: OutgoingMessage) => (m.codec === Codec.Data ? new Promise<void>(() => {}) : pairEndpoint(c).send(m)) },
      1, 0, 5, Codec.Uint8, new Uint8Array(2000),
    );
    const r = receive();
    d.rv.pull(r, d.inbox[0]!);
    d.rv.failAll(err);
    expect(r.err).toBe(err);
    expect(b.failures).toEqual([]);
  });
});

/** The endpoint end `e` uses to reach the other end (what the engine's route would return). */
function pairEndpoint(e: End): Endpoint {
  return (e.rv as unknown as { host: { endpointTo(p: number): Endpoint } }).host.endpointTo(1 - e.rank);
}
