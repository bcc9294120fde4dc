// How much memory the shared-memory rings of a job can take on one host, and the warning ivrun
// prints when that is more than the host has. Only a warning: grants are lazy (a pair gets its
// segment on first contact, launcher/grants.ts) and a memfd's pages exist only once written, so
// a job whose ranks talk to few peers, or send little, runs fine with rings it could never fill.

import { segmentBytes } from '../transport/ivcom/layout.js';

/** Bytes the segments of `ranksOnHost` ranks take when every pair talks and laps both rings. */
export function worstRingMemory(ranksOnHost: number, ringBytes: number): number {
  const pairs = (ranksOnHost * (ranksOnHost - 1)) / 2;
  return pairs * segmentBytes(ringBytes);
}

const UNITS = ['KiB', 'MiB', 'GiB'] as const;
/** A size as people read it: the largest unit that leaves at least 1 (KiB for anything smaller). */
function size(n: number): string {
  let u = 0;
  let v = n / 1024;
  while (u < UNITS.length - 1 && v >= 1024) {
    v /= 1024;
    u++;
  }
  return `${v.toFixed(1)} ${UNITS[u]}`;
}

/** The warning for a host running `ranksOnHost` ranks with `memoryBytes` of RAM, or undefined. */
export function ringMemoryWarning(host: string, ranksOnHost: number, ringBytes: number, memoryBytes: number): string | undefined {
  const worst = worstRingMemory(ranksOnHost, ringBytes);
  if (worst <= memoryBytes) return undefined;
  return (
    `ivrun: warning: --ring-bytes ${ringBytes} gives each pair of ranks on ${host} a ${size(segmentBytes(ringBytes))} segment; ` +
    `if all ${ranksOnHost} ranks there talk to each other and fill their rings, that is ${size(worst)}, ` +
    `more than its ${size(memoryBytes)} of memory. Rings are granted on first contact and use memory only as data ` +
    `passes, so the job starts; if ranks are killed for lack of memory, give a smaller --ring-bytes`
  );
}
