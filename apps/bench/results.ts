// What a bench suite measured, as data: `--json FILE` writes it, `--svg DIR` draws it
// (charts.ts). Every figure keeps its rounds beside its median, and the file says on what
// machine, with which versions and when it was taken.

import { readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { drawCharts } from './charts.js';
import { BENCH_DIR, option } from './common.js';

export interface Figure {
  /** What runs: a transport ('ivcom', 'tcp') or a peer ('Open MPI C', 'mpi4py'). */
  series: string;
  /** The operation: 'latency', 'bandwidth', or a collective's name. */
  op: string;
  ranks: number;
  bytes: number;
  /** µs and MB/s are charted against size; '%' (of a core) and 'calls/msg' are kept as data. */
  unit: 'us' | 'MB/s' | '%' | 'calls/msg';
  rounds: number[];
  median: number;
}

export interface Results {
  suite: string;
  date: string;
  machine: { cpus: number; model: string; memoryGiB: number; kernel: string };
  versions: { node: string; ivcom: string };
  rounds: number;
  figures: Figure[];
}

function ivcomVersion(): string {
  try {
    return (JSON.parse(readFileSync(path.resolve(BENCH_DIR, '../../../package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

export function results(suite: string, rounds: number, figures: Figure[]): Results {
  return {
    suite,
    date: new Date().toISOString(),
    machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model ?? 'unknown', memoryGiB: Math.round(os.totalmem() / 2 ** 30), kernel: os.release() },
    versions: { node: process.version, ivcom: ivcomVersion() },
    rounds,
    figures,
  };
}

export function writeResults(file: string, r: Results): void {
  writeFileSync(file, JSON.stringify(r, null, 2) + '\n');
}

/** --json FILE and --svg DIR: the suite's figures as data, and charts of them. */
export async function publish(suite: string, rounds: number, figures: Figure[]): Promise<void> {
  const jsonFile = option('json', '');
  const svgDir = option('svg', '');
  if (jsonFile === '' && svgDir === '') return;
  const r = results(suite, rounds, figures);
  if (jsonFile !== '') writeResults(jsonFile, r);
  if (svgDir !== '') for (const f of await drawCharts(r, svgDir)) process.stderr.write(`bench: wrote ${f}\n`);
}
