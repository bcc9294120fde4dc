import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  closeFd,
  doorbellRing,
  eventfdCreate,
  FdWatcher,
  recvFds,
  segmentCreate,
  segmentMap,
  sendFds,
  socketPair,
} from '../../kmod/index.js';
import { openFdCount } from './helpers.js';

describe('descriptor hygiene', () => {
  it('returns to the starting number of open fds after closing everything it created', () => {
    const start = openFdCount();
    const created: number[] = [];
    const seg = segmentCreate('ivcom-fds', 1 << 20);
    created.push(seg);
    segmentMap(seg, 1 << 20); // a mapping holds no descriptor
    const bell = eventfdCreate();
    created.push(bell);
    const [a, b] = socketPair();
    created.push(a, b);
    const w = new FdWatcher(bell, () => {});
    w.start();
    doorbellRing(bell);
    sendFds(a, [seg, bell, a], new Uint8Array([1]));
    const msg = recvFds(b);
    created.push(...msg!.fds);
    expect(openFdCount()).toBe(start + created.length);
    w.close();
    for (const fd of created) closeFd(fd);
    expect(openFdCount()).toBe(start);
  });

  it('creates every descriptor close-on-exec', () => {
    const [a, b] = socketPair();
    const fds = [segmentCreate('ivcom-cloexec', 4096), eventfdCreate(), a, b];
    try {
      for (const fd of fds) {
        const flags = /flags:\s+(\d+)/.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))![1]!;
        expect(parseInt(flags, 8) & 0o2000000).not.toBe(0);
      }
    } finally {
      for (const fd of fds) closeFd(fd);
    }
  });
});
