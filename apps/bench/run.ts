// `npm run bench`: the fast path against the TCP fallback, in the same run, interleaved
// rounds, medians and ratios (the machine is noisy: only same-run comparisons mean anything).
//   npm run bench                       point-to-point, 5 rounds
//   npm run bench -- --rounds 7 --quick
//   npm run bench -- --suite collectives|idle|syscalls|domains|shared-cores|verify
//   npm run bench -- --peers            (= --suite peers) the same patterns in C against Open MPI
//                                       and in mpi4py, beside ivcom and its tcp (peers-run.ts)

import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { BENCH_DIR, IVRUN, median, option, progressBar } from './common.js';
import { publish, type Figure } from './results.js';
import { osuBlock } from './osu.js';

const HELP = `npm run bench -- [--suite p2p|collectives|peers|idle|syscalls|domains|shared-cores|verify] [options]

  --rounds N        interleaved rounds (medians are reported); default 5 (p2p), 3 (collectives, peers)
  --quick           shorter measurements
  --transports A,B  the ivcom transports to run (default ivcom,tcp)
  --osu             p2p, collectives: print in the OSU micro-benchmarks' format (osu_latency, osu_bw, osu_allreduce, ...)
  --json FILE       every suite: write every figure with its rounds, the machine and versions
  --svg DIR         draw charts of the figures that are per message size (SVG) of the results into DIR
  --peers           the same as --suite peers: Open MPI (C) and mpi4py beside ivcom
  -h, --help        this text; docs/benchmarks.md says what each suite measures
`;
if (process.argv.includes('--help') || process.argv.includes('-h')) {
  process.stdout.write(HELP);
  process.exit(0);
}


const here = BENCH_DIR;
const ivrun = IVRUN;
const args = process.argv.slice(2);
const opt = option;
const rounds = Number(opt('rounds', '5'));
const suite = args.includes('--peers') ? 'peers' : opt('suite', 'p2p');
const quick = args.includes('--quick');
const transports = opt('transports', 'ivcom,tcp').split(',');

function run(script: string, n: number, transport: string, extra: string[], ivrunArgs: string[] = []): unknown | undefined {
  const r = spawnSync(process.execPath, [ivrun, '-n', String(n), '--transport', transport, ...ivrunArgs, 'node', path.join(here, script), '--json', ...extra], {
    encoding: 'utf8',
    timeout: 600_000,
  });
  if (r.status !== 0) {
    process.stderr.write(`bench: ${script} over ${transport} failed (status ${r.status}):\n${r.stderr}\n`);
    return undefined;
  }
  const line = r.stdout.trim().split('\n').filter((l) => l.startsWith('{')).pop();
  return line ? JSON.parse(line) : undefined;
}

