// What every bench runner shares: where ivrun is, its options, and the median it reports.

import { SingleBar } from 'cli-progress';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The compiled bench directory (dist/apps/bench): the scripts the runners start live here. */
export const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url));
export const IVRUN = path.resolve(BENCH_DIR, '../../launcher/ivrun.js');

/** `--name value` from this process's arguments, else `dflt`. */
export function option(name: string, dflt: string): string {
  const args = process.argv;
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1]! : dflt;
}

/** The median (the mean of the middle two for an even count): this machine's figures swing 2-4x. */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/**
 * `--help` (or -h) on a bench script: prints the comment block at the top of its file (each
 * script's usage lives there) and exits. Call it first: before init(), before any work.
 */
export function helpIfAsked(moduleUrl: string): void {
  if (!process.argv.includes('--help') && !process.argv.includes('-h')) return;
  const lines = readFileSync(fileURLToPath(moduleUrl), 'utf8').split('\n');
  const head: string[] = [];
  for (const l of lines) {
    if (!l.startsWith('//')) break;
    head.push(l.replace(/^\/\/ ?/, ''));
  }
  process.stdout.write(head.join('\n') + '\n');
  process.exit(0);
}

/**
 * A progress bar on stderr for a suite's `total` runs (cli-progress), saying what runs now;
 * silent when stderr is not a terminal (CI logs, pipes), where it would only add noise.
 */
export function progressBar(suite: string, total: number): { step(what: string): void; stop(): void } {
  if (!process.stderr.isTTY) return { step: () => {}, stop: () => {} };
  const bar = new SingleBar({ format: `bench ${suite} [{bar}] {value}/{total} {what}`, stream: process.stderr, hideCursor: true, clearOnComplete: true });
  bar.start(total, 0, { what: '' });
  let done = -1;
  return {
    step: (what) => bar.update(++done, { what }),
    stop: () => bar.stop(),
  };
}
