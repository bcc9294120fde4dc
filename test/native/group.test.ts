// The host group segment (transport/ivcom/group.ts) between two views of one segment in this
// process: publication, the sleep/ring handshake, and what a lying slot gets (an error naming
// its rank, never a read past the slot).

import { afterEach, describe, expect, it } from 'vitest';
import * as kmod from '../../kmod/index.js';
import { closeFd, eventfdCreate, recvFds, segmentCreate, sendFds, socketPair } from '../../kmod/index.js';
import { groupBytes, GROUP_DATA_BYTES } from '../../transport/ivcom/group-layout.js';
import { HostGroup } from '../../transport/ivcom/group.js';

const open: HostGroup[] = [];
afterEach(() => {
  for (const g of open.splice(0)) g.close();
});

/** Ranks 3 and 7 of a job, each with its own view (and its own fds) of one group segment. */
function pair(): { a: HostGroup; b: HostGroup; i32: Int32Array } {
  const ranks = [3, 7];
  const seg = segmentCreate('ivcom-group-test', groupBytes(2));
  const bells = [eventfdCreate(), eventfdCreate()];
  // Second copies of the fds, the way ranks get theirs: passed over a socket.
  const [s0, s1] = socketPair();
  sendFds(s0, [seg, ...bells], new Uint8Array(1));
  const copies = recvFds(s1)!.fds;
  closeFd(s0);
  closeFd(s1);
  const a = new HostGroup({ ranks, segmentFd: copies[0]!, bellFds: copies.slice(1) }, 3, kmod);
  const b = new HostGroup({ ranks, segmentFd: seg, bellFds: bells }, 7, kmod);
  open.push(a, b);
  return { a, b, i32: new Int32Array(a.buffer) };
}

describe('host group segment', () => {
  it('shows a publication with its descriptor and data to the other rank', () => {
    const { a, b } = pair();
    expect(b.arrived(0, 1)).toBe(false);
    new Uint8Array(a.buffer, a.dataOffset(0, 1), 3).set([1, 2, 3]);
    a.publish(1, { kind: 2, op: 33, bytes: 3 });
    expect(b.arrived(0, 1)).toBe(true);
    expect({ ...b.descriptor(0, 1) }).toEqual({ kind: 2, op: 33, bytes: 3 });
    expect([...new Uint8Array(b.buffer, b.dataOffset(0, 1), 3)]).toEqual([1, 2, 3]);
    // A rank one call ahead still shows the call before (the two buffers).
    a.publish(2, { kind: 1, op: 0, bytes: 0 });
    expect(b.arrived(0, 1)).toBe(true);
    expect({ ...b.descriptor(0, 1) }).toEqual({ kind: 2, op: 33, bytes: 3 });
  });

  it('rings a rank that said it sleeps on the call, once, and no other', async () => {
    const { a, b } = pair();
    let woke = 0;
    b.wakeWith(() => woke++);
    b.sleep(1);
    a.publish(1, { kind: 1, op: 0, bytes: 0 });
    // The publisher took the sleep word: the sleeper cannot take it back, its ring is on the way.
    expect(b.wakeUp(1)).toBe(false);
    await new Promise((r) => setTimeout(r, 50));
    expect(woke).toBe(1);
    b.sleep(2);
    expect(b.wakeUp(2)).toBe(true);
    a.publish(2, { kind: 1, op: 0, bytes: 0 });
    await new Promise((r) => setTimeout(r, 50));
    expect(woke).toBe(1);
  });

  it('refuses what the protocol cannot produce, naming the rank', () => {
    const { a, b, i32 } = pair();
    a.publish(1, { kind: 1, op: 0, bytes: 0 });
    // Slot 0's call counter jumps ahead by two: a broken or lying peer.
    Atomics.store(i32, 0, 3);
    expect(() => b.arrived(0, 1)).toThrow(expect.objectContaining({ code: 'ERR_IVCOM_CORRUPT', peer: 3 }));
    expect(() => b.arrived(0, 1)).toThrow(/rank 7: the host group slot of rank 3 is corrupt: its call counter reads 3 while this rank waits for call 1/);
    Atomics.store(i32, 0, 1);
    // A byte count past the slot's data region, and a buffer of another call.
    // Slot 0, buffer 1 (call 1): after the slot's control line and buffer 0.
    const buf = (64 + (64 + GROUP_DATA_BYTES)) / 4;
    i32[buf + 3] = GROUP_DATA_BYTES + 1;
    expect(() => b.descriptor(0, 1)).toThrow(/claims 257 bytes \(at most 256\)/);
    i32[buf + 3] = 0;
    i32[buf] = 5;
    expect(() => b.descriptor(0, 1)).toThrow(/its buffer for call 1 says call 5/);
  });
});
