// `npm run bench -- --peers` (or `--suite peers`): ivcom beside the C MPI library and mpi4py,
// the same patterns in the same interleaved rounds. Imported by run.ts; reads its own options:
//   --rounds N             rounds (default 3); each runs every (program, transport/peer) once,
//                          in an order rotated from round to round
//   --quick                shorter per-point warm-up and timing (the 1.5 s V8 warm-up stays)
//   --transports ivcom,tcp the ivcom transports to run
//   --no-openmpi, --no-mpi4py   leave a peer out
//   --samples              also print every round's value
//   --json FILE, --svg DIR the figures as data (every round), and charts of them
// Programs (each prints one JSON line; all three measure exactly alike, see natural.ts):
//   ivcom        natural.js under ivrun, once per transport
//   Open MPI C   peers/osu.c, compiled now with `mpicc -O2` into a temporary directory (never in
//                npm test or npm install), run with mpirun; skipped with a note without mpicc
//   mpi4py       peers/mpi4py_bench.py with Debian's /usr/bin/python3 (where python3-mpi4py
//                installs) under the same mpirun; skipped with a note when not importable
// Patterns: 8 B ping-pong with a fresh recv() (the C and mpi4py sides receive into a buffer);
// a small dict ping-pong (mpi4py: pickle); windowed bandwidth at 64 KiB and 4 MiB with serial
// receives, and with the window's receives posted first (osu_bw); allreduce of 8 B and 1 MiB
// with a fresh result (C: into a reused buffer, as osu_allreduce); 8 B allreduce over 4 ranks
// on however many cores there are (Open MPI with --oversubscribe), ivcom also with
// `--ranks-as threads` (column "ivcom threads"); the allreduces also with `--host-slots off`
// (column "ivcom messages": the default meets in the host group, docs/collectives.md).

import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BENCH_DIR, IVRUN, median, option, progressBar } from './common.js';
import { publish, type Figure } from './results.js';

const here = BENCH_DIR;
const ivrun = IVRUN;
const natural = path.join(here, 'natural.js');
/** The C and Python sources: beside this file in the source tree (dist/apps/bench -> apps/bench). */
const peersDir = [path.resolve(here, '../../../apps/bench/peers'), path.join(here, 'peers')].find((d) => existsSync(path.join(d, 'osu.c'))) ?? path.join(here, 'peers');
/** Debian's python3, where python3-mpi4py installs (IVCOM_BENCH_PYTHON overrides). */
const PYTHON = process.env.IVCOM_BENCH_PYTHON ?? '/usr/bin/python3';

const args = process.argv.slice(2);
const opt = option;
const rounds = Math.max(1, Number(opt('rounds', '3')));
const quick = args.includes('--quick');
const transports = opt('transports', 'ivcom,tcp').split(',');
const showSamples = args.includes('--samples');
const timing = [
  '--warmup-ms', '1500',
  '--point-warmup-ms', quick ? '400' : '1500',
  '--point-warmup-iters', quick ? '5000' : '20000',
  '--budget-ms', quick ? '150' : '500',
];

interface Point {
  pattern: string;
  bytes: number;
  iters: number;
  value: number;
  unit: 'us' | 'MB/s';
}
interface Result {
  impl: string;
  transport?: string;
  ranks: number;
  results: Point[];
}

const notes: string[] = [];
const lastLine = (out: string): string | undefined =>
  out
    .trim()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .pop();

// ---- the peers: find, compile, probe ------------------------------------------------------

const tmp = mkdtempSync(path.join(os.tmpdir(), 'ivcom-peers-'));
process.on('exit', () => rmSync(tmp, { recursive: true, force: true }));

const have = (cmd: string, a: string[], env?: NodeJS.ProcessEnv): SpawnSyncReturns<string> => spawnSync(cmd, a, { encoding: 'utf8', timeout: 60_000, env });
const wantC = !args.includes('--no-openmpi');
const wantPy = !args.includes('--no-mpi4py');

function pythonEnv(base: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const env = { ...base };
  delete env.OPENBLAS_CORETYPE;
  delete env.OPENBLAS_L2_SIZE;
  return env;
}

