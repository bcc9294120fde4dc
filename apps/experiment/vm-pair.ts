// One side of the paper's experiment (`npm start`, run.ts): two ranks, one in each VM, measure
// over whichever transport ivrun gave them, and rank 0 prints one JSON line:
//   rtt      request/response round trips of 8 B, 1 KiB and 64 KiB (await recv(), fresh results)
//   stream   64 KiB and 1 MiB messages in windows of 16, the receiver taking one at a time
//            (await recvInto), a 1-byte ack per window
//   transitions  per streamed message, the kernel's count of context switches of both ranks
//            (voluntary + involuntary, summed over every thread: /proc/self/task/*/status), as
//            the paper counts VM exits per message
// Usage: ivrun -n 2 ... node vm-pair.js [--budget-ms MS]

import { readdirSync, readFileSync } from 'node:fs';
import { finalize, init } from '../../runtime/index.js';

const args = process.argv.slice(2);
const budgetIdx = args.indexOf('--budget-ms');
/** Timed milliseconds per measurement (after an untimed warm-up of the same length). */
const BUDGET_MS = budgetIdx >= 0 ? Number(args[budgetIdx + 1]) : 400;
const RTT_SIZES = [8, 1024, 65536];
const STREAM_SIZES = [65536, 1 << 20];
const WINDOW = 16;

const c = await init();
if (c.size !== 2) throw new Error(`vm-pair runs on 2 ranks, got ${c.size}`);
const peer = 1 - c.rank;

/** Context switches of this process so far, all threads (the kernel's own counters). */
function contextSwitches(): number {
  let n = 0;
  for (const t of readdirSync('/proc/self/task')) {
    try {
      const s = readFileSync(`/proc/self/task/${t}/status`, 'utf8');
      n += Number(/^voluntary_ctxt_switches:\s*(\d+)/m.exec(s)?.[1] ?? 0) + Number(/^nonvoluntary_ctxt_switches:\s*(\d+)/m.exec(s)?.[1] ?? 0);
    } catch {
      // a thread that ended meanwhile
    }
  }
  return n;
}

/** Runs `step` in batches until BUDGET_MS: rank 0 decides when to stop, rank 1 follows. */
async function timed(step: () => Promise<void>): Promise<{ iters: number; ms: number }> {
  let iters = 0;
  const t0 = performance.now();
  for (;;) {
    for (let i = 0; i < 64; i++) await step();
    iters += 64;
    const stop = c.rank === 0 ? performance.now() - t0 >= BUDGET_MS : false;
    if (await c.bcast(stop, 0)) break;
  }
  return { iters, ms: performance.now() - t0 };
}

async function rtt(bytes: number): Promise<number> {
  const msg = new Uint8Array(bytes);
  const step = c.rank === 0 ? async () => {
    await c.send(msg, peer, 1);
    await c.recv(peer, 2);
  } : async () => {
    await c.send(await c.recv<Uint8Array>(peer, 1), peer, 2);
  };
  await timed(step); // warm-up
  const { iters, ms } = await timed(step);
  return (ms * 1000) / iters;
}

async function stream(bytes: number): Promise<{ gbps: number; switchesPerMsg: number }> {
  const msg = new Uint8Array(bytes).fill(1);
  const into = new Uint8Array(bytes);
  const ack = new Uint8Array(1);
  const step = c.rank === 0 ? async () => {
    const sends: Promise<void>[] = [];
    for (let i = 0; i < WINDOW; i++) sends.push(c.send(msg, peer, 3));
    await Promise.all(sends);
    await c.recvInto(ack, peer, 4);
  } : async () => {
    for (let i = 0; i < WINDOW; i++) await c.recvInto(into, peer, 3);
    await c.send(ack, peer, 4);
  };
  await timed(step); // warm-up
  const before = contextSwitches();
  const { iters, ms } = await timed(step);
  const mine = contextSwitches() - before;
  const both = (await c.allgather(mine)).reduce((a, b) => a + b, 0);
  const messages = iters * WINDOW;
  return { gbps: (messages * bytes * 8) / (ms * 1e6), switchesPerMsg: both / messages };
}

/** V8 optimizes the message path only after ~10^5 round trips: run them untimed first. */
const WARMUP_MS = 1500;
{
  const t0 = performance.now();
  const msg = new Uint8Array(8);
  for (let go = true; go; ) {
    for (let i = 0; i < 1000; i++) {
      if (c.rank === 0) {
        await c.send(msg, peer, 9);
        await c.recv(peer, 9);
      } else await c.send(await c.recv(peer, 9), peer, 9);
    }
    go = await c.bcast(c.rank === 0 ? performance.now() - t0 < WARMUP_MS : false, 0);
  }
}

const out: Record<string, unknown> = { transport: c.transportTo(peer), rtt: {}, stream: {} };
for (const b of RTT_SIZES) (out.rtt as Record<number, number>)[b] = await rtt(b);
for (const b of STREAM_SIZES) (out.stream as Record<number, unknown>)[b] = await stream(b);
if (c.rank === 0) console.log(JSON.stringify(out));
await finalize();
