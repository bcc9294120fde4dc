// Micro-benchmark of the ivcom ring itself (no runtime, no kmod): two worker_threads-separated
// ends of an IvcomChannel over one SharedArrayBuffer, both busy-polling.
//
//   node dist/apps/bench/ring-micro.js [latency] [bandwidth] [inproc] [copy] [process] [--quick]
//
// latency    ping-pong, one-way µs = round trip / 2 (8 B, 256 B, 4 KiB, 64 KiB)
// bandwidth  4 MiB messages streamed in windows of 16 then a 1-byte ack, for several ring and
//            chunk sizes (GB/s)
// inproc     both ends in ONE thread (send, then poll): the CPU cost of the code path per
//            message and per byte, free of cross-core effects (stable on a loaded machine)
// process    two PROCESSES over a real memfd segment and eventfd doorbells (needs the built
//            kmod addon): ping-pong busy-polling vs sleeping on the doorbell (one wake-up per
//            message), and 4 MiB streaming
// copy       the copy primitives behind the ring: Uint8Array.prototype.set vs Buffer.copy into
//            the SharedArrayBuffer, and small-payload allocation (fresh ArrayBuffer vs slab view)
//
// The machine is shared and noisy: rounds are interleaved and medians printed; compare numbers of
// one run with each other, not across runs.

import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { IvcomChannel } from '../../transport/ivcom/channel.js';
import { segmentBytes } from '../../transport/ivcom/layout.js';
import type { IncomingMessage, OutgoingMessage } from '../../transport/transport.js';
import { helpIfAsked } from './common.js';

helpIfAsked(import.meta.url);

interface Job {
  kind: 'pong' | 'sink';
  sab: SharedArrayBuffer;
  ringBytes: number;
  chunkBytes: number;
  size: number;
  iters: number;
  window: number;
  /** Receiver reuses one destination through the allocate hook (isolates the ring from malloc). */
  reuse?: boolean;
}

const noBell = { ring() {} };

function channel(job: Job, low: boolean, onMsg: (m: IncomingMessage) => void): IvcomChannel {
  let keep: Uint8Array | undefined;
  return new IvcomChannel({
    allocate: job.reuse
      ? (h) => (keep?.byteLength === h.byteLength ? keep : (keep = new Uint8Array(h.byteLength)))
      : undefined,
    sab: job.sab,
    ringBytes: job.ringBytes,
    chunkBytes: job.chunkBytes,
    low,
    rank: low ? 0 : 1,
    peer: low ? 1 : 0,
    bell: noBell,
    deliver: onMsg,
    fail: (e) => {
      throw e;
    },
  });
}

function message(size: number): OutgoingMessage {
  const payload = new Uint8Array(size);
  for (let i = 0; i < size; i++) payload[i] = i & 0xff;
  return { ctx: 0, source: 0, tag: 0, codec: 0, parts: [payload], byteLength: size };
}

// ------------------------------------------------------------------------------ worker side --
function workerMain(job: Job): void {
  let got = 0;
  const ch = channel(job, false, () => got++);
  if (job.kind === 'pong') {
    const m = message(job.size);
    for (let i = 0; i < job.iters; i++) {
      while (got === i) ch.poll();
      ch.send(m);
      while (ch.pendingSends > 0) ch.poll();
    }
  } else {
    const ack = message(1);
    for (let i = 1; i <= job.iters; i++) {
      while (got < i * job.window) ch.poll();
      ch.send(ack);
    }
  }
  parentPort!.postMessage('done');
}

// -------------------------------------------------------------------------------- main side --
async function runJob(job: Job, drive: (ch: IvcomChannel, got: () => number) => void): Promise<number> {
  const worker = new Worker(new URL(import.meta.url), { workerData: job });
  const done = new Promise<void>((resolve, reject) => {
    worker.once('message', () => resolve());
    worker.once('error', reject);
  });
  let got = 0;
  const ch = channel(job, true, () => got++);
  await new Promise<void>((r) => worker.once('online', () => r()));
  const t0 = process.hrtime.bigint();
  drive(ch, () => got);
  const ns = Number(process.hrtime.bigint() - t0);
  await done;
  await worker.terminate();
  return ns;
}

