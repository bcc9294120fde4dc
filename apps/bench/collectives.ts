// OSU-style collective latency (osu_allreduce, osu_bcast, osu_barrier, osu_allgather,
// osu_alltoall) through the public API. Run under ivrun with any number of ranks:
//   ivrun -n 4 node collectives.js [--json] [--quick] [--ops allreduce,bcast,...] [--max BYTES]
// For each operation and size: a warm-up that doubles its iteration count until a batch has run
// for a quarter of the time budget and the point has run 3000 times in all or for 2 s (V8 needs
// thousands of calls to optimize a large collective's path: POINT_WARMUP_ITERS; the ranks agree
// on the count through an allreduce outside the timed region), then a loop sized to the budget
// in which, as in OSU, each operation is timed on its own and followed by an untimed barrier
// (barrier itself runs back to back). Reported per point: the mean time per operation in
// microseconds, averaged over the ranks (OSU's "Avg Latency"), with the min and max over the ranks.
//   allreduce   Float64Array, Op.SUM, sizes 8 B .. 1 MiB (a fresh result every call)
//   allreduce-into  the same into one reused result buffer ({ into }, as OSU's recvbuf)
//   bcast       Float64Array from rank 0, 8 B .. 1 MiB
//   barrier
//   allgather   a Float64Array block per rank, 8 B .. 32 KiB per rank
//   alltoall    a Float64Array block per pair, 8 B .. 32 KiB per pair
// Prints a table, or one JSON line with --json.

import { finalize, init, Op, type Comm } from '../../runtime/index.js';
import { helpIfAsked } from './common.js';

helpIfAsked(import.meta.url);

const args = process.argv.slice(2);
const opt = (name: string): string | undefined => {
  const i = args.indexOf(`--${name}`);
  if (i >= 0) return args[i + 1];
  const eq = args.find((a) => a.startsWith(`--${name}=`));
  return eq?.slice(name.length + 3);
};
const json = args.includes('--json');
const quick = args.includes('--quick');
const MAX = Number(opt('max') ?? 1 << 20);
const OPS = (opt('ops') ?? 'allreduce,allreduce-into,bcast,barrier,allgather,alltoall').split(',');
/** Time budget of one measurement (ms). */
const BUDGET_MS = Number(opt('budget-ms') ?? (quick ? 60 : 250));
const WARMUP_MS = Number(opt('warmup-ms') ?? (quick ? 500 : 2000));
const MIN_ITERS = 5;
/**
 * Every point first runs at least this many times, or for POINT_WARMUP_CAP_MS, untimed. V8
 * optimizes a path only after it has run for a while, and a large collective runs little
 * JavaScript per call (its time is copying and reducing), so it takes thousands of calls:
 * measured, 2 ranks, 1 MiB allreduce into a reused buffer, mean per block of 1000 calls:
 * 686 299 509 249 236 213 189 172 156 142 µs. OSU's fixed warm-up (10-200 calls) suits C only.
 */
const POINT_WARMUP_ITERS = Number(opt('point-warmup-iters') ?? (quick ? 100 : 3000));
const POINT_WARMUP_CAP_MS = Number(opt('point-warmup-ms') ?? (quick ? 300 : 2000));
const MAX_ITERS = 20_000;

const comm = await init();

export interface Point {
  op: string;
  /** Bytes per rank (allreduce, bcast), per rank's block (allgather) or per pair (alltoall). */
  bytes: number;
  iters: number;
  /** Mean µs per operation: averaged over ranks, and the extremes over ranks. */
  avg: number;
  min: number;
  max: number;
}

export interface Result {
  ranks: number;
  transport: string;
  results: Point[];
}

/** lo, lo*8, lo*64, ... up to hi (and hi itself), capped by --max. */
const ladder = (lo: number, hi: number): number[] => {
  const out: number[] = [];
  for (let b = lo; b < hi; b *= 8) out.push(b);
  out.push(hi);
  return out.filter((b) => b <= MAX);
};

/**
 * Runs `op` n times. As in OSU, each operation is timed on its own and followed by an untimed
 * barrier (so a root that only posts its sends does not race ahead into the next iteration),
 * except for the barrier itself, which runs back to back. Returns [µs timed, µs of wall time].
 */
async function loop(c: Comm, n: number, op: () => Promise<unknown>, sync: boolean): Promise<[number, number]> {
  const w0 = process.hrtime.bigint();
  let timed = 0n;
  for (let i = 0; i < n; i++) {
    const t = process.hrtime.bigint();
    await op();
    timed += process.hrtime.bigint() - t;
    if (sync) await c.barrier();
  }
  return [Number(timed) / 1000, Number(process.hrtime.bigint() - w0) / 1000];
}

