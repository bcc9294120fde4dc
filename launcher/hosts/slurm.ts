// Inside a Slurm allocation (salloc, sbatch): the hosts and the rank count come from the
// allocation, and each host's agent is started as a one-task step with srun, so Slurm itself
// tracks (and on cancel, kills) everything the job runs.

import { execFileSync } from 'node:child_process';
import type { HostSlots } from './hostfile.js';

export interface Allocation {
  jobId: string;
  hosts: HostSlots[];
  /** The allocation's task count (SLURM_NTASKS), the default -n. */
  tasks: number;
}

/** `2(x3),1` → [2, 2, 2, 1] */
export function expandTasksPerNode(text: string): number[] {
  const out: number[] = [];
  for (const part of text.split(',')) {
    const m = /^(\d+)(?:\(x(\d+)\))?$/.exec(part.trim());
    if (m === null) throw new Error(`SLURM_TASKS_PER_NODE='${text}' is not in Slurm's format (e.g. '2(x3),1')`);
    for (let i = 0; i < Number(m[2] ?? 1); i++) out.push(Number(m[1]));
  }
  return out;
}

/** The allocation ivrun runs in, or undefined outside Slurm. */
export function slurmAllocation(env: NodeJS.ProcessEnv = process.env): Allocation | undefined {
  const jobId = env.SLURM_JOB_ID ?? env.SLURM_JOBID;
  const nodelist = env.SLURM_JOB_NODELIST ?? env.SLURM_NODELIST;
  if (jobId === undefined || nodelist === undefined) return undefined;
  let names: string[];
  try {
    // Slurm's own expansion of compressed lists (node[1-4,7]); no second parser of that syntax.
    names = execFileSync('scontrol', ['show', 'hostnames', nodelist], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
      .split('\n')
      .filter((s) => s !== '');
  } catch (err) {
    throw new Error(`inside Slurm job ${jobId}, but 'scontrol show hostnames ${nodelist}' failed (${(err as Error).message.split('\n')[0]}); is Slurm's client on PATH?`);
  }
  const perNode = expandTasksPerNode(env.SLURM_TASKS_PER_NODE ?? names.map(() => '1').join(','));
  if (perNode.length !== names.length) {
    throw new Error(`SLURM_TASKS_PER_NODE='${env.SLURM_TASKS_PER_NODE}' counts ${perNode.length} nodes but the allocation has ${names.length} (${nodelist})`);
  }
  const hosts = names.map((name, i) => ({ name, slots: perNode[i]! }));
  const tasks = Number(env.SLURM_NTASKS ?? perNode.reduce((a, b) => a + b, 0));
  return { jobId, hosts, tasks };
}

/** argv that runs `agent` on `node` as its own step, sharing the allocation's CPUs with the ranks' steps. */
export function srunLauncher(node: string, agent: string[]): string[] {
  return ['srun', '--nodes=1', '--ntasks=1', `--nodelist=${node}`, '--overlap', '--kill-on-bad-exit=1', '--quiet', '--cpu-bind=none', '--', ...agent];
}
