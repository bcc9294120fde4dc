// Whether a host can hold a job, and what ivrun says when it cannot: the limit, the figures,
// and what to do.

import { describe, expect, it } from 'vitest';
import { AGENT_FDS_PER_RANK, AGENT_FDS_SPARE, hostLimits, NODE_RANK_BYTES, NODE_THREADS_PER_RANK, rankCost, whyNotFit, type HostLimits } from '../../launcher/limits.js';

const roomy: HostLimits = {
  openFiles: { soft: 1_000_000, hard: 1_000_000 },
  openNow: 20,
  processes: undefined,
  processesNow: 0,
  cgroupPids: undefined,
  threads: { max: 1_000_000, now: 100 },
  memoryAvailable: 64 * 2 ** 30,
};
const node = rankCost(['node', 'app.js']);

describe('rankCost', () => {
  it('counts Node (and its wrappers) as Node, anything else as one thread', () => {
    expect(node).toEqual({ fds: AGENT_FDS_PER_RANK, threads: NODE_THREADS_PER_RANK, bytes: NODE_RANK_BYTES });
    expect(rankCost([process.execPath, 'app.js']).threads).toBe(NODE_THREADS_PER_RANK);
    expect(rankCost(['/usr/local/bin/npx', 'tsx', 'app.ts']).threads).toBe(NODE_THREADS_PER_RANK);
    expect(rankCost(['true']).threads).toBe(1);
  });
});

describe('whyNotFit', () => {
  it('lets a job that fits through', () => {
    expect(whyNotFit(1000, node, roomy, 'h')).toBeUndefined();
  });

  it('names ulimit -n, the fds needed, and the most ranks that fit', () => {
    const limits = { ...roomy, openFiles: { soft: 1024, hard: 2048 } };
    const need = 20 + AGENT_FDS_SPARE + 1000 * AGENT_FDS_PER_RANK;
    const fit = Math.floor((1024 - 20 - AGENT_FDS_SPARE) / AGENT_FDS_PER_RANK);
    const why = whyNotFit(1000, node, limits, 'h');
    expect(why).toBe(
      `1000 ranks need about ${need} open files in ivrun on h (4 per rank), over its limit of 1024 (ulimit -n); raise the hard limit (2048; /etc/security/limits.conf, or LimitNOFILE= for a systemd service) and then ulimit -n ${need}, or run at most ${fit} ranks on h (a smaller -n, or more hosts with -H/--hostfile)`,
    );
    // Within the hard limit: raising the soft one is enough.
    expect(whyNotFit(300, node, limits, 'h')).toMatch(/over its limit of 1024 \(ulimit -n\); raise it \(ulimit -n \d+\), or run at most \d+ ranks/);
    expect(whyNotFit(fit, node, limits, 'h')).toBeUndefined();
    expect(whyNotFit(fit + 1, node, limits, 'h')).toBeDefined();
  });

  it('names ulimit -u, the cgroup pids.max and threads-max by threads per rank', () => {
    expect(whyNotFit(100, node, { ...roomy, processes: 1000, processesNow: 200 }, 'h')).toMatch(
      /^100 ranks need about 1100 threads \(11 per rank\) and this user runs 200 of at most 1000 \(ulimit -u\) on h; raise it \(ulimit -u 1300\), or run at most 72 ranks on h/,
    );
    expect(whyNotFit(100, node, { ...roomy, cgroupPids: { max: 512, now: 12 } }, 'h')).toMatch(/this cgroup runs 12 of at most 512 \(pids\.max\) on h; raise pids\.max .*or run at most 45 ranks/);
    expect(whyNotFit(100, node, { ...roomy, threads: { max: 600, now: 100 } }, 'h')).toMatch(/\(\/proc\/sys\/kernel\/threads-max\); raise kernel\.threads-max, or run at most 45 ranks/);
    expect(whyNotFit(100, rankCost(['true']), { ...roomy, threads: { max: 600, now: 100 } }, 'h')).toBeUndefined();
  });

  it('names the memory a Node rank needs at least against what is available', () => {
    const why = whyNotFit(2000, node, { ...roomy, memoryAvailable: 1024 * 2 ** 20 }, 'h');
    expect(why).toBe(`2000 ranks need at least ${2000 * 14} MiB (14 MiB per rank) and h has 1024 MiB available; free memory, or run at most 73 ranks on h (a smaller -n, or more hosts with -H/--hostfile)`);
  });
});

describe('hostLimits', () => {
  it("reads this machine's limits from /proc", () => {
    const l = hostLimits();
    expect(l.openNow).toBeGreaterThan(0);
    expect(l.openFiles === undefined || l.openFiles.soft <= l.openFiles.hard).toBe(true);
    expect(l.threads?.now).toBeGreaterThan(0);
    expect(l.memoryAvailable).toBeGreaterThan(0);
  });
});