if (suite === 'p2p') {
  type R = { transport: string; latency: [number, number][]; bandwidth: [number, number][] };
  const lat = new Map<string, Map<number, number[]>>();
  const bw = new Map<string, Map<number, number[]>>();
  const live = new Set(transports);
  const bar = progressBar('p2p', rounds * transports.length);
  for (let r = 0; r < rounds; r++) {
    for (const t of transports) {
      bar.step(`round ${r + 1}/${rounds}: ${t}`);
      if (!live.has(t)) continue;
      const res = run('pingpong.js', 2, t, quick ? ['--quick'] : []) as R | undefined;
      if (!res) {
        live.delete(t);
        continue;
      }
      for (const [s, us] of res.latency) {
        if (!lat.has(t)) lat.set(t, new Map());
        (lat.get(t)!.get(s) ?? lat.get(t)!.set(s, []).get(s)!).push(us);
      }
      for (const [s, mbs] of res.bandwidth) {
        if (!bw.has(t)) bw.set(t, new Map());
        (bw.get(t)!.get(s) ?? bw.get(t)!.set(s, []).get(s)!).push(mbs);
      }
    }
  }
  bar.stop();
  const ts = transports.filter((t) => lat.has(t));
  if (args.includes('--osu')) {
    for (const t of ts) {
      const note = `ivcom, transport ${t}, 2 ranks, medians of ${rounds} rounds`;
      console.log([...osuBlock('latency', note, [...lat.get(t)!].map(([s, xs]) => [s, median(xs)])), ''].join('\n'));
      console.log([...osuBlock('bandwidth', note, [...(bw.get(t) ?? [])].filter(([s]) => s > 0).map(([s, xs]) => [s, median(xs)])), ''].join('\n'));
    }
  } else {
  console.log(`# ivcom point-to-point, 2 ranks, ${rounds} interleaved rounds, medians; transports: ${ts.join(' vs ')}`);
  const sizes = [...(lat.get(ts[0]!)?.keys() ?? [])];
  const ratio = ts.length === 2;
  console.log(
    ['size(B)', ...ts.map((t) => `${t} lat(us)`), ...(ratio ? ['lat ratio'] : []), ...ts.map((t) => `${t} bw(MB/s)`), ...(ratio ? ['bw ratio'] : [])]
      .map((h) => h.padStart(15))
      .join(''),
  );
  for (const s of sizes) {
    const l = ts.map((t) => median(lat.get(t)!.get(s)!));
    const b = ts.map((t) => (s > 0 ? median(bw.get(t)!.get(s)!) : NaN));
    const cells = [
      String(s),
      ...l.map((x) => x.toFixed(2)),
      ...(ratio ? [`${(l[1]! / l[0]!).toFixed(1)}x`] : []),
      ...b.map((x) => (Number.isNaN(x) ? '-' : x.toFixed(1))),
      ...(ratio ? [s > 0 ? `${(b[0]! / b[1]!).toFixed(1)}x` : '-'] : []),
    ];
    console.log(cells.map((c) => c.padStart(15)).join(''));
  }
  if (ratio) console.log(`# lat ratio = ${ts[1]} / ${ts[0]} one-way latency; bw ratio = ${ts[0]} / ${ts[1]} bandwidth`);
  }
  const figures: Figure[] = [];
  for (const t of ts) {
    for (const [s, xs] of lat.get(t)!) figures.push({ series: t, op: 'latency', ranks: 2, bytes: s, unit: 'us', rounds: xs, median: median(xs) });
    for (const [s, xs] of bw.get(t) ?? []) if (s > 0) figures.push({ series: t, op: 'bandwidth', ranks: 2, bytes: s, unit: 'MB/s', rounds: xs, median: median(xs) });
  }
  await publish('p2p', rounds, figures);
} else if (suite === 'collectives') {
  const script = path.join(here, 'collectives.js');
  if (!existsSync(script)) {
    console.error('bench: the collectives suite is not built');
    process.exit(1);
  }
  await import('./collectives-run.js' as string);
} else if (suite === 'peers') {
  await import('./peers-run.js' as string);
} else if (suite === 'domains') {
  await import('./domains-run.js' as string);
} else if (suite === 'shared-cores') {
  await import('./shared-cores.js' as string);
} else if (suite === 'idle') {
  // A rank blocked in recv() must sleep (about 0 % CPU) and wake fast when the message comes.
  const figures: Figure[] = [];
  for (const t of transports) {
    const res = run('idle.js', 2, t, ['--wait=5', `--reps=${Math.max(1, Math.min(rounds, 5))}`]) as
      | { transport: string; reps: { cpuPercent: number; wakeUs: number }[] }
      | undefined;
    if (!res) continue;
    const cpu = median(res.reps.map((x) => x.cpuPercent));
    const wake = median(res.reps.map((x) => x.wakeUs));
    const cpus = res.reps.map((x) => x.cpuPercent);
    const wakes = res.reps.map((x) => x.wakeUs);
    figures.push({ series: t, op: 'idle-cpu', ranks: 2, bytes: 0, unit: '%', rounds: cpus, median: cpu });
    figures.push({ series: t, op: 'wake-up', ranks: 2, bytes: 0, unit: 'us', rounds: wakes, median: wake });
    console.log(`${res.transport.padEnd(6)} waiting 5 s in recv: CPU ${cpu.toFixed(2)} % of a core (median of ${res.reps.length}); wake-up ${wake.toFixed(1)} us after the send`);
  }
  // The floor in the same run: the kmod doorbell alone between two Node processes.
  const floor = spawnSync(process.execPath, [path.join(here, 'wake-floor.js'), '--wait=1000', '--reps=5', '--json'], { encoding: 'utf8', timeout: 120_000 });
  if (floor.status === 0) {
    const { wakeUs } = JSON.parse(floor.stdout) as { wakeUs: number[] };
    console.log(`floor  bare doorbell between two Node processes idle 1 s (no runtime): wake-up ${median(wakeUs).toFixed(1)} us (median of ${wakeUs.length})`);
    figures.push({ series: 'bare doorbell', op: 'wake-up', ranks: 2, bytes: 0, unit: 'us', rounds: wakeUs, median: median(wakeUs) });
  } else process.stderr.write(`bench: wake-floor failed (status ${floor.status}):\n${floor.stderr}\n`);
  await publish('idle', rounds, figures);
} else if (suite === 'syscalls') {
  // Syscalls per message in a streaming run: strace -f -c over the whole job, with N messages
  // and with none; the difference over N. Needs strace (apt-get install strace).
  const N = Number(opt('messages', '100000'));
  const size = opt('size', '8');
  // Calls by name: the futex calls are V8's (its GC and compiler threads, and the main thread
  // waking them), the rest is the message path and the event loop; shown apart.
  const count = (t: string, n: number): Map<string, number> | undefined => {
    const out = `/tmp/ivcom-strace-${process.pid}-${t}-${n}`;
    // seccomp-bpf stops the processes only on the calls counted (the ones a message path can
    // make), so tracing does not slow the spin loops into sleeping more than they would.
    const hot = 'read,write,writev,readv,epoll_pwait,epoll_wait,futex,sendmsg,recvmsg,sendto,recvfrom,ioctl,poll,ppoll,select,sched_yield';
    const r = spawnSync('strace', ['-f', '-c', '--seccomp-bpf', '-e', `trace=${hot}`, '-o', out, process.execPath, ivrun, '-n', '2', '--transport', t, 'node', path.join(here, 'stream.js'), String(n), size], {
      encoding: 'utf8',
      timeout: 600_000,
    });
    if (r.error || r.status !== 0) {
      process.stderr.write(`bench: strace run over ${t} failed: ${r.error?.message ?? r.stderr}\n`);
      return undefined;
    }
    const text = readFileSync(out, 'utf8');
    rmSync(out, { force: true });
    const calls = new Map<string, number>();
    // Rows: % time, seconds, usecs/call, calls, [errors,] syscall.
    for (const m of text.matchAll(/^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?([a-z_0-9]+)\s*$/gm)) {
      if (m[2] !== 'total') calls.set(m[2]!, Number(m[1]));
    }
    return calls.size > 0 ? calls : undefined;
  };
  const per = new Map<string, { all: number; futex: number }>();
  for (const t of transports) {
    const base = count(t, 0);
    const full = count(t, N);
    if (base === undefined || full === undefined) continue;
    const diff = (name?: string) => {
      let d = 0;
      for (const [k, v] of full) if (name === undefined || k === name) d += v - (base.get(k) ?? 0);
      for (const [k, v] of base) if (!full.has(k) && (name === undefined || k === name)) d -= v;
      return d;
    };
    const all = diff();
    const futex = diff('futex');
    per.set(t, { all: all / N, futex: futex / N });
    const rows = [...new Set([...full.keys(), ...base.keys()])].map((k) => `${k} ${diff(k)}`).join(', ');
    console.log(`${t.padEnd(6)} ${N} messages of ${size} B: ${all} syscalls beyond start-up = ${(all / N).toFixed(4)} per message; without futex ${((all - futex) / N).toFixed(4)} (${rows})`);
  }
  const [a, b] = [per.get('ivcom'), per.get('tcp')];
  if (a !== undefined && b !== undefined && b.all > 0) {
    console.log(`ivcom / tcp syscalls per message: ${((a.all / b.all) * 100).toFixed(2)} %; without futex: ${(((a.all - a.futex) / (b.all - b.futex)) * 100).toFixed(2)} %`);
  }
  const figures: Figure[] = [];
  for (const [t, p] of per) {
    figures.push({ series: t, op: 'syscalls', ranks: 2, bytes: Number(size), unit: 'calls/msg', rounds: [p.all], median: p.all });
    figures.push({ series: t, op: 'syscalls-without-futex', ranks: 2, bytes: Number(size), unit: 'calls/msg', rounds: [p.all - p.futex], median: p.all - p.futex });
  }
  await publish('syscalls', 1, figures);
} else if (suite === 'verify') {
  // What --verify costs: 8 B latency, 64 KiB and 4 MiB bandwidth with and without it, per
  // transport, interleaved in one run.
  type R = { latency: [number, number][]; bandwidth: [number, number][] };
  const LAT = 8;
  const BW = [64 * 1024, 4 * 1024 * 1024];
  const modes = [
    { name: 'off', flags: [] as string[] },
    { name: 'on', flags: ['--verify'] },
  ];
  const got = new Map<string, { lat: number[]; bw: number[][] }>();
  const bar = progressBar('verify', rounds * transports.length * modes.length);
  for (let r = 0; r < rounds; r++) {
    for (const t of transports) {
      for (const m of modes) {
        bar.step(`round ${r + 1}/${rounds}: ${t}, verify ${m.name}`);
        const extra = [`--sizes=${[LAT, ...BW].join(',')}`, ...(quick ? ['--quick'] : [])];
        const res = run('pingpong.js', 2, t, extra, m.flags) as R | undefined;
        if (!res) continue;
        const key = `${t} verify ${m.name}`;
        const g = got.get(key) ?? got.set(key, { lat: [], bw: BW.map(() => []) }).get(key)!;
        g.lat.push(res.latency.find(([s]) => s === LAT)![1]);
        BW.forEach((s, i) => g.bw[i]!.push(res.bandwidth.find(([x]) => x === s)![1]));
      }
    }
  }
  bar.stop();
  console.log(`# --verify cost, 2 ranks, ${rounds} interleaved rounds, medians`);
  console.log(['transport', 'verify', '8 B lat(us)', '64 KiB bw(MB/s)', '4 MiB bw(MB/s)'].map((h) => h.padStart(16)).join(''));
  const figures: Figure[] = [];
  for (const t of transports) {
    const off = got.get(`${t} verify off`);
    for (const m of modes) {
      const g = got.get(`${t} verify ${m.name}`);
      if (g === undefined) continue;
      const lat = median(g.lat);
      const bws = g.bw.map(median);
      // Relative to verify off in the same run: + slower latency, - lower bandwidth.
      const rel = (x: number, base: number | undefined) => (m.name === 'off' || base === undefined ? '' : ` (${x >= base ? '+' : ''}${(((x - base) / base) * 100).toFixed(0)}%)`);
      const cells = [
        t,
        m.name,
        lat.toFixed(2) + rel(lat, off && median(off.lat)),
        ...bws.map((b, i) => b.toFixed(0) + rel(b, off && median(off.bw[i]!))),
      ];
      console.log(cells.map((c) => c.padStart(16)).join(''));
      const series = `${t} verify ${m.name}`;
      figures.push({ series, op: 'latency', ranks: 2, bytes: LAT, unit: 'us', rounds: g.lat, median: lat });
      BW.forEach((s, i) => figures.push({ series, op: 'bandwidth', ranks: 2, bytes: s, unit: 'MB/s', rounds: g.bw[i]!, median: bws[i]! }));
    }
  }
  await publish('verify', rounds, figures);
} else {
  console.error(`bench: unknown suite '${suite}' (p2p, collectives, peers, domains, shared-cores, idle, syscalls or verify)`);
  process.exit(2);
}
