// Host lists as mpirun users write them, and the plan that places ranks on them.

import { describe, expect, it } from 'vitest';
import { isLocalHost, parseHostfile, parseHostList } from '../../launcher/hosts/hostfile.js';
import { expandTasksPerNode } from '../../launcher/hosts/slurm.js';
import { parseSshArgs, sshLauncher } from '../../launcher/hosts/ssh.js';
import { makePlan } from '../../launcher/plan.js';

describe('hostfile', () => {
  it("reads Open MPI's and MPICH's forms, comments and blank lines; repeated hosts add up", () => {
    const text = ['# cluster', 'node1 slots=4', '', 'node2:2   # MPICH', 'node3', '  node1 slots=2 max_slots=8', '[fe80::1]:3', 'node4 max-slots=2'].join('\n');
    expect(parseHostfile(text, 'hf')).toEqual([
      { name: 'node1', slots: 6 },
      { name: 'node2', slots: 2 },
      { name: 'node3', slots: 1 },
      { name: 'fe80::1', slots: 3 },
      { name: 'node4', slots: 1 },
    ]);
  });

  it('names the file, the line and the fix for bad lines', () => {
    expect(() => parseHostfile('node1 slots=0', 'hf')).toThrow(/hf:1: slots must be a positive integer, got '0'/);
    expect(() => parseHostfile('a\nnode1 cpus=4', 'hf')).toThrow(/hf:2: unknown attribute 'cpus=4'; expected 'slots=N'/);
    expect(() => parseHostfile('node1:x', 'hf')).toThrow(/hf:1: 'node1:x' is not a host name/);
    expect(() => parseHostfile('# nothing\n\n', 'hf')).toThrow(/hf: names no host/);
  });

  it('-H host:slots lists', () => {
    expect(parseHostList('a:2,b,c:4')).toEqual([
      { name: 'a', slots: 2 },
      { name: 'b', slots: 1 },
      { name: 'c', slots: 4 },
    ]);
    expect(() => parseHostList('a:2,,b')).toThrow(/empty host name/);
    expect(() => parseHostList('a:0')).toThrow(/slots must be a positive integer/);
  });

  it('knows which names are this machine', () => {
    expect(isLocalHost('localhost')).toBe(true);
    expect(isLocalHost('127.0.0.1')).toBe(true);
    expect(isLocalHost('ivt-h1')).toBe(false);
  });
});

describe('plan', () => {
  const hosts = [
    { name: 'a', slots: 2 },
    { name: 'b', slots: 2 },
  ];

  it('fills hosts in order up to their slots, consecutive ranks per host', () => {
    const p = makePlan(3, undefined, hosts);
    expect(p.hosts).toEqual([
      { name: 'a', ranks: [0, 1] },
      { name: 'b', ranks: [2] },
    ]);
    expect(p.ranks.map((r) => r.node)).toEqual([0, 0, 1]);
    expect(p.ranks.map((r) => r.domain)).toEqual([0, 1, 2]);
  });

  it('--vms splits each host into that many domains, numbered across the job', () => {
    const p = makePlan(8, 2, [
      { name: 'a', slots: 4 },
      { name: 'b', slots: 4 },
    ]);
    expect(p.ranks.map((r) => r.domain)).toEqual([0, 0, 1, 1, 2, 2, 3, 3]);
    expect(p.domains).toBe(4);
    expect(() => makePlan(3, 2, hosts)).toThrow(/--vms \(domains per host\) must be an integer from 1 to 1/);
  });

  it('refuses more ranks than slots unless oversubscribed, then goes round the hosts', () => {
    expect(() => makePlan(5, undefined, hosts)).toThrow(/-n 5 is more than the 4 slots of a:2,b:2; .*--oversubscribe/);
    const p = makePlan(7, undefined, hosts, true);
    expect(p.hosts.map((h) => h.ranks.length)).toEqual([4, 3]);
    expect(p.hosts[0]!.ranks).toEqual([0, 1, 2, 3]);
  });

  it('this machine alone takes any number of ranks', () => {
    const p = makePlan(5, 2);
    expect(p.hosts).toEqual([{ name: 'localhost', ranks: [0, 1, 2, 3, 4] }]);
    expect(p.ranks.map((r) => r.domain)).toEqual([0, 0, 0, 1, 1]);
  });
});

describe('slurm and ssh', () => {
  it("expands Slurm's tasks-per-node", () => {
    expect(expandTasksPerNode('2(x3),1')).toEqual([2, 2, 2, 1]);
    expect(expandTasksPerNode('4')).toEqual([4]);
    expect(() => expandTasksPerNode('2(3)')).toThrow(/not in Slurm's format/);
  });

  it('splits --ssh-args like a shell and refuses shell syntax', () => {
    expect(parseSshArgs(`-p 2222 -F "my config" -o 'ProxyJump=gw'`)).toEqual(['-p', '2222', '-F', 'my config', '-o', 'ProxyJump=gw']);
    expect(parseSshArgs(undefined)).toEqual([]);
    expect(() => parseSshArgs('-p 22; rm -rf /')).toThrow(/shell syntax/);
  });

  it("runs the agent in BatchMode with the user's options first (ssh keeps the first value)", () => {
    const argv = sshLauncher('h1', ['-o', 'ConnectTimeout=3'], ['/usr/bin/node', '/opt/my ivcom/ivrun.js', '--agent']);
    expect(argv.slice(0, 4)).toEqual(['ssh', '-o', 'ConnectTimeout=3', '-o']);
    expect(argv).toContain('BatchMode=yes');
    expect(argv[argv.length - 1]).toBe("exec /usr/bin/node '/opt/my ivcom/ivrun.js' --agent");
  });
});
