// Reading what the domains fixture (test/fixtures/domains.ts) prints: where each rank runs, and
// when every rank of a hanging job is ready to be killed.

import { readFileSync } from 'node:fs';
import { processesWith, signalIfAlive, type JobResult } from './job.js';

/** One rank's WHERE line. */
export interface Where {
  rank: number;
  pid: number;
  netns: string;
  hostname: string;
  listen: string;
  node: number;
  domain: number;
  addrs: string[];
  transports: string[];
}

/** The WHERE lines of a job's output, by rank. */
export function wheres(r: Pick<JobResult, 'stdout'>): Where[] {
  return r.stdout
    .split('\n')
    .filter((l) => l.startsWith('WHERE '))
    .map((l) => JSON.parse(l.slice(6)) as Where)
    .sort((a, b) => a.rank - b.rank);
}

/**
 * An onStdout callback for the fixture's `hang` scenario: calls `act` once, when `ranks` READY
 * lines have been seen (every rank is past its traffic and blocked). `fired()` says whether it did.
 */
export function whenReady(
  ranks: number,
  act: (ivrunPid: number, marker: string) => void,
): { onStdout: (text: string, pid: number, marker: string) => void; fired: () => boolean } {
  let seen = 0;
  let done = false;
  return {
    onStdout: (text, pid, marker) => {
      seen += (text.match(/READY/g) ?? []).length;
      if (!done && seen >= ranks) {
        done = true;
        act(pid, marker);
      }
    },
    fired: () => done,
  };
}

/** SIGKILL to the newest rank process of the job carrying `marker` (never ivrun or an agent). */
export function killNewestRank(_ivrunPid: number, marker: string): void {
  const ranks = processesWith(marker).filter((pid) => {
    try {
      // The fixture's ranks run as `node domains.js …`; ivrun and its agents run ivrun.js.
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'latin1');
      return cmd.startsWith('node\0') && !cmd.includes('ivrun');
    } catch {
      return false;
    }
  });
  const victim = ranks.sort((a, b) => a - b).pop();
  if (victim === undefined) throw new Error(`no rank of the job (${marker}) to kill`);
  signalIfAlive(victim, 'SIGKILL');
}
