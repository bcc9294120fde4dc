// The ivcom side of `npm run bench -- --peers` (peers-run.ts): the receive patterns users write,
// through the public API, beside the same patterns in C against Open MPI (peers/osu.c) and in
// mpi4py (peers/mpi4py_bench.py). Run under ivrun:
//   ivrun -n 2 node natural.js [--json] [--quick] [--warmup-ms MS] [--point-warmup-ms MS]
//         [--point-warmup-iters N] [--budget-ms MS] [PATTERN[:SIZE] ...]
// Patterns (all but allreduce between ranks 0 and 1):
//   latency    ping-pong of SIZE bytes; each side `await comm.recv()` (a fresh result every
//              time); one-way µs = half a round trip
//   dict       ping-pong of {op: 'x', seq: i, tag: 7, data: [1.5, 2.5]} (`send(obj)` /
//              `await recv()`, rank 1 echoes what it received); one-way µs
//   bw-serial  windows of 16 sends (awaited together), the receiver takes ONE `await
//              recvInto(buf)` at a time (one buffer per window slot, allocated once), then a
//              1-byte ack; MB/s
//   bw-osu     the same windows, the receiver posts the window's 16 recvInto first (osu_bw); MB/s
//   allreduce  `await comm.allreduce(x, Op.SUM)` of SIZE/8 float64 with a fresh result each call;
//              x is a fresh Float64Array each call, made outside the timer; each call timed
//              alone and followed by an untimed barrier (osu_allreduce); µs per call, averaged
//              over the ranks
// Default patterns: latency:8 dict bw-serial:65536 bw-serial:4194304 allreduce:8
// allreduce:1048576 with 2 ranks, allreduce:8 with more.
//
// Warm-up (V8 optimizes a hot path only after ~10^5 round trips or thousands of large calls):
// first --warmup-ms (1.5 s) of 8 B ping-pong with recv() and 8 B allreduce; then per point,
// batches doubling from 1 until one takes a quarter of --budget-ms, then batches of that size
// until --point-warmup-iters calls or --point-warmup-ms have run (all untimed; the ranks agree
// on every count through an allreduce(MAX) outside the loops); then one timed loop sized to
// --budget-ms. osu.c and mpi4py_bench.py do exactly the same. Prints a table, or one JSON line
// with --json.

import { finalize, init, Op } from '../../runtime/index.js';
import { helpIfAsked } from './common.js';

helpIfAsked(import.meta.url);

const args = process.argv.slice(2);
const json = args.includes('--json');
const quick = args.includes('--quick');
const num = (name: string, dflt: number): number => {
  const i = args.indexOf(`--${name}`);
  if (i >= 0 && args[i + 1] !== undefined) return Number(args[i + 1]);
  const eq = args.find((a) => a.startsWith(`--${name}=`));
  return eq !== undefined ? Number(eq.slice(name.length + 3)) : dflt;
};
const WARMUP_MS = num('warmup-ms', 1500);
const POINT_WARMUP_MS = num('point-warmup-ms', quick ? 400 : 1500);
const POINT_WARMUP_ITERS = num('point-warmup-iters', quick ? 5000 : 20000);
const BUDGET_MS = num('budget-ms', quick ? 150 : 500);
const WINDOW = 16;
const TAG_DATA = 1;
const TAG_ACK = 2;
const TAG_WARM = 9;
const MAX_ITERS = 1 << 26;

// Positional arguments are points; skip the values of the options above.
const withValue = new Set(['--warmup-ms', '--point-warmup-ms', '--point-warmup-iters', '--budget-ms']);
const specs = args.filter((a, i) => !a.startsWith('--') && !withValue.has(args[i - 1] ?? ''));

const comm = await init();
const me = comm.rank;
const peer = me === 0 ? 1 : 0;
const points =
  specs.length > 0 ? specs : comm.size === 2 ? ['latency:8', 'dict', 'bw-serial:65536', 'bw-serial:4194304', 'allreduce:8', 'allreduce:1048576'] : ['allreduce:8'];

export interface NaturalPoint {
  pattern: string;
  bytes: number;
  iters: number;
  value: number;
  unit: 'us' | 'MB/s';
}

export interface NaturalResult {
  impl: 'ivcom';
  transport: string;
  ranks: number;
  results: NaturalPoint[];
}

