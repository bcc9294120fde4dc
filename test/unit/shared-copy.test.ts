// The copy both ranks of a pair share (runtime/shared-copy.ts), between two in-process ends whose
// "processes" are two arrays: the fake kernel copies read the sender's array and write the
// receiver's. The real kernel copies run in the integration tests (p2p 'shared').
import { describe, expect, it } from 'vitest';
import { CrossMemory, type CmaKmod } from '../../transport/cma.js';
import { SHARED_WORDS, type Endpoint } from '../../transport/transport.js';
import { SharedCopy, SHARED_COPY_MIN_BYTES } from '../../runtime/shared-copy.js';

const SRC_AT = 0x10000000n;
const DEST_AT = 0x70000000n;
const CHUNK = 256 * 1024;

interface Frame {
  id: number;
  codec: 'help' | 'copied';
  payload: Uint8Array;
}

function setup(n: number) {
  const src = new Uint8Array(n);
  for (let i = 0; i < n; i++) src[i] = (i * 131 + (i >> 12)) & 0xff;
  const dest = new Uint8Array(n);
  const words = new Int32Array(new SharedArrayBuffer(SHARED_WORDS * 4));
  const frames: { toSender: Frame[]; toReceiver: Frame[] } = { toSender: [], toReceiver: [] };
  const hooks = { onRead: (_off: number) => {}, refuseWriteAt: -1, onHelpPosted: () => {} };
  const reads: number[] = [];
  const writes: number[] = [];
  const kmod = (side: 'receiver' | 'sender'): CmaKmod => ({
    memAddress: (v) => (v === src ? SRC_AT : v === dest ? DEST_AT : 0n),
    vmRead: (_pid, address, dst, off, len) => {
      expect(side).toBe('receiver');
      const from = Number(address - SRC_AT);
      expect(from).toBe(off);
      reads.push(off);
      hooks.onRead(off);
      (dst as Uint8Array).set(src.subarray(from, from + len), off);
    },
    vmWrite: (_pid, address, from, off, len) => {
      expect(side).toBe('sender');
      const to = Number(address - DEST_AT);
      expect(to).toBe(off);
      if (off === hooks.refuseWriteAt) throw Object.assign(new Error('process_vm_writev failed: (EPERM)'), { errno: 1 });
      writes.push(off);
      dest.set((from as Uint8Array).subarray(off, off + len), to);
    },
  });
  const corrupt = (peer: number, what: string) => Object.assign(new Error(`corrupt ${peer}: ${what}`), { code: 'ERR_IVCOM_CORRUPT' });
  const rcma = new CrossMemory(kmod('receiver'), () => 100);
  const scma = new CrossMemory(kmod('sender'), () => 101);
  const receiver = new SharedCopy<string>(rcma, {
    rank: 1,
    post: (_peer, id, codec, payload) => {
      frames.toSender.push({ id, codec, payload });
      if (codec === 'help') hooks.onHelpPosted();
    },
    corrupt,
  });
  const sender = new SharedCopy<string>(scma, { rank: 0, post: (_peer, id, codec, payload) => frames.toReceiver.push({ id, codec, payload }), corrupt });
  const rep: Endpoint = { peer: 0, caps: { name: 'ivcom', eagerLimit: 1, maxFrame: 1, latencyClass: 'memory' }, send: () => undefined, shared: { inbound: words, outbound: new Int32Array(SHARED_WORDS) } };
  const sep: Endpoint = { peer: 1, caps: rep.caps, send: () => undefined, shared: { inbound: new Int32Array(SHARED_WORDS), outbound: words } };
  // A plain read proves the peer readable first, as the first large message of a pair does.
  rcma.read(0, SRC_AT, new Uint8Array(8));
  reads.length = 0;
  const help = (f: Frame) => sender.help(sep, 1, f.id, f.payload, src);
  return { src, dest, words, frames, hooks, reads, writes, receiver, sender, rep, sep, help };
}