// mpirun: both peers run under it.
const mpirunVersion = have('mpirun', ['--version']);
const isOpenMpi = mpirunVersion.status === 0 && /Open MPI|OpenRTE/.test(mpirunVersion.stdout ?? '');
const ompiVersion = isOpenMpi ? (/(\d+\.\d+\.\d+)/.exec(mpirunVersion.stdout)?.[1] ?? '?') : undefined;
if (!isOpenMpi) {
  const why = mpirunVersion.error !== undefined ? 'mpirun not found' : `mpirun is not Open MPI's (${(mpirunVersion.stdout ?? '').split('\n')[0]})`;
  if (wantC) notes.push(`Open MPI C: ${have('mpicc', ['--showme:version']).error !== undefined ? 'mpicc not found' : why}: apt-get install openmpi-bin libopenmpi-dev`);
  if (wantPy) notes.push(`mpi4py: ${why} (mpi4py runs under Open MPI's mpirun): apt-get install openmpi-bin python3-mpi4py python3-numpy`);
}

// Open MPI C: compiled now, into the temporary directory.
let osuBinary: string | undefined;
if (wantC && isOpenMpi) {
  const mpicc = have('mpicc', ['--showme:version']);
  if (mpicc.error !== undefined) notes.push('Open MPI C: mpicc not found: apt-get install openmpi-bin libopenmpi-dev');
  else {
    const out = path.join(tmp, 'osu');
    const cc = spawnSync('mpicc', ['-O2', '-o', out, path.join(peersDir, 'osu.c')], { encoding: 'utf8', timeout: 120_000 });
    if (cc.status !== 0) notes.push(`Open MPI C: mpicc -O2 peers/osu.c failed: ${(cc.stderr || cc.error?.message || '').trim()}`);
    else osuBinary = out;
  }
}

// mpi4py: Debian's python, where python3-mpi4py installs (not the pyenv one first on PATH).
let usePython = false;
let pyVersions = '';
if (wantPy && isOpenMpi) {
  const r = have(PYTHON, ['-c', 'import mpi4py, numpy, sys; print(mpi4py.__version__, numpy.__version__, sys.version.split()[0])'], pythonEnv(process.env));
  if (r.status === 0) {
    usePython = true;
    const [m, n, py] = r.stdout.trim().split(' ');
    pyVersions = `mpi4py ${m}, numpy ${n}, Python ${py} (${PYTHON})`;
  } else notes.push(`mpi4py: not importable by ${PYTHON}: apt-get install python3-mpi4py python3-numpy`);
}

/** mpirun's fixed options; the env gets the single-copy fallback when the probe needs it. */
const mpirunBase = [...(process.getuid?.() === 0 ? ['--allow-run-as-root'] : []), '--oversubscribe', '--mca', 'btl', 'self,vader'];
const mpiEnv: NodeJS.ProcessEnv = { ...process.env };
let mechanism = '';
if (osuBinary !== undefined || usePython) {
  // Probe the shared-memory path with a 4 MiB transfer (above the eager limit, so the single-copy
  // mechanism carries it). CMA (process_vm_readv) fails in some sandboxes; then use none.
  const cmd = osuBinary !== undefined ? [osuBinary] : [PYTHON, path.join(peersDir, 'mpi4py_bench.py')];
  const probe = (): SpawnSyncReturns<string> =>
    spawnSync('mpirun', [...mpirunBase, '--mca', 'pml_base_verbose', '10', '-n', '2', ...cmd, '--warmup-ms', '0', '--iters', '3', 'bw-serial:4194304'], {
      encoding: 'utf8',
      timeout: 120_000,
      env: pythonEnv(mpiEnv),
    });
  const failed = (r: SpawnSyncReturns<string>): boolean => r.status !== 0 || /process_vm_readv|errno = 1\b/.test(r.stderr);
  const tail = (r: SpawnSyncReturns<string>): string => (r.stderr || r.error?.message || '').trim().split('\n').slice(-3).join(' | ');
  const info = have('ompi_info', ['--param', 'btl', 'vader', '--level', '9']);
  const dflt = /btl_vader_single_copy_mechanism" \(current value: "(\w+)"/.exec(info.stdout ?? '')?.[1] ?? 'default';
  let p = probe();
  if (failed(p)) {
    const why = tail(p);
    mpiEnv.OMPI_MCA_btl_vader_single_copy_mechanism = 'none';
    p = probe();
    if (failed(p)) {
      notes.push(`Open MPI C and mpi4py: a 2-rank run fails even without single copy: ${tail(p)}`);
      osuBinary = undefined;
      usePython = false;
    } else mechanism = `single copy none (OMPI_MCA_btl_vader_single_copy_mechanism=none: the default, ${dflt}, failed here: ${why})`;
  } else mechanism = `single copy ${dflt} (a 4 MiB probe transfer passed with it)`;
  const pml = /selected (\w+) best priority/.exec(p.stdout + p.stderr)?.[1] ?? '?';
  mechanism = `pml ${pml}, btl vader (shared memory) + self, ${mechanism}`;
}

