// OSU-style point-to-point micro-benchmark between ranks 0 and 1, through the public API.
//   latency:   one-way time = half the round trip of a ping-pong, per message size
//   bandwidth: windows of 64 back-to-back messages, then a 1-byte ack (osu_bw)
// Like OSU, receives go into a buffer allocated once (recvInto), so that the figure is the
// transport's and not the allocator's. Run under ivrun with 2 ranks. Prints a table, or one
// JSON line with --json. --sizes=8,65536 measures only those sizes (default: 0 and powers of two
// up to --max=, 4 MiB).

import { finalize, init } from '../../runtime/index.js';
import { helpIfAsked } from './common.js';

helpIfAsked(import.meta.url);

const args = process.argv.slice(2);
const json = args.includes('--json');
const quick = args.includes('--quick');
const maxArg = args.find((a) => a.startsWith('--max='));
const MAX = maxArg ? Number(maxArg.slice(6)) : 4 << 20;
const WINDOW = 64;

const comm = await init();
if (comm.size < 2) throw new Error('pingpong needs 2 ranks: ivrun -n 2 node pingpong.js');
const me = comm.rank;
const peer = me === 0 ? 1 : 0;

const sizesArg = args.find((a) => a.startsWith('--sizes='));
const sizes: number[] = sizesArg ? sizesArg.slice(8).split(',').map(Number) : [0];
if (sizes.some((s) => !Number.isInteger(s) || s < 0)) throw new Error(`pingpong: --sizes takes byte counts, got ${sizesArg}`);
if (!sizesArg) for (let s = 1; s <= MAX; s *= 2) sizes.push(s);

// Round trips per size: more over memory, where each costs microseconds, than over TCP.
const fast = comm.transportTo(peer) !== 'tcp';
function itersFor(size: number): number {
  const base = size <= 8192 ? (fast ? 20000 : 4000) : size <= 262144 ? (fast ? 2000 : 400) : 100;
  return quick ? Math.max(10, Math.floor(base / 10)) : base;
}

async function latency(size: number): Promise<number> {
  const buf = new Uint8Array(size);
  const rbuf = new Uint8Array(size);
  const iters = itersFor(size);
  const warm = Math.max(5, iters >> 3);
  let t0 = 0n;
  for (let i = 0; i < warm + iters; i++) {
    if (i === warm) t0 = process.hrtime.bigint();
    if (me === 0) {
      await comm.send(buf, 1, 1);
      await comm.recvInto(rbuf, 1, 1);
    } else if (me === 1) {
      await comm.recvInto(rbuf, 0, 1);
      await comm.send(buf, 0, 1);
    }
  }
  return Number(process.hrtime.bigint() - t0) / 1000 / iters / 2;
}

async function bandwidth(size: number): Promise<number> {
  const buf = new Uint8Array(size);
  // One receive buffer per message of the window, reused across windows.
  const rbufs = Array.from({ length: WINDOW }, () => new Uint8Array(size));
  const ack = new Uint8Array(1);
  const windows = Math.max(2, Math.floor(itersFor(size) / WINDOW) * 2);
  const warm = 1;
  let t0 = 0n;
  for (let w = 0; w < warm + windows; w++) {
    if (w === warm) t0 = process.hrtime.bigint();
    if (me === 0) {
      const sends: Promise<void>[] = [];
      for (let i = 0; i < WINDOW; i++) sends.push(comm.send(buf, 1, 2));
      await Promise.all(sends);
      await comm.recvInto(ack, 1, 3);
    } else if (me === 1) {
      const recvs: Promise<unknown>[] = [];
      for (let i = 0; i < WINDOW; i++) recvs.push(comm.recvInto(rbufs[i]!, 0, 2));
      await Promise.all(recvs);
      await comm.send(new Uint8Array(1), 0, 3);
    }
  }
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  return (size * WINDOW * windows) / secs / 1e6; // MB/s
}

// Warm up before anything is timed: V8 needs on the order of 10^5 round trips before the hot
// path runs optimized code. Rank 0 decides when to stop (a flag in the message).
if (me <= 1) {
  const w = new Uint8Array(8);
  const end = Date.now() + (quick ? 300 : 1500);
  for (;;) {
    if (me === 0) {
      w[0] = Date.now() < end ? 1 : 0;
      await comm.send(w, 1, 9);
      await comm.recvInto(w, 1, 9);
      if (w[0] === 0) break;
    } else {
      await comm.recvInto(w, 0, 9);
      await comm.send(w, 0, 9);
      if (w[0] === 0) break;
    }
  }
}

const result = { transport: comm.transportTo(peer), latency: [] as [number, number][], bandwidth: [] as [number, number][] };
if (me <= 1) {
  for (const s of sizes) result.latency.push([s, await latency(s)]);
  for (const s of sizes) if (s > 0) result.bandwidth.push([s, await bandwidth(s)]);
}
await finalize();

if (me === 0) {
  if (json) console.log(JSON.stringify(result));
  else {
    console.log(`# ivcom ping-pong, ranks 0 and 1, transport ${result.transport}`);
    console.log('# size(B)   one-way latency(us)   bandwidth(MB/s)');
    const bw = new Map(result.bandwidth);
    for (const [s, us] of result.latency) {
      console.log(`${String(s).padStart(9)}   ${us.toFixed(2).padStart(19)}   ${s > 0 ? bw.get(s)!.toFixed(1).padStart(15) : '              -'}`);
    }
  }
}
