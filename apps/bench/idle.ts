// Idle cost and wake-up latency: rank 1 waits in recv() for WAIT seconds while rank 0 sleeps;
// then rank 0 sends its clock (CLOCK_MONOTONIC is shared by the processes of one machine) and
// rank 1 reports how much CPU it used while waiting and how long the message took to wake it.
// Repeated a few times; prints one JSON line with --json.

import { finalize, init } from '../../runtime/index.js';
import { helpIfAsked } from './common.js';

helpIfAsked(import.meta.url);

const args = process.argv.slice(2);
const waitArg = args.find((a) => a.startsWith('--wait='));
const WAIT_MS = (waitArg ? Number(waitArg.slice(7)) : 5) * 1000;
const REPS = Number(args.find((a) => a.startsWith('--reps='))?.slice(7) ?? 3);

const comm = await init();
const out: { cpuPercent: number; wakeUs: number }[] = [];
for (let r = 0; r < REPS; r++) {
  await comm.barrier();
  if (comm.rank === 0) {
    await new Promise((res) => setTimeout(res, WAIT_MS));
    await comm.send(new BigInt64Array([process.hrtime.bigint()]), 1, 1);
  } else if (comm.rank === 1) {
    const cpu0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    const sent = (await comm.recv<BigInt64Array>(0, 1))[0]!;
    const now = process.hrtime.bigint();
    const cpu = process.cpuUsage(cpu0);
    const wall = Number(now - t0) / 1000;
    out.push({ cpuPercent: ((cpu.user + cpu.system) / wall) * 100, wakeUs: Number(now - sent) / 1000 });
  }
}
if (comm.rank === 1) await comm.send(out, 0, 2);
if (comm.rank === 0) {
  const res = await comm.recv<typeof out>(1, 2);
  const t = comm.transportTo(1);
  if (args.includes('--json')) console.log(JSON.stringify({ transport: t, reps: res }));
  else for (const x of res) console.log(`${t}: waited ${WAIT_MS / 1000} s in recv using ${x.cpuPercent.toFixed(2)} % of a core; woke ${x.wakeUs.toFixed(1)} us after the send`);
}
await finalize();