async function latency(size: number, iters: number, ringBytes = 1 << 20): Promise<number> {
  const job: Job = { kind: 'pong', sab: new SharedArrayBuffer(segmentBytes(ringBytes)), ringBytes, chunkBytes: 64 * 1024, size, iters, window: 0 };
  const m = message(size);
  // Every job starts a fresh worker (a cold isolate): time only after the JIT has settled.
  const warm = Math.floor(iters / 5);
  let t1 = 0n;
  await runJob(job, (ch, got) => {
    for (let i = 0; i < iters; i++) {
      if (i === warm) t1 = process.hrtime.bigint();
      ch.send(m);
      while (ch.pendingSends > 0) ch.poll();
      while (got() === i) ch.poll();
    }
  });
  // runJob's own timer includes the warm-up; time from the warm mark instead.
  return Number(process.hrtime.bigint() - t1) / (iters - warm) / 2 / 1000;
}

async function bandwidth(ringBytes: number, chunkBytes: number, size: number, windows: number, reuse: boolean, window = 16): Promise<number> {
  const job: Job = { kind: 'sink', sab: new SharedArrayBuffer(segmentBytes(ringBytes)), ringBytes, chunkBytes, size, iters: windows, window, reuse };
  const m = message(size);
  const warm = 2; // untimed windows: the worker's isolate is cold
  job.iters = windows + warm;
  let t1 = 0n;
  await runJob(job, (ch, got) => {
    for (let w = 1; w <= windows + warm; w++) {
      if (w === warm + 1) t1 = process.hrtime.bigint();
      for (let i = 0; i < window; i++) ch.send(m);
      while (got() < w) ch.poll();
    }
  });
  return (size * window * windows) / Number(process.hrtime.bigint() - t1); // bytes per ns = GB/s
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1]!;
}

function timeIt(n: number, f: () => void): number {
  for (let i = 0; i < Math.min(n, 1000); i++) f();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) f();
  return Number(process.hrtime.bigint() - t0) / n;
}

/** ns per message for send + poll (deliver) with both ends in this thread. */
function inprocSmall(size: number, n: number, reuse = false): number {
  const ringBytes = 1 << 20;
  const job = { sab: new SharedArrayBuffer(segmentBytes(ringBytes)), ringBytes, chunkBytes: 64 * 1024, reuse } as Job;
  let got = 0;
  const a = channel(job, true, () => {});
  const b = channel(job, false, () => got++);
  const m = message(size);
  const batch = size > 16384 ? 4 : 32;
  return timeIt(Math.floor(n / batch), () => {
    for (let i = 0; i < batch; i++) a.send(m);
    b.poll();
  }) / batch;
}

/** GB/s streaming `size`-byte messages with both ends in this thread (2 copies on one core). */
function inprocStream(ringBytes: number, chunkBytes: number, size: number, count: number, reuse: boolean): number {
  const job = { sab: new SharedArrayBuffer(segmentBytes(ringBytes)), ringBytes, chunkBytes, reuse } as Job;
  let got = 0;
  const a = channel(job, true, () => {});
  const b = channel(job, false, () => got++);
  const m = message(size);
  a.send(m);
  while (got < 1) b.poll(), a.poll();
  got = 0;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < count; i++) {
    a.send(m);
    while (got <= i) b.poll(), a.poll();
  }
  return (size * count) / Number(process.hrtime.bigint() - t0);
}

