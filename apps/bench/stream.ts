// A streaming run for counting syscalls: rank 0 sends N messages of SIZE bytes to rank 1 in
// windows of 64, rank 1 acks each window. Run it under `strace -f -c` with N and with N = 0;
// the difference divided by N is the syscalls per message.

import { finalize, init } from '../../runtime/index.js';
import { helpIfAsked } from './common.js';

helpIfAsked(import.meta.url);

const N = Number(process.argv[2] ?? 100000);
const SIZE = Number(process.argv[3] ?? 8);
const WINDOW = 64;
const comm = await init();
const buf = new Uint8Array(SIZE);
// Open the channel before counting starts (a grant or a TCP connect is a one-off).
if (comm.rank === 0) await comm.send(buf, 1, 0);
else if (comm.rank === 1) await comm.recv(0, 0);
const t0 = performance.now();
for (let sent = 0; sent < N; sent += WINDOW) {
  const k = Math.min(WINDOW, N - sent);
  if (comm.rank === 0) {
    const ps: Promise<void>[] = [];
    for (let i = 0; i < k; i++) ps.push(comm.send(buf, 1, 1));
    await Promise.all(ps);
    await comm.recv(1, 2);
  } else if (comm.rank === 1) {
    const ps: Promise<unknown>[] = [];
    for (let i = 0; i < k; i++) ps.push(comm.recv(0, 1));
    await Promise.all(ps);
    await comm.send(0, 0, 2);
  }
}
if (comm.rank === 0 && N > 0) {
  const us = ((performance.now() - t0) * 1000) / N;
  console.log(`stream over ${comm.transportTo(1)}: ${N} messages of ${SIZE} B, ${us.toFixed(2)} us per message`);
}
await finalize();