// ---- the programs ----------------------------------------------------------------------

const P2P = ['latency:8', 'dict', 'bw-serial:65536', 'bw-serial:4194304', 'bw-osu:65536', 'bw-osu:4194304', 'allreduce:8', 'allreduce:1048576'];
const WIDE = ['allreduce:8'];
const RANKS = [2, 4];

interface Program {
  column: string;
  /** The rank counts it runs at (default: all of RANKS). */
  ranks?: number[];
  run(n: number, points: string[]): Result | undefined;
}

function parse(what: string, r: SpawnSyncReturns<string>): Result | undefined {
  if (r.status !== 0) {
    process.stderr.write(`bench: ${what} failed (status ${r.status}${r.error ? `, ${r.error.message}` : ''}):\n${r.stderr.trim().split('\n').slice(-15).join('\n')}\n`);
    return undefined;
  }
  const line = lastLine(r.stdout);
  if (line === undefined) process.stderr.write(`bench: ${what} printed no result\n`);
  return line ? (JSON.parse(line) as Result) : undefined;
}

const programs: Program[] = [];
const seenTransport = new Map<string, string>();
for (const t of transports) {
  programs.push({
    column: t === 'ivcom' ? 'ivcom' : `ivcom ${t}`,
    run: (n, points) => {
      const r = parse(
        `natural.js, ${n} ranks over ${t}`,
        spawnSync(process.execPath, [ivrun, '-n', String(n), '--transport', t, '--timeout', '400', 'node', natural, '--json', ...timing, ...points], {
          encoding: 'utf8',
          timeout: 450_000,
        }),
      );
      if (r?.transport !== undefined) seenTransport.set(t, r.transport);
      return r;
    },
  });
}
if (transports.includes('ivcom')) {
  // The allreduces once more by messages (--host-slots off): in the default column the world's
  // small collectives of a one-host job meet in the host group (docs/collectives.md).
  programs.push({
    column: 'ivcom messages',
    run: (n, points) =>
      parse(
        `natural.js, ${n} ranks over ivcom, --host-slots off`,
        spawnSync(
          process.execPath,
          [ivrun, '-n', String(n), '--host-slots', 'off', '--transport', 'ivcom', '--timeout', '400', 'node', natural, '--json', ...timing, ...points.filter((p) => p.startsWith('allreduce'))],
          { encoding: 'utf8', timeout: 450_000 },
        ),
      ),
  });
  // The crowded case once more with a host's ranks as threads of one process (opt-in; the
  // default column above is a process per rank).
  programs.push({
    column: 'ivcom threads',
    ranks: [4],
    run: (n, points) =>
      parse(
        `natural.js, ${n} ranks as threads over ivcom`,
        spawnSync(process.execPath, [ivrun, '-n', String(n), '--ranks-as', 'threads', '--transport', 'ivcom', '--timeout', '400', 'node', natural, '--json', ...timing, ...points], {
          encoding: 'utf8',
          timeout: 450_000,
        }),
      ),
  });
}
if (osuBinary !== undefined) {
  const bin = osuBinary;
  programs.push({
    column: 'Open MPI C',
    // The C side has no dict pattern (that is a pickled object in mpi4py, a value in ivcom).
    run: (n, points) =>
      parse(
        `osu (Open MPI), ${n} ranks`,
        spawnSync('mpirun', [...mpirunBase, '-n', String(n), bin, ...timing, ...points.filter((p) => p !== 'dict')], { encoding: 'utf8', timeout: 450_000, env: mpiEnv }),
      ),
  });
}
if (usePython) {
  programs.push({
    column: 'mpi4py',
    run: (n, points) =>
      parse(
        `mpi4py_bench.py, ${n} ranks`,
        spawnSync('mpirun', [...mpirunBase, '-n', String(n), PYTHON, path.join(peersDir, 'mpi4py_bench.py'), ...timing, ...points], {
          encoding: 'utf8',
          timeout: 450_000,
          env: pythonEnv(mpiEnv),
        }),
      ),
  });
}

