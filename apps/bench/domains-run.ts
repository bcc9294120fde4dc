// `npm run bench -- --suite domains`: what VMs and hosts cost, in interleaved rounds, medians.
//   start-up: ivrun's wall time and the time until every rank has joined (init + one barrier), for
//     -n 8 plain, -n 8 --vms 4 --isolation netns, and -n 8 over two hosts when --hosts is given;
//   VM to VM: one-way latency and bandwidth between two VMs (netns, one rank each), over the ivcom
//     channel and over TCP through the bridge, in the same rounds.
// Options (imported by run.ts, reads its own):
//   --rounds N             rounds (default 5)
//   --hosts h1,h2          two ssh hosts for the two-host start-up (4 ranks each)
//   --ssh-args '...'       passed to ivrun (e.g. '-F ./ssh_config')
//   --quick                shorter latency runs

import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { BENCH_DIR, IVRUN, median, option, progressBar } from './common.js';
import { publish, type Figure } from './results.js';

const here = BENCH_DIR;
const ivrun = IVRUN;
const args = process.argv.slice(2);
const opt = option;
const rounds = Number(opt('rounds', '5'));
const hosts = opt('hosts', '').split(',').filter((h) => h !== '');
const sshArgs = opt('ssh-args', '');
const quick = args.includes('--quick');
/** Sizes shown for the VM-to-VM table: small messages and one large. */
const SHOWN_SIZES = [8, 1024, 65536, 1 << 20];

function job(ivrunArgs: string[], script: string, extra: string[]): { ms: number; out: string } | undefined {
  const t0 = performance.timeOrigin + performance.now();
  const r = spawnSync(process.execPath, [ivrun, ...ivrunArgs, 'node', path.join(here, script), ...extra], { encoding: 'utf8', timeout: 600_000 });
  const ms = performance.timeOrigin + performance.now() - t0;
  if (r.status !== 0) {
    process.stderr.write(`bench: ivrun ${ivrunArgs.join(' ')} ${script} failed (status ${r.status}):\n${r.stderr}\n`);
    return undefined;
  }
  return { ms, out: r.stdout };
}

const starts: Array<{ name: string; args: string[] }> = [
  { name: '-n 8', args: ['-n', '8'] },
  { name: '-n 8 --vms 4 --isolation netns', args: ['-n', '8', '--vms', '4', '--isolation', 'netns'] },
];
if (hosts.length >= 2) {
  const ssh = sshArgs === '' ? [] : [`--ssh-args=${sshArgs}`];
  starts.push({ name: `-H ${hosts[0]}:4,${hosts[1]}:4`, args: ['-H', `${hosts[0]}:4,${hosts[1]}:4`, ...ssh] });
}
const vmPairs = [
  { name: 'ivcom', args: ['-n', '2', '--vms', '2', '--isolation', 'netns'] },
  { name: 'tcp', args: ['-n', '2', '--vms', '2', '--isolation', 'netns', '--transport', 'tcp'] },
];

const startWall = new Map<string, number[]>();
const startReady = new Map<string, number[]>();
const lat = new Map<string, Map<number, number[]>>();
const bw = new Map<string, Map<number, number[]>>();
const push = <K>(m: Map<K, number[]>, k: K, v: number) => (m.get(k) ?? m.set(k, []).get(k)!).push(v);

const bar = progressBar('domains', rounds);
for (let r = 0; r < rounds; r++) {
  bar.step(`round ${r + 1}/${rounds}`);
  for (const s of starts) {
    const t0 = performance.timeOrigin + performance.now();
    const res = job(s.args, 'startup.js', []);
    if (res === undefined) continue;
    const line = res.out.split('\n').find((l) => l.startsWith('{'));
    push(startWall, s.name, res.ms);
    if (line) push(startReady, s.name, (JSON.parse(line) as { readyAt: number }).readyAt - t0);
  }
  for (const p of vmPairs) {
    const res = job(p.args, 'pingpong.js', ['--json', ...(quick ? ['--quick'] : [])]);
    const line = res?.out.trim().split('\n').filter((l) => l.startsWith('{')).pop();
    if (!line) continue;
    const j = JSON.parse(line) as { latency: [number, number][]; bandwidth: [number, number][] };
    for (const [size, us] of j.latency) push(lat.get(p.name) ?? lat.set(p.name, new Map()).get(p.name)!, size, us);
    for (const [size, mbs] of j.bandwidth) push(bw.get(p.name) ?? bw.set(p.name, new Map()).get(p.name)!, size, mbs);
  }
}

bar.stop();
console.log(`# job start-up, ${rounds} interleaved rounds, medians (ms): ivrun's whole run, and until every rank has joined (init + barrier)`);
console.log(['job'.padEnd(36), 'wall'.padStart(10), 'all joined'.padStart(12)].join(''));
for (const s of starts) {
  if (!startWall.has(s.name)) continue;
  console.log([s.name.padEnd(36), median(startWall.get(s.name)!).toFixed(0).padStart(10), (startReady.has(s.name) ? median(startReady.get(s.name)!).toFixed(0) : '-').padStart(12)].join(''));
}
if (lat.has('ivcom') && lat.has('tcp')) {
  console.log(`\n# two VMs (netns, one rank each): the ivcom channel against TCP through the bridge, same rounds, medians`);
  console.log(['size(B)', 'ivcom lat(us)', 'tcp lat(us)', 'tcp/ivcom', 'ivcom MB/s', 'tcp MB/s', 'ivcom/tcp'].map((h) => h.padStart(14)).join(''));
  for (const size of SHOWN_SIZES) {
    const li = lat.get('ivcom')!.get(size);
    const lt = lat.get('tcp')!.get(size);
    if (!li || !lt) continue;
    const bi = median(bw.get('ivcom')!.get(size) ?? [NaN]);
    const bt = median(bw.get('tcp')!.get(size) ?? [NaN]);
    console.log(
      [String(size), median(li).toFixed(2), median(lt).toFixed(2), (median(lt) / median(li)).toFixed(1) + 'x', bi.toFixed(0), bt.toFixed(0), (bi / bt).toFixed(1) + 'x']
        .map((c) => c.padStart(14))
        .join(''),
    );
  }
}

// --json FILE, --svg DIR: VM-to-VM latency and bandwidth per transport (start-up times as 'startup' figures, 0 bytes).
const figures: Figure[] = [];
for (const [name, bySize] of lat) for (const [b, xs] of bySize) figures.push({ series: `${name} between VMs`, op: 'latency', ranks: 2, bytes: b, unit: 'us', rounds: xs, median: median(xs) });
for (const [name, bySize] of bw) for (const [b, xs] of bySize) if (b > 0) figures.push({ series: `${name} between VMs`, op: 'bandwidth', ranks: 2, bytes: b, unit: 'MB/s', rounds: xs, median: median(xs) });
for (const [name, xs] of startReady) figures.push({ series: name, op: 'startup', ranks: 8, bytes: 0, unit: 'us', rounds: xs.map((ms) => ms * 1000), median: median(xs) * 1000 });
await publish('domains', rounds, figures);
