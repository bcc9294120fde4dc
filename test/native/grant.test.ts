import { spawn, spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import {
  closeFd,
  doorbellDrain,
  eventfdCreate,
  FdWatcher,
  recvFds,
  segmentCreate,
  segmentMap,
  sendFds,
  socketPair,
} from '../../kmod/index.js';
import { expectNativeError, fixture, openFdCount, runChild } from './helpers.js';

const hasPython = spawnSync('python3', ['-c', 'import socket; socket.send_fds'], { stdio: 'ignore' }).status === 0;

describe('grants over a seqpacket socket pair', () => {
  it('returns null when nothing is queued, keeps message boundaries, and reports eof after the peer closes', () => {
    const [a, b] = socketPair();
    try {
      expect(recvFds(a)).toBeNull();
      sendFds(b, [], new Uint8Array([1, 2, 3]));
      sendFds(b, [], new Uint8Array(0)); // an empty message is not eof
      sendFds(b, [], new Uint8Array(4096).fill(9));
      expect(recvFds(a)).toEqual({ data: Buffer.from([1, 2, 3]), fds: [], eof: false });
      expect(recvFds(a)).toEqual({ data: Buffer.alloc(0), fds: [], eof: false });
      const big = recvFds(a);
      expect(big?.data.length).toBe(4096);
      expect(big?.data.every((x) => x === 9)).toBe(true);
      expect(recvFds(a)).toBeNull();
      closeFd(b);
      expect(recvFds(a)).toEqual({ data: Buffer.alloc(0), fds: [], eof: true });
      expect(recvFds(a)?.eof).toBe(true);
      // Writing to a closed peer is EPIPE, not a SIGPIPE that kills us.
      expectNativeError(() => sendFds(a, [], new Uint8Array([1])), 'EPIPE', 'sendmsg');
    } finally {
      closeFd(a);
    }
  });

  it('passes fds within one process (they arrive as new descriptors)', () => {
    const [a, b] = socketPair();
    const seg = segmentCreate('ivcom-grant', 4096);
    const bells = Array.from({ length: 7 }, () => eventfdCreate());
    try {
      sendFds(a, [seg, ...bells], new TextEncoder().encode('hello'));
      const msg = recvFds(b);
      expect(msg?.data.toString()).toBe('hello');
      expect(msg?.fds).toHaveLength(8);
      const [seg2, ...bells2] = msg!.fds;
      expect(seg2).not.toBe(seg);
      new Int32Array(segmentMap(seg, 4096))[0] = 77;
      expect(new Int32Array(segmentMap(seg2!, 4096))[0]).toBe(77);
      for (const fd of msg!.fds) closeFd(fd);
      expect(bells2).toHaveLength(7);
    } finally {
      for (const fd of [a, b, seg, ...bells]) closeFd(fd);
    }
  });

  it('enforces the grant limits and reports socket errors', () => {
    const [a, b] = socketPair();
    try {
      expect(() => sendFds(a, Array(65).fill(0), new Uint8Array(1))).toThrow(RangeError);
      expect(() => sendFds(a, [], new Uint8Array(4097))).toThrow(RangeError);
      expect(() => sendFds(a, [-1], new Uint8Array(1))).toThrow(TypeError);
      expect(() => sendFds(a, [], Buffer.from('x').toString() as unknown as Uint8Array)).toThrow(TypeError);
      expectNativeError(() => sendFds(a, [987654], new Uint8Array(1)), 'EBADF', 'sendmsg');
      expectNativeError(() => recvFds(987654), 'EBADF', 'recvmsg');
      expectNativeError(() => recvFds(-1), 'EBADF', 'recvmsg');
    } finally {
      closeFd(a);
      closeFd(b);
    }
  });

  it('grants a segment and a doorbell to a child process, which writes and rings back', async () => {
    const bytes = 1 << 16;
    const [parentEnd, childEnd] = socketPair();
    const seg = segmentCreate('ivcom-child', bytes);
    const bell = eventfdCreate();
    const view = new Int32Array(segmentMap(seg, bytes));
    Atomics.store(view, 0, 11);

    const { done } = runChild([fixture('child-grant.mjs')], ['ignore', 'pipe', 'pipe', childEnd]);
    closeFd(childEnd); // the child has its own copy as fd 3

    const rung = new Promise<number>((resolve) => {
      const watcher = new FdWatcher(bell, () => {
        const n = doorbellDrain(bell);
        if (n === 0) return;
        watcher.close();
        // The peer's write is visible by the time its doorbell is seen.
        resolve(Atomics.load(view, 1));
      });
      watcher.start();
    });
    sendFds(parentEnd, [seg, bell], new TextEncoder().encode(JSON.stringify({ bytes, value: 4242 })));

    expect(await rung).toBe(4242);
    const result = await done;
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout)).toEqual({ nfds: 2, cloexec: [true, true], seen: 11 });
    // The child exited and its end is closed: eof.
    expect(recvFds(parentEnd)).toEqual({ data: Buffer.alloc(0), fds: [], eof: true });
    closeFd(parentEnd);
    closeFd(seg);
    closeFd(bell);
  }, 20_000);

  // Node cannot send more than one fd per message, so a small Python peer plays the hostile side.
  it.skipIf(!hasPython)('closes fds and throws when a hostile peer exceeds the limits', async () => {
    const [a, b] = socketPair();
    const py = spawn('python3', [fixture('hostile-peer.py')], { stdio: ['ignore', 'inherit', 'inherit', b] });
    closeFd(b);
    await new Promise<void>((resolve) => py.once('close', () => resolve()));
    const start = openFdCount();
    expectNativeError(() => recvFds(a), 'EMSGSIZE', 'recvmsg', /fds were closed/);
    expect(openFdCount()).toBe(start); // the fds that fit were installed, then closed
    expectNativeError(() => recvFds(a), 'EMSGSIZE', 'recvmsg');
    expect(openFdCount()).toBe(start);
    const ok = recvFds(a);
    expect(ok?.data.toString()).toBe('fine');
    expect(ok?.fds).toHaveLength(1);
    closeFd(ok!.fds[0]!);
    expect(recvFds(a)?.eof).toBe(true);
    closeFd(a);
  }, 20_000);
});