// ---- the rounds ------------------------------------------------------------------------

/** Share of all CPUs busy over the next second, from /proc/stat (the bench itself idle). */
function busyShare(): number | undefined {
  const read = (): [number, number] | undefined => {
    try {
      const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
      return [f.reduce((a, b) => a + b, 0), f[3]! + (f[4] ?? 0)];
    } catch {
      return undefined;
    }
  };
  const a = read();
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1000);
  const b = read();
  return a && b && b[0] > a[0] ? 1 - (b[1] - a[1]) / (b[0] - a[0]) : undefined;
}
const busyBefore = busyShare();

// samples.get(`${ranks} ${pattern} ${bytes}`).get(column) = one value per round
const samples = new Map<string, Map<string, number[]>>();
const units = new Map<string, 'us' | 'MB/s'>();
const dead = new Set<string>();
const t0 = Date.now();
const runs = RANKS.reduce((sum, n) => sum + programs.filter((p) => p.ranks === undefined || p.ranks.includes(n)).length, 0);
const bar = progressBar('peers', rounds * runs);
for (let round = 0; round < rounds; round++) {
  for (const n of RANKS) {
    const points = n === 2 ? P2P : WIDE;
    for (let k = 0; k < programs.length; k++) {
      const prog = programs[(k + round) % programs.length]!;
      if (prog.ranks !== undefined && !prog.ranks.includes(n)) continue;
      bar.step(`round ${round + 1}/${rounds}: ${prog.column}, ${n} ranks`);
      if (dead.has(`${n}/${prog.column}`)) continue;
      const res = prog.run(n, points);
      if (res === undefined) {
        dead.add(`${n}/${prog.column}`);
        continue;
      }
      for (const p of res.results) {
        const key = `${n} ${p.pattern} ${p.bytes}`;
        units.set(key, p.unit);
        const byCol = samples.get(key) ?? samples.set(key, new Map()).get(key)!;
        (byCol.get(prog.column) ?? byCol.set(prog.column, []).get(prog.column)!).push(p.value);
      }
    }
  }
}
bar.stop();
const wall = (Date.now() - t0) / 1000;
const busyAfter = busyShare();

// ---- the tables ------------------------------------------------------------------------

const columns = programs.map((p) => p.column);
const ivcomCol = columns[0]!;
const peers = columns.slice(1);
const fmt = (v: number | undefined): string => (v === undefined || Number.isNaN(v) ? '-' : v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2));
/** How many times faster ivcom is than `other` (> 1: ivcom faster). */
const speed = (unit: 'us' | 'MB/s', iv: number | undefined, other: number | undefined): string =>
  iv === undefined || other === undefined ? '-' : `${(unit === 'us' ? other / iv : iv / other).toFixed(2)}x`;

const tables: { title: string; rows: [number, string, number, string][] }[] = [
  { title: '1. ping-pong latency, one-way µs (ivcom: await recv(), a fresh result each time; C, mpi4py: Recv into a buffer)', rows: [[2, 'latency', 8, '8 B']] },
  { title: '2. small dict ping-pong {op, seq, tag, data: [1.5, 2.5]}, one-way µs (ivcom: send(obj) / await recv(); mpi4py: pickle send/recv)', rows: [[2, 'dict', 0, 'dict']] },
  {
    title: '3. windowed bandwidth, MB/s: 16 sends + 1-byte ack; serial = one receive at a time (recvInto / MPI_Recv), posted = all 16 posted first (osu_bw)',
    rows: [
      [2, 'bw-serial', 65536, 'serial 64 KiB'],
      [2, 'bw-serial', 4194304, 'serial 4 MiB'],
      [2, 'bw-posted', 65536, 'posted 64 KiB'],
      [2, 'bw-posted', 4194304, 'posted 4 MiB'],
    ],
  },
  {
    title: '4. allreduce float64 SUM, 2 ranks, µs per call (ivcom, mpi4py: fresh result; C: reused buffer, osu_allreduce)',
    rows: [
      [2, 'allreduce', 8, '8 B'],
      [2, 'allreduce', 1048576, '1 MiB'],
    ],
  },
  { title: `5. allreduce 8 B, 4 ranks on ${os.cpus().length} cores, µs per call (Open MPI --oversubscribe)`, rows: [[4, 'allreduce', 8, '8 B']] },
];

