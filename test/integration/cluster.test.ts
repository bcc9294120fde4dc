// The "real hosts" test infrastructure itself (test/helpers/cluster.sh): each host is its own
// network stack, reached by ssh, sharing this filesystem; Slurm allocations span both hosts and
// their steps run inside them.

import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, inject, it } from 'vitest';
import { clusterEnv, requireCluster, type ClusterUp } from '../helpers/cluster-info.js';

interface Out {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(cmd: string, args: string[], env?: NodeJS.ProcessEnv): Promise<Out> {
  return new Promise((resolve) => {
    execFile(cmd, args, { env, timeout: 30_000, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : null) : 0;
      resolve({ code, stdout, stderr: stderr || (err?.message ?? '') });
    });
  });
}

const cluster = (): ClusterUp => requireCluster(inject('cluster'));
const ssh = (c: ClusterUp, host: string, command: string) => run('ssh', [...c.sshArgs, host, command]);
const slurm = (c: ClusterUp, cmd: string, args: string[]) => run(cmd, args, clusterEnv(c));

/** The IPv4 addresses in `ip -4 -o addr` output. */
const ipv4 = (text: string) => [...text.matchAll(/\binet (\d+\.\d+\.\d+\.\d+)\//g)].map((m) => m[1]).sort();

describe('test cluster', () => {
  it('ssh reaches each host in its own network stack, under its own name', async () => {
    const c = cluster();
    expect(c.hosts.map((h) => h.name)).toEqual(['ivt-h1', 'ivt-h2']);
    for (const h of c.hosts) {
      const r = await ssh(c, h.name, 'hostname; ip -4 -o addr');
      expect(r, r.stderr).toMatchObject({ code: 0 });
      const [name, ...rest] = r.stdout.split('\n');
      expect(name).toBe(h.name);
      // Its own address and loopback only: not the bridge's, not the other host's.
      expect(ipv4(rest.join('\n'))).toEqual(['127.0.0.1', h.addr].sort());
    }
  });

  it('a host sees this filesystem and runs node', async () => {
    const c = cluster();
    const token = randomBytes(8).toString('hex');
    const file = path.join(c.dir, `token-${token}`);
    writeFileSync(file, token);
    try {
      for (const h of c.hosts) {
        const r = await ssh(c, h.name, `cat ${file}; echo; node -p process.version`);
        expect(r, r.stderr).toMatchObject({ code: 0 });
        expect(r.stdout.split('\n').slice(0, 2)).toEqual([token, process.version]);
      }
    } finally {
      rmSync(file, { force: true });
    }
  });

  it('srun -N2 hostname runs once on each node', async () => {
    const c = cluster();
    const r = await slurm(c, 'srun', ['-N2', 'hostname']);
    expect(r, r.stderr).toMatchObject({ code: 0 });
    expect(r.stdout.trim().split('\n').sort()).toEqual(['ivt-h1', 'ivt-h2']);
  });

  it("srun's tasks run inside their node's network stack, 4 CPUs a node", async () => {
    const c = cluster();
    // node -e has the built-in modules as globals.
    const script =
      'const a = Object.values(os.networkInterfaces()).flat().filter((i) => i.family === "IPv4").map((i) => i.address);' +
      'console.log(os.hostname(), process.env.SLURM_PROCID, a.sort().join(","))';
    const r = await slurm(c, 'srun', ['-N2', '-n8', 'node', '-e', script]);
    expect(r, r.stderr).toMatchObject({ code: 0 });
    const lines = r.stdout.trim().split('\n');
    expect(lines).toHaveLength(8);
    const perHost = new Map<string, number>();
    for (const line of lines) {
      const [name, , addrs] = line.split(' ');
      const h = c.hosts.find((x) => x.name === name);
      expect(h, line).toBeDefined();
      expect(addrs).toBe(['127.0.0.1', h!.addr].sort().join(','));
      perHost.set(name, (perHost.get(name) ?? 0) + 1);
    }
    expect(Object.fromEntries(perHost)).toEqual({ 'ivt-h1': 4, 'ivt-h2': 4 });
  });

  it('salloc -N2 -n4 runs its command here, with the allocation in its environment', async () => {
    const c = cluster();
    const inner =
      'echo "nodelist=$SLURM_JOB_NODELIST nodes=$SLURM_JOB_NUM_NODES ntasks=$SLURM_NTASKS"; hostname; srun hostname | sort -u';
    const r = await slurm(c, 'salloc', ['-N2', '-n4', 'sh', '-c', inner]);
    expect(r, r.stderr).toMatchObject({ code: 0 });
    const [env, here, ...steps] = r.stdout.trim().split('\n');
    expect(env).toBe('nodelist=ivt-h[1-2] nodes=2 ntasks=4');
    // The command itself runs on this machine (the root namespace), not on a node.
    expect(c.hosts.map((h) => h.name)).not.toContain(here);
    expect(steps).toEqual(['ivt-h1', 'ivt-h2']);
  });
});
