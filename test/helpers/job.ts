// Runs real jobs through ivrun for the integration tests, and checks that nothing survives them.

import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const IVRUN = path.join(ROOT, 'dist/launcher/ivrun.js');
export const fixture = (name: string) => path.join(ROOT, 'dist/test/fixtures', name);

export interface JobResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
  /** Processes that still carried this job's marker after ivrun exited, and segments still held. */
  leftovers: Array<number | string>;
}

/** Pids of processes whose environment carries the marker. */
export function processesWith(marker: string): number[] {
  const found: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d) || Number(d) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${d}/environ`, 'latin1').includes(marker)) found.push(Number(d));
    } catch {
      // gone already, or not ours to read
    }
  }
  return found;
}

/** Anything on the machine still holding (fd or mapping) a segment of job `jobId`, or a /dev/shm name. */
export function segmentsOf(jobId: string): string[] {
  const needle = `memfd:ivcom-${jobId}-`;
  const found: string[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      for (const fd of readdirSync(`/proc/${d}/fd`)) {
        try {
          if (readlinkSync(`/proc/${d}/fd/${fd}`).includes(needle)) found.push(`pid ${d} fd ${fd}`);
        } catch {
          // closed meanwhile
        }
      }
      if (readFileSync(`/proc/${d}/maps`, 'latin1').includes(needle)) found.push(`pid ${d} mapping`);
    } catch {
      // gone
    }
  }
  for (const f of readdirSync('/dev/shm')) if (f.includes('ivcom')) found.push(`/dev/shm/${f}`);
  return found;
}

/** Pids of processes whose command line contains `needle` (arguments joined by NUL). */
export function ranksRunning(needle: string): number[] {
  const found: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (readFileSync(`/proc/${d}/cmdline`, 'latin1').includes(needle)) found.push(Number(d));
    } catch {
      // gone
    }
  }
  return found;
}

export interface RunOptions {
  env?: Record<string, string>;
  timeoutMs?: number;
  onSpawn?: (pid: number) => void;
  /**
   * Called for every stdout chunk; lets a test react to a rank's output (e.g. send a signal).
   * `pid` is ivrun's; `marker` is in the environment of every process of the job.
   */
  onStdout?: (text: string, pid: number, marker: string) => void;
}

/** Runs `ivrun ...args`, waits for it, then looks for leftover processes of the job. */
export async function ivrun(args: string[], opts: RunOptions = {}): Promise<JobResult> {
  const id = randomBytes(8).toString('hex');
  const marker = `IVCOM_TEST_MARK=${id}`;
  const [k, v] = marker.split('=') as [string, string];
  const t0 = performance.now();
  const child = spawn(process.execPath, [IVRUN, ...args], {
    env: { ...process.env, IVCOM_JOB_ID: id, ...opts.env, [k]: v },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => {
    stdout += d;
    opts.onStdout?.(d, child.pid!, marker);
  });
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  opts.onSpawn?.(child.pid!);
  const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 50_000);
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((r) => child.on('close', (c, s) => r([c, s])));
  clearTimeout(timer);
  const ms = performance.now() - t0;
  // Give the kernel a moment to reap whatever was killed at the very end.
  let procs = processesWith(marker);
  for (let i = 0; i < 20 && procs.length > 0; i++) {
    await new Promise((r) => setTimeout(r, 50));
    procs = processesWith(marker);
  }
  const leftovers: Array<number | string> = [...procs, ...segmentsOf(id)];
  for (const pid of procs) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // raced with its exit
    }
  }
  return { code, signal, stdout, stderr, ms, leftovers };
}

/** Network namespaces alive on the machine: each process's own, and any held by an open fd. */
export function netNamespaces(): Set<string> {
  const found = new Set<string>();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      found.add(readlinkSync(`/proc/${d}/ns/net`));
      for (const fd of readdirSync(`/proc/${d}/fd`)) {
        try {
          const l = readlinkSync(`/proc/${d}/fd/${fd}`);
          if (l.startsWith('net:[')) found.add(l);
        } catch {
          // closed meanwhile
        }
      }
    } catch {
      // gone
    }
  }
  return found;
}

/** Interfaces of this (the root) network namespace: a leaked bridge or veth end would be here. */
export function rootLinks(): string[] {
  return spawnSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' })
    .stdout.split('\n')
    .map((l) => /^\d+:\s+([^:@\s]+)/.exec(l)?.[1])
    .filter((n): n is string => n !== undefined)
    .sort();
}