async function measure(c: Comm, name: string, bytes: number, op: () => Promise<unknown>): Promise<Point> {
  const sync = name !== 'barrier';
  // Warm-up and calibration: double the count until the slowest rank has spent BUDGET/4 of
  // wall time in the last batch AND the point has run POINT_WARMUP_ITERS times in all (or for
  // POINT_WARMUP_CAP_MS); the ranks agree on it through an allreduce outside the timed loops.
  let n = 1;
  let wallPerOp = 0;
  let ran = 0;
  let spent = 0;
  for (;;) {
    await c.barrier();
    const [, wall] = await loop(c, n, op, sync);
    const us = await c.allreduce(wall, Op.MAX);
    wallPerOp = us / n;
    ran += n;
    spent += us;
    const calibrated = us >= (BUDGET_MS * 1000) / 4;
    if ((calibrated && (ran >= POINT_WARMUP_ITERS || spent >= POINT_WARMUP_CAP_MS * 1000)) || n >= MAX_ITERS) break;
    n *= 2;
  }
  const iters = Math.max(MIN_ITERS, Math.min(MAX_ITERS, Math.round((BUDGET_MS * 1000) / Math.max(wallPerOp, 0.01))));
  await c.barrier();
  const [timed] = await loop(c, iters, op, sync);
  const mine = timed / iters;
  const all = (await c.gather(mine, 0)) ?? [mine];
  return {
    op: name,
    bytes,
    iters,
    avg: all.reduce((a, b) => a + b, 0) / all.length,
    min: Math.min(...all),
    max: Math.max(...all),
  };
}

/**
 * A job's first second or so runs several times slower than the rest (measured: a barrier at
 * the start 120 µs, 15 µs a second later; JIT tiers, the other ranks still starting on a
 * 2-core machine), far longer than any per-point warm-up. So first run a mix of every
 * collective until WARMUP_MS has passed on the slowest rank.
 */
async function warmup(c: Comm, ms: number): Promise<void> {
  const x = new Float64Array(1);
  const xs = Array.from({ length: c.size }, () => new Float64Array(1));
  const t0 = performance.now();
  for (;;) {
    for (let i = 0; i < 20; i++) {
      await c.barrier();
      await c.allreduce(x, Op.SUM);
      await c.bcast(x, 0);
      await c.allgather(x);
      await c.alltoall(xs);
    }
    if ((await c.allreduce(performance.now() - t0, Op.MAX)) >= ms) break;
  }
}

await warmup(comm, WARMUP_MS);
const results: Point[] = [];
for (const name of OPS) {
  switch (name) {
    case 'allreduce':
      for (const b of ladder(8, 1 << 20)) {
        const x = new Float64Array(b / 8).fill(comm.rank + 1);
        results.push(await measure(comm, name, b, () => comm.allreduce(x, Op.SUM)));
      }
      break;
    case 'allreduce-into':
      // As OSU does it: the result goes into one receive buffer, reused by every call.
      for (const b of ladder(8, 1 << 20)) {
        const x = new Float64Array(b / 8).fill(comm.rank + 1);
        const out = new Float64Array(b / 8);
        results.push(await measure(comm, name, b, () => comm.allreduce(x, Op.SUM, { into: out })));
      }
      break;
    case 'bcast':
      for (const b of ladder(8, 1 << 20)) {
        const x = new Float64Array(b / 8).fill(comm.rank + 1);
        results.push(await measure(comm, name, b, () => comm.bcast(x, 0)));
      }
      break;
    case 'barrier':
      results.push(await measure(comm, name, 0, () => comm.barrier()));
      break;
    case 'allgather':
      for (const b of ladder(8, 32 << 10)) {
        const x = new Float64Array(b / 8).fill(comm.rank + 1);
        results.push(await measure(comm, name, b, () => comm.allgather(x)));
      }
      break;
    case 'alltoall':
      for (const b of ladder(8, 32 << 10)) {
        const xs = Array.from({ length: comm.size }, (_, j) => new Float64Array(b / 8).fill(comm.rank * 1000 + j));
        results.push(await measure(comm, name, b, () => comm.alltoall(xs)));
      }
      break;
    default:
      throw new Error(`collectives bench: unknown op '${name}' (allreduce, allreduce-into, bcast, barrier, allgather, alltoall)`);
  }
}

const result: Result = { ranks: comm.size, transport: comm.size > 1 ? comm.transportTo(comm.rank === 0 ? 1 : 0) : 'self', results };
await finalize();

if (comm.rank === 0) {
  if (json) console.log(JSON.stringify(result));
  else {
    console.log(`# ivcom collectives, ${result.ranks} ranks, transport ${result.transport}; mean µs per operation (avg / min / max over ranks)`);
    console.log(['op', 'size(B)', 'iters', 'avg(us)', 'min(us)', 'max(us)'].map((h, i) => (i === 0 ? h.padEnd(15) : h.padStart(12))).join(''));
    for (const p of results) {
      console.log(
        [p.op.padEnd(15), String(p.bytes).padStart(12), String(p.iters).padStart(12), ...[p.avg, p.min, p.max].map((v) => v.toFixed(2).padStart(12))].join(''),
      );
    }
  }
}
