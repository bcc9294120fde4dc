// barrier: dissemination (Hensgen, Finkel & Manber): in round k every rank signals rank+2^k and
// waits for rank-2^k; ceil(log2 p) rounds for any p. Across hosts: every rank signals its host's
// leader, the leaders run the dissemination barrier, and each leader releases its host.

import type { CollPort } from './port.js';
import { useHierarchy } from './select.js';
import { exchange, mod, subPort, topology } from './util.js';
import { nextTagBase } from './signature.js';

/** Raw bytes, not a value: no msgpack encoding or decoding per signal. */
const TOKEN = new Uint8Array(0);

/** Dissemination barrier on `p` with one tag (the partner of every round is distinct). */
export async function disseminationBarrier(p: CollPort, tag: number): Promise<void> {
  const { rank, size } = p;
  for (let d = 1; d < size; d *= 2) {
    await exchange(p, TOKEN, mod(rank + d, size), mod(rank - d, size), tag);
  }
}

/** `sig`: the communicator's record of the call (the host group's slots check it against mismatches). */
export async function barrierImpl(p: CollPort, tag: number, sig?: object): Promise<void> {
  if (p.size === 1) return;
  if (p.slots !== undefined) return await p.slots.barrier(sig);
  if (p.size === 2) {
    // The dissemination barrier's one round, without its loop's async layer: that layer cost
    // more than the exchange itself (and a few hundred bytes of garbage per barrier).
    await exchange(p, TOKEN, p.rank ^ 1, p.rank ^ 1, tag);
    return;
  }
  if (!useHierarchy(p)) return await disseminationBarrier(p, tag);
  const t = topology(p);
  const mine = t.hosts[t.hostIndex[p.rank]!]!;
  const leader = mine[0]!;
  if (p.rank !== leader) {
    await exchange(p, TOKEN, leader, leader, tag, tag + 2);
    return;
  }
  await Promise.all(mine.slice(1).map((r) => p.recv(r, tag)));
  await disseminationBarrier(subPort(p, t.hosts.map((h) => h[0]!)), tag + 1);
  await Promise.all(mine.slice(1).map((r) => p.send(TOKEN, r, tag + 2)));
}

export function barrier(p: CollPort): Promise<void> {
  const sig = p.signature;
  return barrierImpl(p, nextTagBase(p), sig);
}
