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
  /** What of the job outlived ivrun (jobLeftovers), after a short grace period. */
  leftovers: string[];
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

/** Listening or connected AF_UNIX sockets of job `jobId` (the agents' abstract names carry it). */
export function unixSocketsOf(jobId: string): string[] {
  const needle = `ivcom-${jobId}`;
  return readFileSync('/proc/net/unix', 'latin1')
    .split('\n')
    .filter((l) => l.includes(needle))
    .map((l) => `unix socket ${l.trim().split(/\s+/).pop()}`);
}

/**
 * Everything of a job that must not outlive it, looked for the strong way: every process whose
 * environment carries the job's marker (ranks, agents, wrappers), every memfd segment of the job
 * held as an fd or mapped by ANY process of the machine, ivcom names in /dev/shm, and the job's
 * sockets. Empty: nothing leaked.
 */
export function jobLeftovers(jobId: string, marker: string): string[] {
  const procs = processesWith(marker).map((pid) => {
    let cmd = '';
    try {
      cmd = readFileSync(`/proc/${pid}/cmdline`, 'latin1').replaceAll('\0', ' ').trim();
    } catch {
      // exited meanwhile
    }
    return `pid ${pid} (${cmd})`;
  });
  return [...procs, ...segmentsOf(jobId), ...unixSocketsOf(jobId)];
}

/** Leftovers of a job once they had `graceMs` to go (the kernel reaps and unmaps asynchronously). */
export async function settledLeftovers(jobId: string, marker: string, graceMs = 1000): Promise<string[]> {
  const t0 = Date.now();
  let left = jobLeftovers(jobId, marker);
  while (left.length > 0 && Date.now() - t0 < graceMs) {
    await new Promise((r) => setTimeout(r, 50));
    left = jobLeftovers(jobId, marker);
  }
  return left;
}

/** The world rank a process of a job runs as (its IVCOM_RANK), or undefined. */
export function rankOf(pid: number): number | undefined {
  try {
    const m = /(?:^|\0)IVCOM_RANK=(\d+)\0/.exec(readFileSync(`/proc/${pid}/environ`, 'latin1'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
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

/**
 * Sends `signal` to `pid` if it still runs. A process that has already ended is not an error
 * here (ESRCH would otherwise surface as an uncaught exception outside any test): the test's own
 * assertions on the job's status say what went wrong.
 */
export function signalIfAlive(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ESRCH') throw e;
  }
}

/** signalIfAlive() after `ms`. */
export function signalLater(pid: number, signal: NodeJS.Signals, ms: number): void {
  setTimeout(() => signalIfAlive(pid, signal), ms);
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
  /** The job's id (IVCOM_JOB_ID; default random): its segments and sockets are named after it. */
  jobId?: string;
  /** How long the job's leftovers get to go after ivrun exited (default 1 s). */
  graceMs?: number;
}

/** Runs `ivrun ...args`, waits for it, then looks for leftover processes of the job. */
export async function ivrun(args: string[], opts: RunOptions = {}): Promise<JobResult> {
  const id = opts.jobId ?? randomBytes(8).toString('hex');
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
  const leftovers = await settledLeftovers(id, marker, opts.graceMs);
  for (const pid of processesWith(marker)) signalIfAlive(pid, 'SIGKILL');
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