function copyBench(rounds: number): void {
  const sab = new SharedArrayBuffer(2 << 20);
  const ring = new Uint8Array(sab);
  const ringBuf = Buffer.from(sab);
  const src = new Uint8Array(1 << 20).fill(7);
  const srcBuf = Buffer.from(src.buffer);
  console.log('\ncopy into a SharedArrayBuffer (ns per copy; GB/s)');
  for (const size of [64, 4096, 65536, 1 << 20]) {
    const n = Math.max(200, Math.floor(2e8 / (size + 200)));
    const s = src.subarray(0, size);
    const a: number[] = [];
    const b: number[] = [];
    for (let r = 0; r < rounds; r++) {
      a.push(timeIt(n, () => ring.set(s, 128)));
      b.push(timeIt(n, () => srcBuf.copy(ringBuf, 128, 0, size)));
    }
    console.log(
      `  ${String(size).padStart(8)} B  Uint8Array.set ${median(a).toFixed(0).padStart(7)} ns (${(size / median(a)).toFixed(1)} GB/s)` +
        `   Buffer.copy ${median(b).toFixed(0).padStart(7)} ns (${(size / median(b)).toFixed(1)} GB/s)`,
    );
  }
  console.log('small payload destination (ns per message: allocate + copy out of the ring)');
  for (const size of [8, 256, 1024, 4096]) {
    const view = ring.subarray(128, 128 + size);
    let slab = new ArrayBuffer(65536);
    let off = 0;
    const fresh: number[] = [];
    const slabbed: number[] = [];
    for (let r = 0; r < rounds; r++) {
      fresh.push(timeIt(200_000, () => new Uint8Array(size).set(view)));
      slabbed.push(
        timeIt(200_000, () => {
          if (off + size > 65536) {
            slab = new ArrayBuffer(65536);
            off = 0;
          }
          const d = new Uint8Array(slab, off, size);
          off = (off + size + 7) & ~7;
          d.set(view);
        }),
      );
    }
    console.log(`  ${String(size).padStart(8)} B  new Uint8Array ${median(fresh).toFixed(0).padStart(5)} ns   slab view ${median(slabbed).toFixed(0).padStart(5)} ns`);
  }
}

// ------------------------------------------------------------------- two processes (kmod) --
interface KmodBench {
  segmentCreate(name: string, bytes: number): number;
  segmentMap(fd: number, bytes: number): SharedArrayBuffer;
  eventfdCreate(): number;
  doorbellRing(fd: number): void;
  doorbellDrain(fd: number): number;
  closeFd(fd: number): void;
  FdWatcher: new (fd: number, cb: () => void) => { start(): void; stop(): void; unref(): void; close(): void };
}

async function loadKmod(): Promise<KmodBench | undefined> {
  try {
    const path = '../../kmod/index.js';
    return (await import(path)) as KmodBench;
  } catch {
    return undefined;
  }
}

const PROC_RING = 1 << 20;
const PROC_TESTS: [string, number, number][] = [
  // [mode, size, iterations]
  ['spin', 8, 100_000],
  ['spin', 65536, 5_000],
  ['sleep', 8, 3_000],
  ['stream', 4 << 20, 48],
  ['stream-fresh', 4 << 20, 48],
];

