// The habits people bring from Open MPI's mpirun and MPICH's mpiexec, each through a real job:
// accepted and meaning what it means there, or refused with a message that says what to do.

import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { allowedCpus } from '../../launcher/binding.js';
import { fixture, IVRUN, ivrun } from '../helpers/job.js';

const HABITS = fixture('habits.js');

interface Seen {
  rank: number;
  hostCpus: string | null;
  size: number;
  cwd: string;
  A: string | null;
  cpus: string;
  args: string[];
}

async function seen(args: string[], env?: Record<string, string>): Promise<{ ranks: Seen[]; out: string; code: number | null }> {
  const r = await ivrun([...args, 'node', HABITS, '-np', '9'], { env });
  const ranks = r.stdout
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Seen)
    .sort((a, b) => a.rank - b.rank);
  expect(r.leftovers).toEqual([]);
  return { ranks, out: r.stdout + r.stderr, code: r.code };
}

describe('mpirun and mpiexec habits', () => {
  it.each([
    [['-np', '3'], 3],
    [['-n', '2', '--oversubscribe'], 2],
    [['--allow-run-as-root', '-n', '1'], 1],
    [['-H', 'localhost:2'], 2],
    [['-N', '2'], 2],
    [['-npernode', '3'], 3],
    [['--npernode', '2', '-H', 'localhost:5'], 2],
  ])('%j starts the ranks it says (%i), and leaves the program its own arguments', async (args, n) => {
    const { ranks, code } = await seen(args);
    expect(code).toBe(0);
    expect(ranks.map((r) => r.rank)).toEqual([...Array(n).keys()]);
    expect(ranks.every((r) => r.size === n && r.args.join(' ') === '-np 9')).toBe(true);
  });

  it.each([['-genv'], ['-env'], ['--genv']])('%s NAME VALUE sets a variable for the ranks', async (flag) => {
    const { ranks } = await seen([flag, 'A', 'B C', '-n', '2']);
    expect(ranks.map((r) => r.A)).toEqual(['B C', 'B C']);
  });

  it.each([['-l'], ['--prepend-rank'], ['--tag-output']])('%s prefixes every line with its rank', async (flag) => {
    const r = await ivrun(['-n', '2', flag, 'node', HABITS]);
    expect(r.stdout).toMatch(/^\[0\] \{"rank":0/m);
    expect(r.stdout).toMatch(/^\[1\] \{"rank":1/m);
  });

  it.each([['-wdir'], ['--wdir']])('%s DIR runs the ranks there', async (flag) => {
    const dir = os.tmpdir();
    const { ranks } = await seen([flag, dir, '-n', '2']);
    expect(ranks.map((r) => r.cwd)).toEqual([dir, dir]);
  });

  it("--output-filename DIR writes each rank's output to DIR/1/rank.N/stdout (Open MPI's layout)", async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'ivcom-out-'));
    try {
      const r = await ivrun(['-n', '2', '--output-filename', dir, 'node', HABITS]);
      expect(r.code).toBe(0);
      expect(r.stdout).not.toContain('"rank"');
      for (const rank of [0, 1]) {
        expect(JSON.parse(readFileSync(path.join(dir, '1', `rank.${rank}`, 'stdout'), 'utf8')).rank).toBe(rank);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('--bind-to core puts each rank on a CPU of its own; none (the default) leaves them all', async () => {
    const all = allowedCpus();
    const bound = await seen(['--bind-to', 'core', '-n', '2', ...(all.length < 2 ? ['--oversubscribe'] : [])]);
    expect(bound.ranks.map((r) => r.cpus)).toEqual([String(all[0]), String(all[1 % all.length])]);
    // A bound rank's waits still count the host's CPUs (its own affinity shows one: counted by
    // that, 2 ranks on 2 cores looked crowded and slept on every wait).
    expect(bound.ranks.map((r) => r.hostCpus)).toEqual([String(all.length), String(all.length)]);
    const free = await seen(['--bind-to', 'none', '-n', '2']);
    const mine = /^Cpus_allowed_list:\s*(\S+)/m.exec(readFileSync('/proc/self/status', 'utf8'))![1];
    expect(free.ranks.map((r) => r.cpus)).toEqual([mine, mine]);
    expect(free.ranks.map((r) => r.hostCpus)).toEqual([String(all.length), String(all.length)]);
  });

  it('MPIEXEC_TIMEOUT ends a job that runs too long (exit 124), as with mpirun', async () => {
    const r = await ivrun(['-n', '2', 'node', '-e', 'setTimeout(() => {}, 20000)'], { env: { MPIEXEC_TIMEOUT: '1' } });
    expect(r.code).toBe(124);
    expect(r.stderr).toMatch(/timed out after 1 s \(MPIEXEC_TIMEOUT\)/);
  });

  it('refuses what cannot mean anything, saying what to do (status 2)', () => {
    const run = (args: string[], env?: Record<string, string>) =>
      spawnSync(process.execPath, [IVRUN, ...args], { encoding: 'utf8', env: { ...process.env, ...env } });
    const cases: Array<[string[], RegExp, Record<string, string>?]> = [
      [['-genv', 'A'], /-genv needs a name and a value/],
      [['-N', '0', 'node', 'x'], /-N \(ranks per host\) must be a positive integer/],
      [['-N', '1', '-n', '2', 'node', 'x'], /more than -N 1 ranks on each of 1 host/],
      [['--wdir', '/no/such/dir', 'node', 'x'], /--wdir \/no\/such\/dir: no such directory/],
      [['--bind-to', 'core', '-n', String(allowedCpus().length + 1), 'node', 'x'], /--bind-to core: .* give fewer ranks, --oversubscribe .* or --bind-to none/],
      [['--bind-to', 'socket', 'node', 'x'], /bind-to/],
      [['node', 'x'], /MPIEXEC_TIMEOUT="soon" is not a number of seconds; give e\.g\. MPIEXEC_TIMEOUT=600/, { MPIEXEC_TIMEOUT: 'soon' }],
    ];
    for (const [args, msg, env] of cases) {
      const r = run(args, env);
      expect(r.stderr, args.join(' ')).toMatch(msg);
      expect(r.status, args.join(' ')).toBe(2);
    }
    for (const v of ['-V', '--version']) expect(run([v]).stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/);
  });
});