const describeT = (t: string): string => `${t}${seenTransport.has(t) && seenTransport.get(t) !== t ? ` (reported ${seenTransport.get(t)})` : ''}`;
console.log(`# ivcom beside Open MPI (C) and mpi4py: ${rounds} interleaved rounds, medians; ${os.cpus().length} cores, Node ${process.version}; ${wall.toFixed(0)} s`);
console.log(`# ivcom transports: ${transports.map(describeT).join(', ')}`);
if (osuBinary !== undefined || usePython) console.log(`# Open MPI ${ompiVersion}: ${mechanism}${usePython ? `; ${pyVersions}` : ''}`);
console.log(`# timing: ${timing.join(' ')} (the same for all three programs)`);
const pct = (x: number | undefined): string => (x === undefined ? '?' : `${(x * 100).toFixed(0)} %`);
console.log(`# other load: ${pct(busyBefore)} of the CPUs busy in the second before the rounds, ${pct(busyAfter)} in the second after (0 % on a quiet machine)`);
for (const n of notes) console.log(`# skipped: ${n}`);

const head = ['', ...columns, ...peers.map((c) => `vs ${c}`)];
const widths = head.map((h, i) => Math.max(i === 0 ? 14 : 11, h.length + 2));
const line = (cells: string[]): string => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('');
for (const t of tables) {
  console.log(`\n## ${t.title}`);
  console.log(line(head));
  for (const [n, pattern, bytes, label] of t.rows) {
    const key = `${n} ${pattern} ${bytes}`;
    const byCol = samples.get(key);
    const unit = units.get(key) ?? 'us';
    const med = columns.map((c) => (byCol?.has(c) ? median(byCol.get(c)!) : undefined));
    console.log(line([label, ...med.map(fmt), ...peers.map((_, i) => speed(unit, med[0], med[i + 1]))]));
    if (showSamples && byCol !== undefined) {
      for (const c of columns) if (byCol.has(c)) console.log(`#   ${c}: ${byCol.get(c)!.map(fmt).join(', ')} ${unit}`);
    }
  }
}
{
  // The other modes against the peers too (the "vs" columns compare the default mode).
  const rows: Array<[string, string, string]> = [
    ['4 allreduce 8', 'table 5', 'ivcom threads'],
    ['4 allreduce 8', 'table 5', 'ivcom messages'],
    ['2 allreduce 8', 'table 4, 8 B', 'ivcom messages'],
    ['2 allreduce 1048576', 'table 4, 1 MiB', 'ivcom messages'],
  ];
  for (const [key, where, mode] of rows) {
    const mine = samples.get(key)?.get(mode);
    for (const peer of ['Open MPI C', 'mpi4py']) {
      const other = samples.get(key)?.get(peer);
      if (mine !== undefined && other !== undefined) console.log(`# ${where}, ${mode} vs ${peer}: ${speed('us', median(mine), median(other))}`);
    }
  }
}
console.log(`\n# "vs X" = how many times faster ${ivcomCol} is than X (> 1: ${ivcomCol} faster; 0.10x: it takes 10x X's time)`);

// --json FILE, --svg DIR: the same figures as data (every round kept) and charts.
const figures: Figure[] = [];
for (const [key, byCol] of samples) {
  const [n, pattern, bytes] = key.split(' ') as [string, string, string];
  for (const [column, xs] of byCol) {
    figures.push({ series: column, op: pattern, ranks: Number(n), bytes: Number(bytes), unit: units.get(key) ?? 'us', rounds: xs, median: median(xs) });
  }
}
await publish('peers', rounds, figures);
