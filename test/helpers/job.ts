// Runs real jobs through ivrun for the integration tests, and checks that nothing survives them.

import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
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
  /** Processes that still carried this job's marker after ivrun exited. */
  leftovers: number[];
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
  /** Called for every stdout chunk; lets a test react to a rank's output (e.g. send a signal). */
  onStdout?: (text: string, pid: number) => void;
}

/** Runs `ivrun ...args`, waits for it, then looks for leftover processes of the job. */
export async function ivrun(args: string[], opts: RunOptions = {}): Promise<JobResult> {
  const marker = `IVCOM_TEST_MARK=${randomBytes(8).toString('hex')}`;
  const [k, v] = marker.split('=') as [string, string];
  const t0 = performance.now();
  const child = spawn(process.execPath, [IVRUN, ...args], {
    env: { ...process.env, ...opts.env, [k]: v },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => {
    stdout += d;
    opts.onStdout?.(d, child.pid!);
  });
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  opts.onSpawn?.(child.pid!);
  const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 50_000);
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((r) => child.on('close', (c, s) => r([c, s])));
  clearTimeout(timer);
  const ms = performance.now() - t0;
  // Give the kernel a moment to reap whatever was killed at the very end.
  let leftovers = processesWith(marker);
  for (let i = 0; i < 20 && leftovers.length > 0; i++) {
    await new Promise((r) => setTimeout(r, 50));
    leftovers = processesWith(marker);
  }
  for (const pid of leftovers) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // raced with its exit
    }
  }
  return { code, signal, stdout, stderr, ms, leftovers };
}
