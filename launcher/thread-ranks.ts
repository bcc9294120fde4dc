// What the agent tells a thread host (thread-host.ts) about the ranks it runs, and where each
// rank's fds are in it. Shared by both ends so that the fd layout is written once.

/** The ranks of the host, as JSON: ThreadRank[]. */
export const THREAD_RANKS_ENV = 'IVCOM_THREAD_RANKS';

/** Thread host → agent: a line `<rank> <exit code>` as each rank's worker ends. */
export const STATUS_FD = 3;

export interface ThreadRank {
  rank: number;
  /** The variables a process of this rank would get (rank, control and grant fd numbers...). */
  env: Record<string, string>;
  stdout: number;
  stderr: number;
  /** Whether this rank reads the host's stdin (rank 0, when ivrun passes its stdin on). */
  stdin: boolean;
}

/** The fds of the i-th rank of a thread host: its control socket, grant channel, stdout and stderr. */
export function threadRankFds(i: number): { ctl: number; grant: number; stdout: number; stderr: number } {
  const first = STATUS_FD + 1 + 4 * i;
  return { ctl: first, grant: first + 1, stdout: first + 2, stderr: first + 3 };
}
