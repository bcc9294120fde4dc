// Jobs over several hosts: real hosts made here (network namespaces, each with its own sshd and
// slurmd; see test/helpers/cluster.sh), reached through the system's ssh client or through a
// real Slurm. Ranks on one host talk over ivcom, ranks on different hosts over TCP across the
// bridge; nothing of a job survives on any host, however it ends.

import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, inject, it } from 'vitest';
import { clusterEnv, requireCluster } from '../helpers/cluster-info.js';
import { fixture, IVRUN, ivrun, processesWith, ranksRunning, signalIfAlive, type JobResult, type RunOptions } from '../helpers/job.js';
import { killNewestRank, wheres, whenReady } from '../helpers/where.js';

const DOMAINS = fixture('domains.js');
const COLL = fixture('collectives.js');
const P2P = fixture('p2p.js');
// Remote ranks get only what -x exports (as with mpirun): the test's marker must travel too,
// so that the leftover check finds them.
const MARK = ['-x', 'IVCOM_TEST_MARK'];


/** ivrun with the cluster's ssh config, then: no rank and no agent left on any host. */
async function hostsJob(args: string[], opts: RunOptions = {}): Promise<JobResult> {
  const c = requireCluster(inject('cluster'));
  const r = await ivrun([...MARK, '--ssh-args', c.sshArgs.join(' '), ...args], opts);
  let agents = ranksRunning(`${IVRUN}\0--agent`);
  for (let i = 0; i < 40 && agents.length > 0; i++) {
    await new Promise((res) => setTimeout(res, 50));
    agents = ranksRunning(`${IVRUN}\0--agent`);
  }
  expect(agents, 'agents still running').toEqual([]);
  expect(r.leftovers, 'ranks still running').toEqual([]);
  return r;
}