/** One side of the process benchmark; fds 3 (segment), 4 (my bell), 5 (peer bell) in the child. */
async function procSide(k: KmodBench, low: boolean, segFd: number, myBell: number, peerBell: number, report?: (s: string) => void): Promise<void> {
  const sab = k.segmentMap(segFd, segmentBytes(PROC_RING));
  let got = 0;
  let wake: (() => void) | undefined;
  let keep: Uint8Array | undefined;
  const ch = new IvcomChannel({
    sab,
    ringBytes: PROC_RING,
    low,
    rank: low ? 0 : 1,
    peer: low ? 1 : 0,
    bell: { ring: () => k.doorbellRing(peerBell) },
    deliver: () => {
      got++;
      wake?.();
    },
    fail: (e) => {
      throw e;
    },
    allocate: (h) =>
      reuseDest ? (keep?.byteLength === h.byteLength ? keep : (keep = new Uint8Array(h.byteLength))) : undefined,
  });
  let reuseDest = true;
  const watcher = new k.FdWatcher(myBell, () => {
    k.doorbellDrain(myBell);
    ch.idle();
  });
  watcher.start();
  let base = 0; // messages received before the current test
  const waitSleeping = (n: number) =>
    new Promise<void>((resolve) => {
      if (got - base >= n) return resolve();
      wake = () => {
        if (got - base >= n) {
          wake = undefined;
          resolve();
        }
      };
      ch.idle();
    });
  for (const [mode, size, iters] of PROC_TESTS) {
    const m = message(size);
    const warm = Math.floor(iters / 5);
    reuseDest = mode !== 'stream-fresh';
    let t1 = 0n;
    for (let i = 0; i < iters; i++) {
      if (i === warm) t1 = process.hrtime.bigint();
      if (mode.startsWith('stream')) {
        if (low) {
          ch.send(m);
          while (ch.pendingSends > 0) ch.poll();
          if ((i & 15) === 15) while (got - base < (i + 1) >> 4) ch.poll();
        } else {
          while (got - base <= i) ch.poll();
          if ((i & 15) === 15) ch.send(message(1));
        }
        continue;
      }
      if (low) {
        ch.send(m);
        while (ch.pendingSends > 0) ch.poll();
      }
      if (mode === 'spin') while (got - base <= i) ch.poll();
      else await waitSleeping(i + 1);
      if (!low) {
        ch.send(m);
        while (ch.pendingSends > 0) ch.poll();
      }
    }
    if (low && report) {
      const ns = Number(process.hrtime.bigint() - t1);
      if (mode.startsWith('stream')) {
        report(`  4 MiB streaming, busy-poll, ${reuseDest ? 'reused dest' : 'fresh dest '}     ${((size * (iters - warm)) / ns).toFixed(2)} GB/s`);
      }
      else report(`  ${mode === 'spin' ? 'busy-poll ' : 'doorbell  '} ${String(size).padStart(6)} B one-way          ${(ns / (iters - warm) / 2 / 1000).toFixed(2)} µs`);
    }
    // Between tests the parent sends one "go" message (everything before it is accounted for).
    if (low) {
      base = got;
      ch.send(message(1));
      while (ch.pendingSends > 0) ch.poll();
    } else {
      const target = base + iters + 1;
      while (got < target) ch.poll();
      base = target;
    }
  }
  watcher.stop();
  watcher.close();
}

