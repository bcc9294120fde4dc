// Whether a host can hold the ranks asked of it, checked by its agent before it spawns any.
// Without this a large -n ran into the kernel's limits halfway through the spawning: EMFILE in
// ivrun (an unhandled error, or a false "addon not built"), EAGAIN from fork, or the OOM killer,
// with ranks already started. The figures are floors measured here (docs/performance.md): a
// refusal means the job surely cannot fit, and names the limit and what to do about it.

import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { isNodeBinary } from './program.js';

/** Fds the agent holds per rank: its stdout and stderr pipes, its control socket, its grant socket. */
export const AGENT_FDS_PER_RANK = 4;
/** Fds of the agent itself beyond its ranks (Node's own, the door, a pipe being set up for the next spawn). */
export const AGENT_FDS_SPARE = 64;
/** Threads of one Node rank: the main thread, libuv's 4 workers, V8's platform workers (Threads: 11 in /proc). */
export const NODE_THREADS_PER_RANK = 11;
/** Memory a Node rank dirties just to run init() and a barrier (Pss_Anon 14.3 MiB in smaps_rollup). */
export const NODE_RANK_BYTES = 14 * 1024 * 1024;
/** What any other program is assumed to need at least: one thread, a little memory. */
const OTHER_THREADS_PER_RANK = 1;
const OTHER_RANK_BYTES = 1024 * 1024;
/** Wrappers that start Node; their ranks are counted as Node ranks, as the node binary's are. */
const NODE_WRAPPERS = new Set(['npx', 'npm', 'tsx', 'ts-node', 'pnpm', 'yarn']);

/** What the kernel allows this process and its children; undefined: no limit, or not known. */
export interface HostLimits {
  /** RLIMIT_NOFILE (soft, hard). */
  openFiles: { soft: number; hard: number } | undefined;
  /** Fds this process holds now. */
  openNow: number;
  /** RLIMIT_NPROC (soft): threads of this user; not enforced for root. */
  processes: number | undefined;
  /** This user's threads now (counted only where RLIMIT_NPROC applies). */
  processesNow: number;
  /** The cgroup's pids.max and pids.current. */
  cgroupPids: { max: number; now: number } | undefined;
  /** /proc/sys/kernel/threads-max and the threads of the whole machine. */
  threads: { max: number; now: number } | undefined;
  /** Bytes that can still be allocated: MemAvailable, or less when the cgroup's limit is nearer. */
  memoryAvailable: number | undefined;
}

export interface RankCost {
  fds: number;
  threads: number;
  bytes: number;
}

/** What each rank of `command` costs its host, by what the program is. */
export function rankCost(command: readonly string[]): RankCost {
  const node = isNodeBinary(command[0]) || NODE_WRAPPERS.has(path.basename(command[0] ?? ''));
  return {
    fds: AGENT_FDS_PER_RANK,
    threads: node ? NODE_THREADS_PER_RANK : OTHER_THREADS_PER_RANK,
    bytes: node ? NODE_RANK_BYTES : OTHER_RANK_BYTES,
  };
}

/**
 * Why `ranks` ranks costing `cost` each cannot run under `limits` (`host` names where), or
 * undefined when they fit. The first limit they would hit is named, with the most ranks that fit.
 */
export function whyNotFit(ranks: number, cost: RankCost, limits: HostLimits, host: string): string | undefined {
  const most = (room: number, each: number) => Math.max(0, Math.floor(room / each));
  const fewer = (fit: number) => `or run at most ${fit} rank${fit === 1 ? '' : 's'} on ${host} (a smaller -n, or more hosts with -H/--hostfile)`;
  const f = limits.openFiles;
  if (f !== undefined) {
    const need = limits.openNow + AGENT_FDS_SPARE + ranks * cost.fds;
    if (need > f.soft) {
      const raise = need <= f.hard ? `raise it (ulimit -n ${need})` : `raise the hard limit (${f.hard}; /etc/security/limits.conf, or LimitNOFILE= for a systemd service) and then ulimit -n ${need}`;
      return `${ranks} ranks need about ${need} open files in ivrun on ${host} (${cost.fds} per rank), over its limit of ${f.soft} (ulimit -n); ${raise}, ${fewer(most(f.soft - limits.openNow - AGENT_FDS_SPARE, cost.fds))}`;
    }
  }
  const threads = ranks * cost.threads;
  if (limits.processes !== undefined && limits.processesNow + threads > limits.processes) {
    return `${ranks} ranks need about ${threads} threads (${cost.threads} per rank) and this user runs ${limits.processesNow} of at most ${limits.processes} (ulimit -u) on ${host}; raise it (ulimit -u ${limits.processesNow + threads}), ${fewer(most(limits.processes - limits.processesNow, cost.threads))}`;
  }
  const pids = limits.cgroupPids;
  if (pids !== undefined && pids.now + threads > pids.max) {
    return `${ranks} ranks need about ${threads} threads (${cost.threads} per rank) and this cgroup runs ${pids.now} of at most ${pids.max} (pids.max) on ${host}; raise pids.max (e.g. TasksMax= for a systemd unit, --pids-limit for a container), ${fewer(most(pids.max - pids.now, cost.threads))}`;
  }
  const t = limits.threads;
  if (t !== undefined && t.now + threads > t.max) {
    return `${ranks} ranks need about ${threads} threads (${cost.threads} per rank) and ${host} runs ${t.now} of at most ${t.max} (/proc/sys/kernel/threads-max); raise kernel.threads-max, ${fewer(most(t.max - t.now, cost.threads))}`;
  }
  const mem = limits.memoryAvailable;
  if (mem !== undefined && ranks * cost.bytes > mem) {
    const mib = (b: number) => Math.ceil(b / 2 ** 20);
    return `${ranks} ranks need at least ${mib(ranks * cost.bytes)} MiB (${mib(cost.bytes)} MiB per rank) and ${host} has ${mib(mem)} MiB available; free memory, ${fewer(most(mem, cost.bytes))}`;
  }
  return undefined;
}

