// Chaos: SIGKILL a random rank, or ivrun itself, at a random moment of heavy mixed traffic (the
// soak fixture, over ivcom or tcp). A rank's death must end the job with a non-zero status that
// names that rank; either way nothing of the job may survive it: no process, no memfd segment
// (fd or mapping, in any process of the machine), nothing in /dev/shm, no socket
// (jobLeftovers). The moments, victims and transports come from a seeded RNG: CHAOS_SEED=<n>
// replays a run; the seed is printed.

import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { fixture, ivrun, jobLeftovers, processesWith, rankOf, segmentsOf, signalIfAlive } from '../helpers/job.js';
import { rng } from '../helpers/rng.js';

const SOAK = fixture('soak.js');
const RANKS = 4;
const RANK_KILLS = 4;
const IVRUN_KILLS = 2;
/** Traffic that outlasts any kill moment by far (the job is killed long before it ends). */
const LONG_SOAK = { SOAK_PAIR: '200000', SOAK_FANIN: '200000' };
/** How long the job's processes, segments and sockets get to disappear after ivrun is gone. */
const GRACE_MS = 2000;

const seed = process.env.CHAOS_SEED !== undefined ? Number(process.env.CHAOS_SEED) : Date.now() % 1_000_000;
console.log(`chaos seed ${seed} (CHAOS_SEED=${seed} replays it)`);
const random = rng(seed);

/** How long a loaded machine may take to start 4 Node ranks and their first exchange. */
const START_MS = 20_000;

/**
 * The rank processes of job `jobId` once all are up (and, over ivcom, once the job has mapped a
 * segment: its traffic has begun), then one of them after a random pause.
 */
async function victimOf(jobId: string, ivcom: boolean): Promise<{ pid: number; rank: number }> {
  const marker = `IVCOM_TEST_MARK=${jobId}`;
  const ranks = () =>
    processesWith(marker)
      .map((pid) => ({ pid, rank: rankOf(pid) }))
      .filter((p): p is { pid: number; rank: number } => p.rank !== undefined);
  const t0 = Date.now();
  const started = () => ranks().length >= RANKS && (!ivcom || segmentsOf(jobId).some((l) => l.endsWith(' mapping')));
  while (!started() && Date.now() - t0 < START_MS) await new Promise((r) => setTimeout(r, 25));
  // Mid-traffic: the ranks have been exchanging for up to 1.5 s.
  await new Promise((r) => setTimeout(r, 200 + random() * 1300));
  const all = ranks();
  expect(all.length).toBe(RANKS);
  return all[Math.floor(random() * all.length)]!;
}

const transportArgs = () => (random() < 0.5 ? ['--transport', 'tcp'] : []);

describe('chaos', () => {
  for (let k = 0; k < RANK_KILLS; k++) {
    it(`SIGKILL of a random rank mid-traffic ends the job naming it, and leaves nothing (${k + 1}/${RANK_KILLS})`, async () => {
      const jobId = randomBytes(8).toString('hex');
      const args = transportArgs();
      let victim: { pid: number; rank: number } | undefined;
      const r = await ivrun(['-n', String(RANKS), ...args, 'node', SOAK], {
        jobId,
        env: LONG_SOAK,
        graceMs: GRACE_MS,
        onSpawn: () => {
          void victimOf(jobId, !args.includes('tcp')).then((v) => {
            victim = v;
            signalIfAlive(v.pid, 'SIGKILL');
          });
        },
      });
      console.log(`chaos: killed rank ${victim?.rank} (${args.join(' ') || 'ivcom'}): ivrun exit ${r.code}, ${r.leftovers.length} leftovers`);
      expect(victim).toBeDefined();
      expect(r.code).toBe(137);
      expect(r.stderr).toMatch(new RegExp(`rank ${victim!.rank}\\b[^\\n]* was killed by signal SIGKILL`));
      expect(r.leftovers).toEqual([]);
    });
  }

  for (let k = 0; k < IVRUN_KILLS; k++) {
    it(`SIGKILL of ivrun itself mid-traffic leaves nothing of the job (${k + 1}/${IVRUN_KILLS})`, async () => {
      const jobId = randomBytes(8).toString('hex');
      const args = transportArgs();
      let alive: string[] = [];
      const r = await ivrun(['-n', String(RANKS), ...args, 'node', SOAK], {
        jobId,
        env: LONG_SOAK,
        graceMs: GRACE_MS,
        onSpawn: (ivrunPid) => {
          void victimOf(jobId, !args.includes('tcp')).then(() => {
            alive = jobLeftovers(jobId, `IVCOM_TEST_MARK=${jobId}`);
            signalIfAlive(ivrunPid, 'SIGKILL');
          });
        },
      });
      console.log(`chaos: killed ivrun (${args.join(' ') || 'ivcom'}): ${r.leftovers.length} leftovers`);
      expect(r.signal).toBe('SIGKILL');
      // The check sees what a live job holds: its processes, sockets and (ivcom) mapped segments.
      expect(alive.filter((l) => l.startsWith('pid ')).length).toBeGreaterThanOrEqual(RANKS);
      expect(alive.some((l) => l.startsWith('unix socket '))).toBe(true);
      if (!args.includes('tcp')) expect(alive.some((l) => l.endsWith(' mapping'))).toBe(true);
      expect(r.leftovers).toEqual([]);
    });
  }
});