describe('shared copy', () => {
  it('is only offered for large messages from a peer already read from, one at a time per peer', () => {
    const t = setup(SHARED_COPY_MIN_BYTES);
    expect(t.receiver.canShare(t.rep, 0, SHARED_COPY_MIN_BYTES - 1)).toBe(false);
    expect(t.receiver.canShare(t.rep, 0, SHARED_COPY_MIN_BYTES)).toBe(true);
    expect(t.receiver.canShare(t.rep, 5, SHARED_COPY_MIN_BYTES)).toBe(false); // never read from rank 5
    expect(t.receiver.canShare({ ...t.rep, shared: undefined }, 0, SHARED_COPY_MIN_BYTES)).toBe(false);
  });

  it('lets the receiver take every chunk when the sender does not come, and a late request then does nothing', () => {
    const n = 3 * CHUNK + 100;
    const t = setup(n);
    expect(t.receiver.receive(t.rep, 0, 7, SRC_AT, t.dest, 'r7')).toBe('done');
    expect(Buffer.compare(t.dest, t.src)).toBe(0);
    expect(t.reads).toEqual([0, CHUNK, 2 * CHUNK, 3 * CHUNK]);
    expect(t.frames.toSender.map((f) => f.codec)).toEqual(['help']);
    // The next copy starts before the sender reads the first request.
    t.dest.fill(0);
    expect(t.receiver.receive(t.rep, 0, 8, SRC_AT, t.dest, 'r8')).toBe('done');
    for (const f of t.frames.toSender) expect(t.help(f)).toBe(false);
    expect(t.writes).toEqual([]);
    expect(t.frames.toReceiver).toEqual([]);
    expect(Buffer.compare(t.dest, t.src)).toBe(0);
  });

  it('splits the chunks when both work, the receiver finishing last', () => {
    const n = 6 * CHUNK;
    const t = setup(n);
    // The sender sees the request while the receiver copies its first chunk, and takes the rest.
    t.hooks.onRead = (off) => {
      if (off === 0) expect(t.help(t.frames.toSender[0]!)).toBe(false);
    };
    expect(t.receiver.receive(t.rep, 0, 9, SRC_AT, t.dest, 'r9')).toBe('done');
    expect(t.reads).toEqual([0]);
    expect(t.writes).toEqual([1, 2, 3, 4, 5].map((k) => k * CHUNK));
    expect(t.frames.toReceiver).toEqual([]); // the receiver's FIN settles the send
    expect(Buffer.compare(t.dest, t.src)).toBe(0);
  });

  it('completes the receive at once when it sees the sender finish, and passes over its COPIED', () => {
    const n = 4 * CHUNK + 1;
    const t = setup(n);
    // The sender takes every chunk before the receiver starts.
    let settled: boolean | undefined;
    t.hooks.onHelpPosted = () => {
      settled = t.help(t.frames.toSender[0]!);
    };
    expect(t.receiver.receive(t.rep, 0, 10, SRC_AT, t.dest, 'r10')).toBe('settled');
    expect(settled).toBe(true);
    expect(t.reads).toEqual([]);
    expect(Buffer.compare(t.dest, t.src)).toBe(0);
    expect(t.frames.toReceiver).toHaveLength(1);
    const f = t.frames.toReceiver[0]!;
    expect(t.receiver.copied(t.rep, 0, f.id, f.payload)).toBeUndefined();
    // Nothing waits any more: another report is a protocol violation.
    expect(() => t.receiver.copied(t.rep, 0, f.id, f.payload)).toThrow(/corrupt 0: copy report for unknown transfer 10/);
  });

  it('leaves the receive to the sender\'s COPIED when the sender is slow to finish its chunk', () => {
    const n = 3 * CHUNK;
    const t = setup(n);
    // A sender that claimed chunk 0 and has not copied it yet (preempted, say).
    t.hooks.onHelpPosted = () => {
      const w = Atomics.load(t.words, 0);
      expect(Atomics.compareExchange(t.words, 0, w, w + 1)).toBe(w);
    };
    expect(t.receiver.receive(t.rep, 0, 16, SRC_AT, t.dest, 'r16')).toBe('waiting');
    expect(t.reads).toEqual([CHUNK, 2 * CHUNK]);
    // It copies its chunk, completes the count and reports.
    t.dest.set(t.src.subarray(0, CHUNK));
    Atomics.add(t.words, SHARED_WORDS / 2, 1);
    const copied = new Uint8Array(8);
    new DataView(copied.buffer).setUint32(0, (Atomics.load(t.words, 0) >>> 12) >>> 0, true);
    new DataView(copied.buffer).setUint32(4, 0xffffffff, true);
    expect(t.receiver.copied(t.rep, 0, 16, copied)).toEqual({ item: 'r16', settled: true });
    expect(Buffer.compare(t.dest, t.src)).toBe(0);
  });

  it('copies a chunk the kernel refused the sender itself, and the sender stops writing to that peer', () => {
    const n = 5 * CHUNK;
    const t = setup(n);
    t.hooks.refuseWriteAt = 2 * CHUNK;
    t.hooks.onHelpPosted = () => {
      expect(t.help(t.frames.toSender[0]!)).toBe(false);
    };
    expect(t.receiver.receive(t.rep, 0, 11, SRC_AT, t.dest, 'r11')).toBe('waiting');
    expect(t.writes).toEqual([0, CHUNK]);
    expect(t.reads).toEqual([3 * CHUNK, 4 * CHUNK]);
    const f = t.frames.toReceiver[0]!;
    expect(t.receiver.copied(t.rep, 0, f.id, f.payload)).toEqual({ item: 'r11', settled: false }); // FIN still owed
    expect(t.reads).toEqual([3 * CHUNK, 4 * CHUNK, 2 * CHUNK]);
    expect(Buffer.compare(t.dest, t.src)).toBe(0);
    // Later copies go on without it.
    t.dest.fill(0);
    t.writes.length = 0;
    expect(t.receiver.receive(t.rep, 0, 12, SRC_AT, t.dest, 'r12')).toBe('done');
    expect(t.writes).toEqual([]);
    expect(Buffer.compare(t.dest, t.src)).toBe(0);
  });

  it('treats impossible counts and malformed requests from the peer as corruption', () => {
    const n = 2 * CHUNK;
    const t = setup(n);
    // A peer that scribbles a huge done count while the receiver copies.
    t.hooks.onRead = () => Atomics.store(t.words, SHARED_WORDS / 2, 1 << 20);
    expect(() => t.receiver.receive(t.rep, 0, 13, SRC_AT, t.dest, 'r13')).toThrow(/corrupt 0: a shared copy counted/);
    const t2 = setup(n);
    t2.receiver.receive(t2.rep, 0, 14, SRC_AT, t2.dest, 'r14');
    const good = t2.frames.toSender[0]!;
    const bad = (patch: (p: Uint8Array) => void) => {
      const p = good.payload.slice();
      patch(p);
      return () => t2.sender.help(t2.sep, 1, 14, p, t2.src);
    };
    expect(bad((p) => (p[0] = p[1] = p[2] = p[3] = 0))).toThrow(/generation 0/); // generation 0
    expect(bad((p) => (p[8] = 1))).toThrow(/copy request for transfer 14/); // not the send's size
    expect(bad((p) => (p[4] = 1))).toThrow(/chunks of/); // chunk off the page grid
    expect(() => t2.sender.help(t2.sep, 1, 14, good.payload.subarray(0, 8), t2.src)).toThrow(/malformed copy request/);
    expect(() => t2.receiver.copied(t2.rep, 0, 99, new Uint8Array(8))).toThrow(/unknown transfer 99/);
  });

  it('hands back a waiting receive once when the peer is lost, and keeps its memory from reuse', () => {
    const t = setup(2 * CHUNK);
    // A sender that claimed a chunk and never finishes it.
    t.hooks.onHelpPosted = () => Atomics.add(t.words, 0, 1);
    expect(t.receiver.receive(t.rep, 0, 15, SRC_AT, t.dest, 'r15')).toBe('waiting');
    expect(t.receiver.canShare(t.rep, 0, SHARED_COPY_MIN_BYTES)).toBe(false);
    expect(t.receiver.peers()).toEqual([0]);
    expect(t.receiver.drop(0)).toBe('r15');
    expect(t.receiver.drop(0)).toBeUndefined();
    expect(t.receiver.peers()).toEqual([]);
  });
});
