// `npm start`: the IVCOM paper's experiment (Bai et al., JSS 86, 2013) on this machine. Two VMs
// (network namespaces on a bridge, one rank in each) talk over the ivcom channel (shared memory
// granted by ivrun, the dom0) and over TCP through the bridge (the virtual network), in the same
// interleaved rounds: round-trip latency, stream throughput, kernel transitions per message.
// One table, with the paper's figures beside ours; medians of the rounds.
//   npm start [-- --rounds N] [--json FILE] [--quick]
// Without the privilege to make namespaces it says so and runs the same between two processes
// over loopback TCP, labelled as such.

import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const IVRUN = path.resolve(here, '../../launcher/ivrun.js');
const PAIR = path.join(here, 'vm-pair.js');

const args = process.argv.slice(2);
const valueOf = (name: string): string | undefined => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : undefined;
};
if (args.includes('--help') || args.includes('-h')) {
  process.stdout.write(
    'npm start [-- --rounds N] [--json FILE] [--quick]\n\n' +
      "The IVCOM paper's experiment: two VMs (netns on a bridge, one rank each), the ivcom channel\n" +
      'against TCP through the bridge, interleaved rounds, medians. --rounds (default 3), --quick\n' +
      '(shorter measurements), --json FILE writes {rtt, throughput, transitions, rows}.\n',
  );
  process.exit(0);
}
const rounds = Math.max(1, Number(valueOf('rounds') ?? 3));
const jsonFile = valueOf('json');
const budgetMs = args.includes('--quick') ? 100 : 300;

/** The paper's headline figures (IVCOM against the virtual network between co-resident VMs). */
const PAPER = { rttReduction: 0.7, throughputRatio: 3, transitionsReduction: 0.9 };

interface PairResult {
  transport: string;
  rtt: Record<string, number>;
  stream: Record<string, { gbps: number; switchesPerMsg: number }>;
}

const progress = (what: string) => process.stderr.write(`experiment: ${what}\n`);

function pair(transport: 'ivcom' | 'tcp', isolation: 'netns' | 'none'): PairResult | string {
  const vms = isolation === 'netns' ? ['--vms', '2', '--isolation', 'netns'] : [];
  const r = spawnSync(process.execPath, [IVRUN, '-n', '2', ...vms, '--transport', transport, '--timeout', '120', 'node', PAIR, '--budget-ms', String(budgetMs)], {
    encoding: 'utf8',
    timeout: 150_000,
  });
  const line = r.stdout?.split('\n').find((l) => l.startsWith('{'));
  if (r.status !== 0 || line === undefined) return (r.stderr || r.error?.message || `status ${r.status}`).trim();
  return JSON.parse(line) as PairResult;
}

// VMs if this user may make namespaces; else two processes over loopback, said plainly.
let isolation: 'netns' | 'none' = 'netns';
progress('checking that two VMs (network namespaces on a bridge) can be made');
const probe = spawnSync(process.execPath, [IVRUN, '-n', '2', '--vms', '2', '--isolation', 'netns', 'node', '-e', ''], { encoding: 'utf8', timeout: 60_000 });
if (probe.status !== 0) {
  isolation = 'none';
  process.stderr.write(
    `experiment: cannot make VMs here (${probe.stderr.trim().split('\n')[0]}); running the same between two processes over loopback TCP instead\n`,
  );
}
const setting =
  isolation === 'netns'
    ? 'two VMs (network namespaces on a bridge), one rank each: ivcom channel vs TCP through the bridge'
    : 'two processes on this host (no VMs: no privilege for namespaces): ivcom channel vs TCP over loopback';

