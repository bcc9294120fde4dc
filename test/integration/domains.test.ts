// --isolation netns: every VM its own network and UTS namespace on a per-job bridge, and nothing
// of it outlives the job, however the job ends.

import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { fixture, IVRUN, ivrun, netNamespaces, rootLinks, type JobResult } from '../helpers/job.js';
import { killNewestRank, wheres, whenReady, type Where } from '../helpers/where.js';

const DOMAINS = fixture('domains.js');


/** Runs a netns job and checks that its namespaces, links and processes are gone afterwards. */
async function netnsJob(args: string[], opts: Parameters<typeof ivrun>[1] = {}): Promise<{ r: JobResult; seen: Where[] }> {
  const linksBefore = rootLinks();
  const r = await ivrun(['--isolation', 'netns', ...args], opts);
  const seen = wheres(r);
  // Namespaces go when their last process does; the kernel may take a moment after the reap.
  // An anonymous namespace exists only while a process is in it or holds it, so the job's other
  // namespaces (its switch's) left behind would show as its processes in r.leftovers; counting
  // every namespace on the machine would also count those of other tests' jobs running meanwhile.
  let alive: string[] = [];
  for (let i = 0; i < 40; i++) {
    const now = netNamespaces();
    alive = [...new Set(seen.map((w) => w.netns))].filter((ns) => now.has(ns));
    if (alive.length === 0) break;
    await new Promise((res) => setTimeout(res, 50));
  }
  expect(alive, 'namespaces of the VMs still alive').toEqual([]);
  expect(rootLinks().filter((l) => !linksBefore.includes(l)), 'links added to the root namespace').toEqual([]);
  expect(r.leftovers).toEqual([]);
  return { r, seen };
}

describe('--isolation netns', () => {
  it('-n 8 --vms 4: four VMs with their own hostname and address, ivcom across all of them', async () => {
    const { r, seen } = await netnsJob(['-n', '8', '--vms', '4', 'node', DOMAINS, 'where']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('OK where');
    expect(seen.map((w) => w.rank)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    for (const w of seen) {
      const vm = Math.floor(w.rank / 2);
      expect(w.hostname).toBe(`vm${vm}`);
      expect(w.domain).toBe(vm);
      // Its own network: loopback and its one veth, carrying the address it listens on.
      expect(w.addrs).toEqual(['lo=127.0.0.1', `eth0=${w.listen}`]);
      expect(w.transports).toEqual(seen.map((p) => (p.rank === w.rank ? 'self' : 'ivcom')));
    }
    // Ranks of one VM share its namespace; VMs do not.
    const ns = seen.map((w) => w.netns);
    expect(new Set(ns).size).toBe(4);
    for (let i = 0; i < 8; i += 2) expect(ns[i]).toBe(ns[i + 1]);
    expect(new Set(seen.map((w) => w.listen)).size).toBe(4);
    // One private /24 for the job's bridge.
    expect(new Set(seen.map((w) => w.listen.split('.').slice(0, 3).join('.'))).size).toBe(1);
  });

  it('--ranks-as threads: each VM one process in its own namespace, its ranks threads of it', async () => {
    const { r, seen } = await netnsJob(['-n', '4', '--vms', '2', '--ranks-as', 'threads', 'node', DOMAINS, 'where']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('OK where');
    expect(seen.map((w) => w.rank)).toEqual([0, 1, 2, 3]);
    for (const w of seen) expect(w.hostname).toBe(`vm${Math.floor(w.rank / 2)}`);
    expect(seen[0]!.pid).toBe(seen[1]!.pid);
    expect(seen[2]!.pid).toBe(seen[3]!.pid);
    expect(seen[0]!.pid).not.toBe(seen[2]!.pid);
    expect(seen[0]!.netns).not.toBe(seen[2]!.netns);
    for (const w of seen) expect(w.transports).toEqual(seen.map((p) => (p.rank === w.rank ? 'self' : 'ivcom')));
  });

  it('--transport tcp crosses the bridge between VMs', async () => {
    const { r, seen } = await netnsJob(['-n', '4', '--vms', '2', '--transport', 'tcp', 'node', DOMAINS, 'where']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('OK where');
    for (const w of seen) expect(w.transports).toEqual(seen.map((p) => (p.rank === w.rank ? 'self' : 'tcp')));
    expect(seen[0]!.listen).not.toBe(seen[2]!.listen);
  });

  it('two netns jobs at once run on separate bridges', async () => {
    const [a, b] = await Promise.all([
      netnsJob(['-n', '2', '--vms', '2', 'node', DOMAINS, 'where']),
      netnsJob(['-n', '2', '--vms', '2', '--transport', 'tcp', 'node', DOMAINS, 'where']),
    ]);
    expect(a.r.code).toBe(0);
    expect(b.r.code).toBe(0);
    const nsA = new Set(a.seen.map((w) => w.netns));
    expect(b.seen.some((w) => nsA.has(w.netns))).toBe(false);
  });

  it('a crashing rank ends the job and leaves no namespace, link or process', async () => {
    const { r } = await netnsJob(['-n', '4', '--vms', '2', 'node', DOMAINS, 'crash']);
    expect(r.code).toBe(139);
    expect(r.stderr).toMatch(/rank 3 was killed by signal SIGSEGV/);
  });

  it('SIGKILL of a rank: the job ends and nothing is left', async () => {
    const { r } = await netnsJob(['-n', '4', '--vms', '2', 'node', DOMAINS, 'hang'], whenReady(4, killNewestRank));
    expect(r.code).toBe(137);
    expect(r.stderr).toMatch(/rank \d was killed by signal SIGKILL/);
  });

  it('SIGKILL of ivrun itself: nothing is left', async () => {
    const { r } = await netnsJob(['-n', '4', '--vms', '2', 'node', DOMAINS, 'hang'], whenReady(4, (ivrunPid) => process.kill(ivrunPid, 'SIGKILL')));
    expect(r.signal).toBe('SIGKILL');
  });

  it('says what is missing when it may not create namespaces', () => {
    // An unprivileged user: no CAP_SYS_ADMIN, so unshare(CLONE_NEWNET) is refused.
    const res = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, IVRUN, '-n', '2', '--isolation', 'netns', 'node', DOMAINS], {
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(res.status).toBe(1);
    expect(res.stderr).toMatch(/--isolation netns cannot create network namespaces here .*run ivrun as root/);
    expect(res.stdout).not.toContain('WHERE');
  });
});
