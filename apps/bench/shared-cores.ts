// `npm run bench -- --suite shared-cores`: ivcom against its own TCP fallback while something else
// keeps the same cores busy, the case where spinning hurts (a spinning rank holds the core its
// peer needs). Per round: start the competitor, let it settle, run the natural patterns
// (natural.ts: 8 B ping-pong with a fresh recv(), 64 KiB windows with one recvInto at a time)
// over ivcom and over tcp in alternating order, stop the competitor. Medians and ratios.
//   --competitor job    a second 2-rank ivcom job in a tight ping-pong (default)
//   --competitor hogs   one busy-looping process per core
//   --rounds N          (default 5)

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { BENCH_DIR, IVRUN, median, option, progressBar } from './common.js';
import { publish, type Figure } from './results.js';

const here = BENCH_DIR;
const ivrun = IVRUN;
const args = process.argv.slice(2);
const opt = option;
const rounds = Number(opt('rounds', '5'));
const competitor = opt('competitor', 'job');
if (competitor !== 'job' && competitor !== 'hogs') {
  console.error(`bench: --competitor must be 'job' or 'hogs', got '${competitor}'`);
  process.exit(2);
}
/** Time for the competitor to reach its steady state before measuring. */
const SETTLE_MS = 1500;
/** The competitor outlives the measurements of one round by far; it is stopped after them. */
const COMPETITOR_S = 120;

function startCompetitor(): ChildProcess[] {
  if (competitor === 'hogs') {
    return Array.from({ length: os.availableParallelism() }, () =>
      spawn(process.execPath, ['-e', `const e = Date.now() + ${COMPETITOR_S * 1000}; while (Date.now() < e);`], { stdio: 'ignore' }),
    );
  }
  const natural = path.join(here, 'natural.js');
  const long = ['--budget-ms', String(COMPETITOR_S * 1000), '--warmup-ms', '0', '--point-warmup-ms', '0', '--point-warmup-iters', '1', 'latency:8'];
  return [spawn(process.execPath, [ivrun, '-n', '2', '--timeout', String(COMPETITOR_S + 30), 'node', natural, ...long], { stdio: 'ignore' })];
}

async function stop(ps: ChildProcess[]): Promise<void> {
  await Promise.all(
    ps.map(
      (p) =>
        new Promise<void>((resolve) => {
          if (p.exitCode !== null || p.signalCode !== null) return resolve();
          p.once('exit', () => resolve());
          p.kill('SIGTERM'); // ivrun ends its ranks; a hog just ends
        }),
    ),
  );
}

type Point = { pattern: string; bytes: number; value: number };
function measure(transport: string): Point[] | undefined {
  const r = spawnSync(
    process.execPath,
    [ivrun, '-n', '2', '--transport', transport, '--timeout', '120', 'node', path.join(here, 'natural.js'), '--json', '--quick', '--warmup-ms', '300', 'latency:8', 'bw-serial:65536'],
    { encoding: 'utf8', timeout: 180_000 },
  );
  if (r.status !== 0) {
    process.stderr.write(`bench: natural.js over ${transport} failed (status ${r.status}):\n${r.stderr}\n`);
    return undefined;
  }
  const line = r.stdout.trim().split('\n').filter((l) => l.startsWith('{')).pop();
  return line ? (JSON.parse(line) as { results: Point[] }).results : undefined;
}

const got = new Map<string, Map<string, number[]>>();
const bar = progressBar('shared-cores', rounds);
for (let round = 0; round < rounds; round++) {
  bar.step(`round ${round + 1}/${rounds}`);
  const comp = startCompetitor();
  await new Promise((r) => setTimeout(r, SETTLE_MS));
  const order = round % 2 === 0 ? ['ivcom', 'tcp'] : ['tcp', 'ivcom'];
  for (const t of order) {
    for (const p of measure(t) ?? []) {
      const key = `${p.pattern} ${p.bytes}`;
      if (!got.has(key)) got.set(key, new Map());
      const m = got.get(key)!;
      (m.get(t) ?? m.set(t, []).get(t)!).push(p.value);
    }
  }
  await stop(comp);
}
bar.stop();

const what = competitor === 'job' ? 'a second 2-rank ivcom job in a tight ping-pong' : `${os.availableParallelism()} busy-looping processes`;
console.log(`# shared cores: 2 ranks beside ${what}, on ${os.availableParallelism()} cores; ${rounds} rounds, medians (each round's values in brackets)`);
console.log(['', 'ivcom', 'tcp', 'ivcom vs tcp'].map((h, i) => (i === 0 ? h.padEnd(22) : h.padStart(14))).join(''));
for (const [key, m] of got) {
  const [pattern, bytes] = key.split(' ');
  const iv = m.get('ivcom') ?? [];
  const tc = m.get('tcp') ?? [];
  if (iv.length === 0 || tc.length === 0) continue;
  const lat = pattern === 'latency';
  const a = median(iv);
  const b = median(tc);
  // > 1: ivcom better (lower latency, higher bandwidth).
  const better = lat ? b / a : a / b;
  const unit = lat ? 'us' : 'MB/s';
  const label = `${lat ? 'latency' : 'bw serial'} ${bytes} B (${unit})`;
  console.log(
    [label.padEnd(22), a.toFixed(lat ? 1 : 0).padStart(14), b.toFixed(lat ? 1 : 0).padStart(14), `${better.toFixed(2)}x`.padStart(14)].join('') +
      `   [${iv.map((x) => x.toFixed(lat ? 1 : 0)).join(' ')}] [${tc.map((x) => x.toFixed(lat ? 1 : 0)).join(' ')}]`,
  );
}
console.log('# "ivcom vs tcp" > 1: ivcom is better (lower latency, higher bandwidth)');

// --json FILE, --svg DIR: the same figures as data, series named by the competitor.
const figures: Figure[] = [];
for (const [key, m] of got) {
  const [pattern, bytes] = key.split(' ') as [string, string];
  for (const [t, xs] of m) {
    const lat = pattern === 'latency';
    figures.push({ series: `${t} beside ${competitor}`, op: lat ? 'latency' : 'bandwidth', ranks: 2, bytes: Number(bytes), unit: lat ? 'us' : 'MB/s', rounds: xs, median: median(xs) });
  }
}
await publish('shared-cores', rounds, figures);