const samples: Record<'ivcom' | 'tcp', PairResult[]> = { ivcom: [], tcp: [] };
const t0 = performance.now();
for (let r = 0; r < rounds; r++) {
  // Alternate which goes first: the machine drifts within a round.
  for (const t of (r % 2 === 0 ? ['ivcom', 'tcp'] : ['tcp', 'ivcom']) as Array<'ivcom' | 'tcp'>) {
    progress(`round ${r + 1}/${rounds}: ${t} (${((performance.now() - t0) / 1000).toFixed(0)} s)`);
    const res = pair(t, isolation);
    if (typeof res === 'string') {
      process.stderr.write(`experiment: the ${t} run failed:\n${res}\n`);
      process.exit(1);
    }
    samples[t].push(res);
  }
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const med = (t: 'ivcom' | 'tcp', f: (p: PairResult) => number) => median(samples[t].map(f));

interface Row {
  metric: string;
  unit: string;
  ivcom: number;
  tcp: number;
  /** 1 - ivcom/tcp for costs, ivcom/tcp for throughput. */
  ours: number;
  kind: 'reduction' | 'ratio';
  paper: number | null;
}
const rows: Row[] = [];
const cost = (metric: string, unit: string, f: (p: PairResult) => number, paper: number | null) => {
  const i = med('ivcom', f);
  const t = med('tcp', f);
  rows.push({ metric, unit, ivcom: i, tcp: t, ours: 1 - i / t, kind: 'reduction', paper });
};
const gain = (metric: string, unit: string, f: (p: PairResult) => number, paper: number | null) => {
  const i = med('ivcom', f);
  const t = med('tcp', f);
  rows.push({ metric, unit, ivcom: i, tcp: t, ours: i / t, kind: 'ratio', paper });
};
cost('round trip 8 B', 'µs', (p) => p.rtt['8']!, PAPER.rttReduction);
cost('round trip 1 KiB', 'µs', (p) => p.rtt['1024']!, null);
cost('round trip 64 KiB', 'µs', (p) => p.rtt['65536']!, null);
gain('stream 64 KiB messages', 'Gbit/s', (p) => p.stream['65536']!.gbps, PAPER.throughputRatio);
gain('stream 1 MiB messages', 'Gbit/s', (p) => p.stream['1048576']!.gbps, null);
cost('kernel transitions, 64 KiB stream', 'per message', (p) => p.stream['65536']!.switchesPerMsg, PAPER.transitionsReduction);
cost('kernel transitions, 1 MiB stream', 'per message', (p) => p.stream['1048576']!.switchesPerMsg, null);

/** Width of the table's first column. */
const LABEL = 50;
const fmt = (x: number) => (x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x >= 0.01 ? x.toFixed(2) : x.toExponential(1));
// Reductions above 90 % get a decimal: that is where the aims are (−95 %, −99 %), and 98.9 %
// must not print as −99 %.
const show = (r: Row, v: number) => (r.kind === 'reduction' ? `${v >= 0 ? '−' : '+'}${Math.abs(v * 100).toFixed(v > 0.9 && v < 1 ? 1 : 0)} %` : `${v.toFixed(1)}×`);
console.log(`# IVCOM experiment: ${setting}`);
console.log(`# ${rounds} interleaved rounds, medians; transitions = context switches of both ranks (all threads), from /proc/PID/task/*/status`);
console.log(['', 'ivcom', isolation === 'netns' ? 'TCP via bridge' : 'TCP loopback', 'ours', 'paper'].map((h, i) => (i === 0 ? h.padEnd(LABEL) : h.padStart(16))).join(''));
for (const r of rows) {
  const cells = [`${r.metric} (${r.unit})`.padEnd(LABEL), fmt(r.ivcom).padStart(16), fmt(r.tcp).padStart(16), show(r, r.ours).padStart(16), (r.paper === null ? '' : show(r, r.paper)).padStart(16)];
  console.log(cells.join(''));
}

if (jsonFile !== undefined) {
  const at = (metric: string) => rows.find((r) => r.metric === metric)!;
  const rtt = at('round trip 8 B');
  const tput = at('stream 64 KiB messages');
  const tr = at('kernel transitions, 64 KiB stream');
  writeFileSync(
    jsonFile,
    JSON.stringify(
      {
        setting,
        isolation,
        rounds,
        rtt: { ivcom_us: rtt.ivcom, tcp_us: rtt.tcp, reduction: rtt.ours },
        throughput: { ivcom_gbps: tput.ivcom, tcp_gbps: tput.tcp, ratio: tput.ours },
        transitions: { ivcom_per_msg: tr.ivcom, tcp_per_msg: tr.tcp, reduction: tr.ours },
        paper: PAPER,
        rows,
      },
      null,
      2,
    ) + '\n',
  );
  progress(`wrote ${jsonFile}`);
}
progress(`done in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
