// alltoall: pairwise exchange. In step k (1..p-1) rank r sends its entry for rank (r+k) mod p and
// receives rank (r-k) mod p's entry for it (with a power-of-two p this is the XOR schedule's
// shifted form; either way every step is a perfect matching of senders to receivers). A rank
// whose entries hold ALLTOALL_PAIRWISE_BYTES or more raw bytes walks the schedule one step at a
// time (bounded memory and link load); below, it posts the whole schedule at once. Ranks may
// choose differently (see select.ts): each pair exchanges exactly one message each way.

import type { CollPort } from './port.js';
import { ALLTOALL_PAIRWISE_BYTES } from './select.js';
import { checkEntries, cloneValue, mod, rawBytes } from './util.js';
import { nextTagBase } from './signature.js';

export async function alltoallImpl<T>(p: CollPort, array: readonly T[], tag: number): Promise<T[]> {
  const { rank, size } = p;
  const out = new Array<T>(size);
  out[rank] = array[rank]!;
  let bytes = 0;
  for (const v of array) bytes += rawBytes(v);
  const stepwise = bytes >= ALLTOALL_PAIRWISE_BYTES;
  const all: Promise<unknown>[] = [];
  for (let k = 1; k < size; k++) {
    const dest = mod(rank + k, size);
    const src = mod(rank - k, size);
    const step = Promise.all([
      p.send(array[dest], dest, tag),
      p.recv(src, tag).then((v) => {
        out[src] = v as T;
      }),
    ]);
    if (stepwise) await step;
    else all.push(step);
  }
  await Promise.all(all);
  return out;
}

export async function alltoall<T>(p: CollPort, array: T[]): Promise<T[]> {
  checkEntries('alltoall: array', array, p);
  const out = await alltoallImpl(p, array, nextTagBase(p));
  out[p.rank] = cloneValue(array[p.rank]!);
  return out;
}