/** The limits of this process on this host, from /proc and the cgroup file system. */
export function hostLimits(): HostLimits {
  const limits = read('/proc/self/limits') ?? '';
  const limit = (name: string) => {
    const m = new RegExp(`^${name}\\s+(\\S+)\\s+(\\S+)`, 'm').exec(limits);
    const n = (s: string | undefined) => (s === undefined || s === 'unlimited' ? Infinity : Number(s));
    return m === null ? undefined : { soft: n(m[1]), hard: n(m[2]) };
  };
  const nofile = limit('Max open files');
  const nproc = limit('Max processes');
  const root = process.getuid?.() === 0; // RLIMIT_NPROC does not bind CAP_SYS_ADMIN/CAP_SYS_RESOURCE
  const processes = !root && nproc !== undefined && Number.isFinite(nproc.soft) ? nproc.soft : undefined;
  const loadavg = /\d+\/(\d+)/.exec(read('/proc/loadavg') ?? '');
  const threadsMax = Number(read('/proc/sys/kernel/threads-max'));
  return {
    openFiles: nofile !== undefined && Number.isFinite(nofile.soft) ? nofile : undefined,
    openNow: count('/proc/self/fd'),
    processes,
    processesNow: processes === undefined ? 0 : threadsOfUser(process.getuid!()),
    cgroupPids: cgroupPair('pids', 'pids.max', 'pids.current', 'pids.max', 'pids.current'),
    threads: loadavg !== null && threadsMax > 0 ? { max: threadsMax, now: Number(loadavg[1]) } : undefined,
    memoryAvailable: memoryAvailable(),
  };
}

function read(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8').trim();
  } catch {
    return undefined;
  }
}

function count(dir: string): number {
  try {
    return readdirSync(dir).length;
  } catch {
    return 0;
  }
}

function threadsOfUser(uid: number): number {
  let n = 0;
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    const status = read(`/proc/${d}/status`);
    if (status === undefined || Number(/^Uid:\s+(\d+)/m.exec(status)?.[1]) !== uid) continue;
    n += Number(/^Threads:\s+(\d+)/m.exec(status)?.[1] ?? 1);
  }
  return n;
}

/** This process's cgroup directory for `controller` (v1), or its unified one (v2). */
function cgroupDir(controller: string): { dir: string; v2: boolean } | undefined {
  for (const line of (read('/proc/self/cgroup') ?? '').split('\n')) {
    const [, controllers, where] = line.split(':');
    if (where === undefined) continue;
    if (controllers === '') return { dir: path.join('/sys/fs/cgroup', where), v2: true };
    if (controllers!.split(',').includes(controller)) return { dir: path.join('/sys/fs/cgroup', controller, where), v2: false };
  }
  return undefined;
}

/** A cgroup's limit and use (`v1max`, `v1now` or `v2max`, `v2now`); undefined when it sets none. */
function cgroupPair(controller: string, v1max: string, v1now: string, v2max: string, v2now: string): { max: number; now: number } | undefined {
  const cg = cgroupDir(controller);
  if (cg === undefined) return undefined;
  const max = Number(read(path.join(cg.dir, cg.v2 ? v2max : v1max)));
  const now = Number(read(path.join(cg.dir, cg.v2 ? v2now : v1now)));
  // "max" (v2) reads as NaN; v1 writes "no limit" as a huge number.
  return Number.isFinite(max) && max < Number.MAX_SAFE_INTEGER / 2 && Number.isFinite(now) ? { max, now } : undefined;
}

function memoryAvailable(): number | undefined {
  const kb = /^MemAvailable:\s+(\d+) kB/m.exec(read('/proc/meminfo') ?? '');
  const machine = kb === null ? undefined : Number(kb[1]) * 1024;
  const cg = cgroupPair('memory', 'memory.limit_in_bytes', 'memory.usage_in_bytes', 'memory.max', 'memory.current');
  const inCgroup = cg === undefined ? undefined : Math.max(0, cg.max - cg.now);
  if (machine === undefined) return inCgroup;
  return inCgroup === undefined ? machine : Math.min(machine, inCgroup);
}
