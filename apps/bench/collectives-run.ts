// `npm run bench -- --suite collectives`: the collectives benchmark (collectives.ts) for 2, 4 and 8
// ranks, ivcom against tcp in interleaved rounds (every round runs each rank count over each
// transport back to back), then medians over the rounds and the tcp/ivcom ratio per operation
// and size. Imported by run.ts; reads its own options:
//   --rounds N            rounds (default 3)
//   --ranks 2,4,8         rank counts
//   --transports ivcom,tcp
//   --ops allreduce,...   passed to collectives.js
//   --quick               shorter measurements

import { spawnSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import type { Result } from './collectives.js';
import { BENCH_DIR, IVRUN, median, option, progressBar } from './common.js';
import { publish, type Figure } from './results.js';
import { osuBlock } from './osu.js';

const here = BENCH_DIR;
const ivrun = IVRUN;
const script = path.join(here, 'collectives.js');
const args = process.argv.slice(2);
const opt = option;
const rounds = Number(opt('rounds', '3'));
const rankCounts = opt('ranks', '2,4,8').split(',').map(Number);
const transports = opt('transports', 'ivcom,tcp').split(',');
const passOn = [...(args.includes('--quick') ? ['--quick'] : []), ...(args.includes('--ops') ? ['--ops', opt('ops', '')] : [])];

function runOnce(n: number, transport: string): Result | undefined {
  const r = spawnSync(process.execPath, [ivrun, '-n', String(n), '--transport', transport, '--timeout', '900', 'node', script, '--json', ...passOn], {
    encoding: 'utf8',
    timeout: 1_000_000,
  });
  if (r.status !== 0) {
    process.stderr.write(`bench: collectives with ${n} ranks over ${transport} failed (status ${r.status}):\n${r.stderr}\n`);
    return undefined;
  }
  const line = r.stdout.trim().split('\n').filter((l) => l.startsWith('{')).pop();
  return line ? (JSON.parse(line) as Result) : undefined;
}

// samples.get(`${ranks}`).get(`${op} ${bytes}`).get(transport) = µs per round
const samples = new Map<number, Map<string, Map<string, number[]>>>();
const seenTransport = new Map<string, string>(); // requested -> what transportTo reported
const dead = new Set<string>();
const t0 = Date.now();
const bar = progressBar('collectives', rounds * rankCounts.length * transports.length);
for (let round = 0; round < rounds; round++) {
  for (const n of rankCounts) {
    for (const t of transports) {
      bar.step(`round ${round + 1}/${rounds}: ${n} ranks over ${t}`);
      if (dead.has(`${n}/${t}`)) continue;
      const res = runOnce(n, t);
      if (res === undefined) {
        dead.add(`${n}/${t}`);
        continue;
      }
      seenTransport.set(t, res.transport);
      const byKey = samples.get(n) ?? samples.set(n, new Map()).get(n)!;
      for (const p of res.results) {
        const key = `${p.op} ${p.bytes}`;
        const byT = byKey.get(key) ?? byKey.set(key, new Map()).get(key)!;
        (byT.get(t) ?? byT.set(t, []).get(t)!).push(p.avg);
      }
    }
  }
}

bar.stop();
const [ta, tb] = transports;
const ratio = transports.length === 2;
console.log(
  `# ivcom collectives, ${rounds} interleaved rounds, medians of the mean µs per operation (averaged over ranks); ` +
    `${os.cpus().length} cores; transports: ${transports.map((t) => `${t}${seenTransport.has(t) && seenTransport.get(t) !== t ? ` (reported ${seenTransport.get(t)})` : ''}`).join(' vs ')}; ${((Date.now() - t0) / 1000).toFixed(0)} s`,
);
for (const n of rankCounts) {
  const byKey = samples.get(n);
  if (byKey === undefined) {
    console.log(`\n## ${n} ranks: no results`);
    continue;
  }
  console.log(`\n## ${n} ranks`);
  console.log(
    ['op'.padEnd(15), 'size(B)'.padStart(9), ...transports.map((t) => `${t}(us)`.padStart(13)), ...(ratio ? [`${tb}/${ta}`.padStart(11)] : [])].join(''),
  );
  for (const [key, byT] of byKey) {
    const [op, bytes] = key.split(' ') as [string, string];
    const med = transports.map((t) => (byT.has(t) ? median(byT.get(t)!) : NaN));
    const cells = [op.padEnd(15), bytes.padStart(9), ...med.map((v) => (Number.isNaN(v) ? '-' : v.toFixed(2)).padStart(13))];
    if (ratio) cells.push((Number.isNaN(med[0]!) || Number.isNaN(med[1]!) ? '-' : `${(med[1]! / med[0]!).toFixed(2)}x`).padStart(11));
    console.log(cells.join(''));
  }
}
if (ratio) console.log(`\n# ratio = ${tb} / ${ta} time per operation (> 1: ${ta} is faster)`);

if (args.includes('--osu')) {
  for (const [n, byKey] of samples) {
    for (const t of transports) {
      const byOp = new Map<string, Array<[number, number]>>();
      for (const [key, byT] of byKey) {
        const [op, bytes] = key.split(' ') as [string, string];
        const xs = byT.get(t);
        if (xs !== undefined) (byOp.get(op) ?? byOp.set(op, []).get(op)!).push([Number(bytes), median(xs)]);
      }
      for (const [op, rows] of byOp) console.log([...osuBlock(op, `ivcom, transport ${t}, ${n} ranks, medians of ${rounds} rounds`, rows), ''].join('\n'));
    }
  }
}

const figures: Figure[] = [];
for (const [n, byKey] of samples) {
  for (const [key, byT] of byKey) {
    const [op, bytes] = key.split(' ') as [string, string];
    for (const [t, xs] of byT) figures.push({ series: t, op, ranks: n, bytes: Number(bytes), unit: 'us', rounds: xs, median: median(xs) });
  }
}
await publish('collectives', rounds, figures);
