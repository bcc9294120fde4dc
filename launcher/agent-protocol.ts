// The protocol between the head ivrun and the agent it starts on every other host (that host's
// dom0), carried as JSON lines over the agent's stdin/stdout: the ssh channel or srun's pipes.
// The job secret reaches remote ranks only this way (inside `to-rank` start messages), never in
// argv or the environment.

import type { LauncherMessage, RankMessage, TransportMode } from '../transport/bootstrap/protocol.js';

export type Isolation = 'none' | 'netns';

/** What one host runs: its ranks, how, and in which domains. */
export interface HostSpec {
  jobId: string;
  /** Host index in the plan. */
  node: number;
  /** World size (grant requests name peers by world rank). */
  size: number;
  ranks: Array<{ rank: number; domain: number }>;
  command: string[];
  /** Variables for the ranks, over the agent's own environment. */
  env: Record<string, string>;
  /** Working directory of the ranks (the head's, as mpirun does); absent: the agent's. */
  cwd?: string;
  isolation: Isolation;
  transport: TransportMode;
  ringBytes: number;
  /** Address the ranks listen on when they have no domain address of their own. */
  address: string;
  /** Whether rank 0 (when it is here) reads the head's stdin; only the local host can. */
  stdin: boolean;
  /** --bind-to core: each rank on a CPU of its own (binding.ts); absent: not bound. */
  bindTo?: 'core';
  /** More ranks than CPUs may share them when bound (--oversubscribe). */
  oversubscribe?: boolean;
  /** --ranks-as threads: each domain's ranks are worker threads of one process (thread-host.ts); absent: a process per rank. */
  ranksAs?: 'threads';
}

/** Head → agent. */
export type HeadMessage =
  | { op: 'spawn'; spec: Omit<HostSpec, 'address' | 'stdin'> }
  | { op: 'to-rank'; rank: number; msg: LauncherMessage }
  | { op: 'kill'; signal: NodeJS.Signals; spare?: number }
  /** Every rank has exited: release the host's resources, answer `finished`, then exit. */
  | { op: 'finish' };

/** Agent → head. */
export type AgentMessage =
  /**
   * The agent runs. `address`: where its ranks listen (this host's address on the path from
   * the head); `head`: the head's address as this host sees it, for the head's own ranks.
   */
  | { op: 'ready'; address: string; head?: string }
  | { op: 'from-rank'; rank: number; msg: RankMessage }
  | { op: 'line'; rank: number; fd: 1 | 2; text: string }
  | { op: 'exit'; rank: number; code: number | null; signal: NodeJS.Signals | null }
  | { op: 'rank-failed'; rank: number; why: string; code: number }
  /** The host could not run its part (its domains or grants could not be set up). */
  | { op: 'failed'; why: string }
  | { op: 'finished' };
