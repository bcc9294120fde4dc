// --bind-to core: each rank of a host runs on one CPU of its own (sched_setaffinity, applied by
// util-linux's taskset before the program starts, so every thread Node makes inherits it).
// Default none: the kernel balances, which on a shared or oversubscribed machine is what works.

import { existsSync, readFileSync } from 'node:fs';

export type BindPolicy = 'none' | 'core';

const TASKSET = '/usr/bin/taskset';

/** The CPUs this process may run on (its affinity mask), from the kernel's own list. */
export function allowedCpus(status: string = readFileSync('/proc/self/status', 'utf8')): number[] {
  const m = /^Cpus_allowed_list:\s*(\S+)/m.exec(status);
  if (m === null) throw new Error('cannot read Cpus_allowed_list from /proc/self/status');
  const cpus: number[] = [];
  for (const part of m[1]!.split(',')) {
    const [a, b] = part.split('-').map(Number) as [number, number | undefined];
    for (let c = a; c <= (b ?? a); c++) cpus.push(c);
  }
  return cpus;
}

/**
 * The CPU of each of `count` ranks of one host, in their order. More ranks than CPUs is refused
 * unless the job is oversubscribed (then they go round the CPUs), as Open MPI refuses to bind
 * more processes than cores.
 */
export function cpuPerRank(cpus: readonly number[], count: number, oversubscribe: boolean, host = 'this host'): number[] {
  if (count > cpus.length && !oversubscribe) {
    throw new RangeError(
      `--bind-to core: ${count} ranks on ${host}, which lets them use ${cpus.length} CPU${cpus.length === 1 ? '' : 's'} (${cpus.join(',')}); give fewer ranks, --oversubscribe (ranks then share CPUs), or --bind-to none`,
    );
  }
  return Array.from({ length: count }, (_, i) => cpus[i % cpus.length]!);
}

/** argv prefix that starts a program bound to `cpu`. */
export function bindPrefix(cpu: number): string[] {
  if (!existsSync(TASKSET)) {
    throw new Error(`--bind-to core needs ${TASKSET} (util-linux) on every host; install it or use --bind-to none`);
  }
  return [TASKSET, '--cpu-list', String(cpu)];
}