interface Runner {
  /** Runs n iterations; returns µs spent inside timed operations when it times them itself. */
  run(n: number): Promise<number | undefined>;
  check?(): void;
}

function latencyRunner(bytes: number): Runner {
  const sbuf = new Uint8Array(bytes).fill(me + 1);
  let last: unknown;
  return {
    async run(n) {
      if (me === 0) {
        for (let i = 0; i < n; i++) {
          await comm.send(sbuf, 1, TAG_DATA);
          last = await comm.recv(1, TAG_DATA);
        }
      } else if (me === 1) {
        for (let i = 0; i < n; i++) {
          last = await comm.recv(0, TAG_DATA);
          await comm.send(sbuf, 0, TAG_DATA);
        }
      }
      return undefined;
    },
    check() {
      const m = last as Uint8Array | undefined;
      if (me <= 1 && (!(m instanceof Uint8Array) || m.length !== bytes || (bytes > 0 && m[0] !== peer + 1))) {
        throw new Error(`natural: ${bytes} B ping-pong received ${String(m)}`);
      }
    },
  };
}

function dictRunner(): Runner {
  let seq = 0;
  let last: unknown;
  return {
    async run(n) {
      if (me === 0) {
        for (let i = 0; i < n; i++) {
          await comm.send({ op: 'x', seq: seq++, tag: 7, data: [1.5, 2.5] }, 1, TAG_DATA);
          last = await comm.recv(1, TAG_DATA);
        }
      } else if (me === 1) {
        for (let i = 0; i < n; i++) {
          const m = await comm.recv(0, TAG_DATA);
          await comm.send(m, 0, TAG_DATA);
        }
      }
      return undefined;
    },
    check() {
      const m = last as { op?: string; data?: number[] } | undefined;
      if (me === 0 && (m?.op !== 'x' || m.data?.[1] !== 2.5)) throw new Error(`natural: dict came back as ${JSON.stringify(last)}`);
    },
  };
}

function bandwidthRunner(bytes: number, posted: boolean): Runner {
  const sbuf = new Uint8Array(bytes);
  for (let j = 0; j < bytes; j++) sbuf[j] = (j * 7 + 1) & 255;
  const slots = Array.from({ length: WINDOW }, () => new Uint8Array(bytes));
  const ack = new Uint8Array(1);
  return {
    async run(n) {
      if (me === 0) {
        for (let w = 0; w < n; w++) {
          const sends: Promise<void>[] = [];
          for (let i = 0; i < WINDOW; i++) sends.push(comm.send(sbuf, 1, TAG_DATA));
          await Promise.all(sends);
          await comm.recvInto(ack, 1, TAG_ACK);
        }
      } else if (me === 1) {
        for (let w = 0; w < n; w++) {
          if (posted) {
            await Promise.all(slots.map((s) => comm.recvInto(s, 0, TAG_DATA)));
          } else {
            for (let i = 0; i < WINDOW; i++) await comm.recvInto(slots[i]!, 0, TAG_DATA);
          }
          await comm.send(ack, 0, TAG_ACK);
        }
      }
      return undefined;
    },
    check() {
      // The data arrived (the slots start zeroed; the pattern is never 0 at these offsets).
      if (me !== 1) return;
      for (const s of [slots[0]!, slots[WINDOW - 1]!]) {
        for (const j of [0, bytes >> 1, bytes - 1]) {
          if (s[j] !== sbuf[j]) throw new Error(`natural: ${bytes} B window: byte ${j} is ${s[j]}, sent ${sbuf[j]}`);
        }
      }
    },
  };
}

function allreduceRunner(bytes: number): Runner {
  const count = bytes / 8;
  let last: Float64Array | undefined;
  return {
    async run(n) {
      // performance.now() (ms, fractional): ~0.1 µs a reading here, where process.hrtime.bigint()
      // took 0.15-0.23 µs and allocated, inside the timed region of a call that takes a few µs.
      let timed = 0;
      for (let i = 0; i < n; i++) {
        const x = new Float64Array(count).fill(me + 1);
        const t = performance.now();
        last = await comm.allreduce(x, Op.SUM);
        timed += performance.now() - t;
        await comm.barrier();
      }
      return timed * 1000;
    },
    check() {
      const want = (comm.size * (comm.size + 1)) / 2;
      if (count > 0 && last?.[count - 1] !== want) throw new Error(`natural: allreduce gave ${last?.[count - 1]}, expected ${want}`);
    },
  };
}