async function processBench(): Promise<void> {
  const k = await loadKmod();
  if (k === undefined) {
    console.log('\nprocess benchmark skipped: the kmod addon is not built');
    return;
  }
  const seg = k.segmentCreate('ivcom-bench', segmentBytes(PROC_RING));
  const bellParent = k.eventfdCreate();
  const bellChild = k.eventfdCreate();
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), '--child'], {
    stdio: ['inherit', 'inherit', 'inherit', seg, bellChild, bellParent],
  });
  const exited = new Promise<void>((resolve, reject) => {
    child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`child exited with ${code}`))));
  });
  console.log('\ntwo processes, memfd segment + eventfd doorbells (1 MiB ring)');
  await procSide(k, true, seg, bellParent, bellChild, (line) => console.log(line));
  await exited;
  for (const fd of [seg, bellParent, bellChild]) k.closeFd(fd);
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const quick = args.includes('--quick');
  const all = !args.some((a) => ['latency', 'bandwidth', 'inproc', 'copy', 'process'].includes(a));
  const rounds = quick ? 3 : 5;
  console.log(`ivcom ring micro-benchmark: node ${process.version}, ${rounds} interleaved rounds, medians`);

  if (all || args.includes('latency')) {
    const sizes = [8, 256, 4096, 65536];
    const res = new Map<number, number[]>(sizes.map((s) => [s, []]));
    for (let r = 0; r < rounds; r++) {
      for (const s of sizes) res.get(s)!.push(await latency(s, s >= 65536 ? (quick ? 5000 : 10000) : quick ? 30000 : 100000));
    }
    console.log('\nping-pong between two threads, busy-poll (one-way µs)');
    for (const s of sizes) console.log(`  ${String(s).padStart(8)} B  ${median(res.get(s)!).toFixed(2)} µs   (rounds: ${res.get(s)!.map((x) => x.toFixed(2)).join(' ')})`);
  }

  if (all || args.includes('bandwidth')) {
    // [ring, chunk, receiver reuses its destination]
    const configs: [number, number, boolean][] = [
      [64 * 1024, 16 * 1024, true],
      [256 * 1024, 16 * 1024, true],
      [256 * 1024, 64 * 1024, true],
      [1 << 20, 16 * 1024, true],
      [1 << 20, 64 * 1024, true],
      [1 << 20, 256 * 1024, true],
      [4 << 20, 64 * 1024, true],
      [4 << 20, 256 * 1024, true],
      [4 << 20, 1 << 20, true],
      [1 << 20, 64 * 1024, false],
    ];
    const res = configs.map(() => [] as number[]);
    const size = 4 << 20;
    for (let r = 0; r < rounds; r++) {
      for (let c = 0; c < configs.length; c++) {
        const [ring, chunk, reuse] = configs[c]!;
        res[c]!.push(await bandwidth(ring, chunk, size, quick ? 4 : 8, reuse));
      }
    }
    console.log('\nstreaming 4 MiB messages between two threads, windows of 16 + ack (GB/s)');
    configs.forEach(([ring, chunk, reuse], c) =>
      console.log(
        `  ring ${String(ring / 1024).padStart(5)} KiB  chunk ${String(chunk / 1024).padStart(4)} KiB  ` +
          `${reuse ? 'reused dest' : 'fresh dest '}  ${median(res[c]!).toFixed(2)} GB/s   (rounds: ${res[c]!.map((x) => x.toFixed(2)).join(' ')})`,
      ),
    );
  }

  if (all || args.includes('inproc')) {
    console.log('\nin one thread: send + poll cost per message (ns) and streaming (GB/s, both copies on one core)');
    for (const [size, reuse] of [[8, false], [256, false], [4096, false], [65536, false], [65536, true]] as const) {
      const xs: number[] = [];
      for (let r = 0; r < rounds; r++) xs.push(inprocSmall(size, size > 16384 ? (quick ? 4000 : 20000) : quick ? 200_000 : 1_000_000, reuse));
      console.log(
        `  ${String(size).padStart(8)} B  ${reuse ? 'reused dest' : 'fresh dest '}  ${median(xs).toFixed(0)} ns/message  (${(1000 / median(xs)).toFixed(2)} M msg/s)`,
      );
    }
    const configs: [number, number, boolean][] = [
      [64 * 1024, 16 * 1024, true],
      [256 * 1024, 64 * 1024, true],
      [1 << 20, 16 * 1024, true],
      [1 << 20, 64 * 1024, true],
      [1 << 20, 256 * 1024, true],
      [4 << 20, 1 << 20, true],
      [1 << 20, 64 * 1024, false],
    ];
    const res = configs.map(() => [] as number[]);
    for (let r = 0; r < rounds; r++) {
      configs.forEach(([ring, chunk, reuse], c) => res[c]!.push(inprocStream(ring, chunk, 4 << 20, quick ? 16 : 48, reuse)));
    }
    configs.forEach(([ring, chunk, reuse], c) =>
      console.log(
        `  4 MiB, ring ${String(ring / 1024).padStart(5)} KiB, chunk ${String(chunk / 1024).padStart(5)} KiB  ${reuse ? 'reused dest' : 'fresh dest '}  ${median(res[c]!).toFixed(2)} GB/s`,
      ),
    );
  }

  if (all || args.includes('copy')) copyBench(rounds);
  if (all || args.includes('process')) await processBench();
}

if (isMainThread && process.argv.includes('--child')) {
  loadKmod()
    .then((k) => procSide(k!, false, 3, 4, 5))
    .catch((e) => {
      console.error(e);
      process.exitCode = 1;
    });
} else if (isMainThread) {
  main().catch((e) => {
    console.error(e);
    process.exitCode = 1;
  });
} else {
  workerMain(workerData as Job);
}