describe('hosts over ssh', () => {
  it('-H two hosts: each host its own network, ivcom within a host, TCP between hosts', async () => {
    const c = requireCluster(inject('cluster'));
    const [h1, h2] = c.hosts;
    const r = await hostsJob(['-H', `${h1!.name}:2,${h2!.name}:2`, 'node', DOMAINS, 'where']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('OK where');
    const seen = wheres(r);
    expect(seen.map((w) => [w.hostname, w.node])).toEqual([
      [h1!.name, 0],
      [h1!.name, 0],
      [h2!.name, 1],
      [h2!.name, 1],
    ]);
    for (const w of seen) {
      const host = c.hosts[w.node]!;
      // The rank runs in that host's network stack and listens on its address.
      expect(w.listen).toBe(host.addr);
      expect(w.addrs).toContain(`eth0=${host.addr}`);
      expect(w.transports).toEqual(seen.map((p) => (p.rank === w.rank ? 'self' : p.node === w.node ? 'ivcom' : 'tcp')));
    }
  });

  it("the head's own host joins the job: its ranks listen where the other hosts reach it", async () => {
    const c = requireCluster(inject('cluster'));
    const r = await hostsJob(['-H', `localhost:2,${c.hosts[0]!.name}:1`, 'node', DOMAINS, 'where']);
    expect(r.code).toBe(0);
    const seen = wheres(r);
    expect(seen.map((w) => w.listen)).toEqual([c.bridgeAddr, c.bridgeAddr, c.hosts[0]!.addr]);
    expect(seen[0]!.transports).toEqual(['self', 'ivcom', 'tcp']);
  });

  it('a hostfile in both dialects gives -n, and --vms splits every host', async () => {
    const c = requireCluster(inject('cluster'));
    const dir = mkdtempSync(path.join(os.tmpdir(), 'ivcom-hostfile-'));
    const file = path.join(dir, 'hosts');
    writeFileSync(file, `# two hosts\n${c.hosts[0]!.name} slots=2\n\n${c.hosts[1]!.name}:2   # MPICH form\n`);
    const r = await hostsJob(['--hostfile', file, '--vms', '2', 'node', DOMAINS, 'where']);
    expect(r.code).toBe(0);
    const seen = wheres(r);
    expect(seen).toHaveLength(4);
    expect(seen.map((w) => w.node)).toEqual([0, 0, 1, 1]);
  });

  it('--ranks-as threads: each host one process, its ranks threads of it, TCP between hosts', async () => {
    const c = requireCluster(inject('cluster'));
    const r = await hostsJob(['-H', `${c.hosts[0]!.name}:2,${c.hosts[1]!.name}:3`, '--ranks-as', 'threads', 'node', DOMAINS, 'where']);
    expect({ code: r.code, stderr: r.stderr.slice(-3000) }).toEqual({ code: 0, stderr: expect.any(String) });
    const seen = wheres(r);
    expect(seen.map((w) => w.node)).toEqual([0, 0, 1, 1, 1]);
    expect(new Set(seen.filter((w) => w.node === 0).map((w) => w.pid)).size).toBe(1);
    expect(new Set(seen.filter((w) => w.node === 1).map((w) => w.pid)).size).toBe(1);
    for (const w of seen) expect(w.transports).toEqual(seen.map((p) => (p.rank === w.rank ? 'self' : p.node === w.node ? 'ivcom' : 'tcp')));
  });

  // Two hosts of 2 and 3 ranks: barrier, bcast and allreduce take their hierarchical paths
  // (inside each host first, then across hosts: useHierarchy in collectives/select.ts).
  it.each(['auto', 'tcp'])('every collective across two hosts (hierarchical), transport %s', async (transport) => {
    const c = requireCluster(inject('cluster'));
    const r = await hostsJob(['-H', `${c.hosts[0]!.name}:2,${c.hosts[1]!.name}:3`, '--transport', transport, '--timeout', '50', 'node', COLL, 'all']);
    expect({ code: r.code, stderr: r.stderr.slice(-3000) }).toEqual({ code: 0, stderr: expect.any(String) });
    expect(r.stdout).toContain('OK all size=5');
  });

  it('a rank failing on one host ends the job on every host within seconds, naming host and rank', async () => {
    const c = requireCluster(inject('cluster'));
    let failedAt = 0;
    const r = await hostsJob(['-H', `${c.hosts[0]!.name}:2,${c.hosts[1]!.name}:2`, 'node', P2P, 'throws'], {
      onStdout: (t) => {
        const m = /FAILING-AT (\d+)/.exec(t);
        if (m) failedAt = Number(m[1]);
      },
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`ivrun: rank 3 on ${c.hosts[1]!.name} aborted the job: uncaught Error: deliberate failure`));
    expect(failedAt).toBeGreaterThan(0);
    expect(Date.now() - failedAt).toBeLessThan(3000);
  });

  it('SIGKILL of a rank on another host ends the job', async () => {
    const c = requireCluster(inject('cluster'));
    const r = await hostsJob(['-H', `${c.hosts[0]!.name}:2,${c.hosts[1]!.name}:2`, 'node', DOMAINS, 'hang'], whenReady(4, killNewestRank));
    expect(r.code).toBe(137);
    expect(r.stderr).toMatch(/rank \d on ivt-h\d was killed by signal SIGKILL/);
  });

  it('SIGKILL of the head ivrun leaves nothing running on any host', async () => {
    const c = requireCluster(inject('cluster'));
    const r = await hostsJob(['-H', `localhost:1,${c.hosts[0]!.name}:2,${c.hosts[1]!.name}:2`, 'node', DOMAINS, 'hang'], whenReady(5, (ivrunPid) => process.kill(ivrunPid, 'SIGKILL')));
    expect(r.signal).toBe('SIGKILL');
  });

  it('a host that cannot be reached fails the job at start with its name and what ssh said', async () => {
    const r = await hostsJob(['-H', 'localhost:1,ivt-nosuchhost.invalid:1', 'node', DOMAINS, 'where']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/ivrun: host ivt-nosuchhost\.invalid \(rank 1\): could not start ivrun's agent there \(ssh exited with code 255: ssh: Could not resolve hostname/);
    expect(r.stdout).not.toContain('WHERE');
    expect(r.ms).toBeLessThan(15_000);
  });

  it('refuses --isolation netns across hosts, and more ranks than slots without --oversubscribe', async () => {
    const c = requireCluster(inject('cluster'));
    const a = await hostsJob(['-H', `${c.hosts[0]!.name}:2`, '--isolation', 'netns', 'node', DOMAINS]);
    expect(a.code).toBe(2);
    expect(a.stderr).toMatch(/--isolation netns runs on this host only/);
    const b = await hostsJob(['-H', `${c.hosts[0]!.name}:1`, '-n', '2', 'node', DOMAINS]);
    expect(b.code).toBe(2);
    expect(b.stderr).toMatch(/-n 2 is more than the 1 slot of ivt-h1:1; .*--oversubscribe/);
    const d = await hostsJob(['-H', `${c.hosts[0]!.name}:1`, '-n', '2', '--oversubscribe', 'node', DOMAINS, 'where']);
    expect(d.code).toBe(0);
    expect(wheres(d).map((w) => w.hostname)).toEqual([c.hosts[0]!.name, c.hosts[0]!.name]);
  });
});

describe('Slurm', () => {
  /**
   * `salloc …sallocArgs ivrun …ivrunArgs` with the cluster's Slurm environment (as a user's shell
   * in the cluster would), then looks for processes of the job left on any node.
   */
  async function salloc(sallocArgs: string[], ivrunArgs: string[], onStdout?: (text: string, marker: string) => void): Promise<JobResult> {
    const c = requireCluster(inject('cluster'));
    const marker = `slurm-${randomBytes(8).toString('hex')}`;
    const t0 = performance.now();
    const child = spawn('salloc', [...sallocArgs, '--quiet', process.execPath, IVRUN, ...MARK, ...ivrunArgs], {
      env: { ...clusterEnv(c), IVCOM_TEST_MARK: marker },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
      onStdout?.(d, marker);
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 50_000);
    const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((res) => child.on('close', (cd, s) => res([cd, s])));
    clearTimeout(timer);
    const ms = performance.now() - t0;
    // Ranks carry the marker (exported with -x); agents are srun's steps, found by command line.
    const left = () => [...processesWith(`IVCOM_TEST_MARK=${marker}`), ...ranksRunning(`${IVRUN}\0--agent`)];
    let leftovers = left();
    for (let i = 0; i < 60 && leftovers.length > 0; i++) {
      await new Promise((res) => setTimeout(res, 50));
      leftovers = left();
    }
    return { code, signal, stdout, stderr, ms, leftovers };
  }

  // --ntasks-per-node: with -n alone Slurm may pack 3 tasks on one node and 1 on the other.
  it('salloc -N 2 --ntasks-per-node 2 ivrun (no -n): ranks and nodes come from the allocation', async () => {
    const r = await salloc(['-N', '2', '--ntasks-per-node', '2'], ['node', DOMAINS, 'where']);
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: '' });
    const seen = wheres(r);
    expect(seen.map((w) => [w.hostname, w.node])).toEqual([
      ['ivt-h1', 0],
      ['ivt-h1', 0],
      ['ivt-h2', 1],
      ['ivt-h2', 1],
    ]);
    for (const w of seen) expect(w.transports).toEqual(seen.map((p) => (p.rank === w.rank ? 'self' : p.node === w.node ? 'ivcom' : 'tcp')));
    expect(r.leftovers).toEqual([]);
  });

  it('-n smaller than the allocation', async () => {
    const r = await salloc(['-N', '2', '--ntasks-per-node', '2'], ['-n', '3', 'node', DOMAINS, 'where']);
    expect(r.code).toBe(0);
    expect(wheres(r).map((w) => w.hostname)).toEqual(['ivt-h1', 'ivt-h1', 'ivt-h2']);
    expect(r.leftovers).toEqual([]);
  });

  it('a failing rank ends the job on every node', async () => {
    const r = await salloc(['-N', '2', '-n', '4'], ['node', P2P, 'throws']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/ivrun: rank 3 on ivt-h2 aborted the job: uncaught Error: deliberate failure/);
    expect(r.leftovers).toEqual([]);
  });

  it('SIGKILL of ivrun inside the allocation leaves nothing on any node', async () => {
    // ivrun itself (salloc's child, with this job's marker), not salloc and not the srun steps.
    // salloc's command line holds ivrun's too, and srun passes the marker on to the agents:
    // ivrun is the one whose own command line starts with it.
    const killed: number[] = [];
    const kill = whenReady(4, (_pid, marker) => {
      for (const pid of processesWith(`IVCOM_TEST_MARK=${marker}`)) {
        let cmdline = '';
        try {
          cmdline = readFileSync(`/proc/${pid}/cmdline`, 'latin1');
        } catch {
          continue; // exited since it was listed (a short-lived helper of the job)
        }
        if (cmdline.startsWith(`${process.execPath}\0${IVRUN}\0-x\0`)) {
          signalIfAlive(pid, 'SIGKILL');
          killed.push(pid);
        }
      }
    });
    const r = await salloc(['-N', '2', '--ntasks-per-node', '2'], ['node', DOMAINS, 'hang'], (t, marker) => kill.onStdout(t, 0, marker));
    expect(killed).toHaveLength(1);
    // (salloc itself reports its command's SIGKILL with status 0: nothing to assert there.)
    expect(r.stdout).not.toContain('OK hang');
    expect(r.leftovers).toEqual([]);
  });

  it('sbatch: ivrun in the batch script, on the first node of the allocation', async () => {
    const c = requireCluster(inject('cluster'));
    const marker = `slurm-${randomBytes(8).toString('hex')}`;
    const out = path.join(mkdtempSync(path.join(os.tmpdir(), 'ivcom-sbatch-')), 'out');
    const script = [process.execPath, IVRUN, ...MARK, 'node', DOMAINS, 'where'].join(' ');
    const r = spawnSync('sbatch', ['--wait', '-N', '2', '--ntasks-per-node', '2', '-o', out, '--wrap', script], {
      env: { ...clusterEnv(c), IVCOM_TEST_MARK: marker },
      encoding: 'utf8',
      timeout: 50_000,
    });
    expect({ status: r.status, stderr: r.stderr }).toEqual({ status: 0, stderr: '' });
    const seen = wheres({ stdout: readFileSync(out, 'utf8') } as JobResult);
    expect(seen.map((w) => [w.hostname, w.listen])).toEqual([
      ['ivt-h1', c.hosts[0]!.addr],
      ['ivt-h1', c.hosts[0]!.addr],
      ['ivt-h2', c.hosts[1]!.addr],
      ['ivt-h2', c.hosts[1]!.addr],
    ]);
    expect(processesWith(`IVCOM_TEST_MARK=${marker}`)).toEqual([]);
  });

  it('srun without ivrun refuses to make worlds of one, and says to use ivrun', async () => {
    const c = requireCluster(inject('cluster'));
    const r = spawnSync('srun', ['-N', '2', '-n', '2', '--quiet', 'node', DOMAINS, 'where'], { env: clusterEnv(c), encoding: 'utf8', timeout: 50_000 });
    expect(r.error).toBeUndefined();
    expect(r.status).not.toBe(0);
    expect(r.stdout).not.toContain('WHERE');
    expect(r.stderr).toMatch(/ERR_IVCOM_BOOTSTRAP|task \d of 2 started by srun, not a rank of an ivrun job/);
    expect(r.stderr).toMatch(/run 'ivrun node app.js'/);
  });
});