/** Runs n iterations between barriers; returns [this rank's wall µs, µs inside timed ops]. */
async function batch(r: Runner, n: number): Promise<[number, number | undefined]> {
  await comm.barrier();
  const t0 = process.hrtime.bigint();
  const inside = await r.run(n);
  return [Number(process.hrtime.bigint() - t0) / 1000, inside];
}

async function measure(pattern: string, bytes: number, r: Runner, unit: 'us' | 'MB/s'): Promise<NaturalPoint> {
  let n = 1;
  let ran = 0;
  let spent = 0;
  let wall = 0;
  let calibrated = false;
  for (;;) {
    wall = await comm.allreduce((await batch(r, n))[0], Op.MAX);
    ran += n;
    spent += wall;
    if (wall >= (BUDGET_MS * 1000) / 4) calibrated = true;
    if (calibrated && (ran >= POINT_WARMUP_ITERS || spent >= POINT_WARMUP_MS * 1000)) break;
    if (n >= MAX_ITERS) break;
    if (!calibrated) n *= 2;
  }
  const iters = Math.max(5, Math.min(MAX_ITERS, Math.round((BUDGET_MS * 1000) / Math.max(wall / n, 0.001))));
  const [w, inside] = await batch(r, iters);
  r.check?.();
  let value: number;
  if (pattern === 'allreduce') {
    value = (await comm.allreduce(inside! / iters, Op.SUM)) / comm.size;
  } else {
    const w0 = (await comm.bcast(me === 0 ? w : 0, 0)) as number;
    value = unit === 'us' ? w0 / iters / 2 : (bytes * WINDOW * iters) / w0;
  }
  return { pattern, bytes, iters, value, unit };
}

/** Before anything is timed: 8 B ping-pong with recv() and 8 B allreduce for WARMUP_MS. */
async function warmup(): Promise<void> {
  const b = new Uint8Array(8);
  const x = new Float64Array(1);
  const t0 = performance.now();
  for (;;) {
    for (let i = 0; i < 100; i++) {
      if (comm.size >= 2 && me === 0) {
        await comm.send(b, 1, TAG_WARM);
        await comm.recv(1, TAG_WARM);
      } else if (me === 1) {
        await comm.recv(0, TAG_WARM);
        await comm.send(b, 0, TAG_WARM);
      }
      await comm.allreduce(x, Op.SUM);
    }
    if ((await comm.allreduce(performance.now() - t0, Op.MAX)) >= WARMUP_MS) break;
  }
}

await warmup();
const results: NaturalPoint[] = [];
for (const spec of points) {
  const [name, b] = spec.split(':') as [string, string | undefined];
  const bytes = b === undefined ? 0 : Number(b);
  if (name !== 'allreduce' && comm.size < 2) throw new Error(`natural: ${name} needs 2 ranks`);
  switch (name) {
    case 'latency':
      results.push(await measure('latency', bytes, latencyRunner(bytes), 'us'));
      break;
    case 'dict':
      results.push(await measure('dict', 0, dictRunner(), 'us'));
      break;
    case 'bw-serial':
      results.push(await measure('bw-serial', bytes, bandwidthRunner(bytes, false), 'MB/s'));
      break;
    case 'bw-osu':
      results.push(await measure('bw-posted', bytes, bandwidthRunner(bytes, true), 'MB/s'));
      break;
    case 'allreduce':
      results.push(await measure('allreduce', bytes, allreduceRunner(bytes), 'us'));
      break;
    default:
      throw new Error(`natural: unknown pattern '${name}' (latency, dict, bw-serial, bw-osu, allreduce)`);
  }
}

const result: NaturalResult = { impl: 'ivcom', transport: comm.size > 1 ? comm.transportTo(peer) : 'self', ranks: comm.size, results };
await finalize();

if (me === 0) {
  if (json) console.log(JSON.stringify(result));
  else {
    console.log(`# ivcom natural receive patterns, ${result.ranks} ranks, transport ${result.transport}`);
    for (const p of results) {
      console.log(`${p.pattern.padEnd(10)} ${String(p.bytes).padStart(8)} B  ${p.value.toFixed(2).padStart(10)} ${p.unit.padEnd(5)} (${p.iters} iterations)`);
    }
  }
}
