// The host group's slots (ivrun --host-slots on; runtime/host-slots.ts): the world communicator's
// small allreduces and barriers of a one-host job meet in one shared segment instead of passing
// messages, and its large allreduces copy their parts rank to rank from there (host-copy.ts).
// The collectives fixture checks every collective and op against a reference each rank computes
// alone, with collectives called before the sends their partners wait for, and a receive that
// sleeps around them; sizes from 2 to 5 ranks (oversubscribed on 2 cores).

import { describe, expect, it } from 'vitest';
import { fixture, ivrun } from '../helpers/job.js';

const COLL = fixture('collectives.js');
const SLOTS_FIXTURE = fixture('slots.js');
const JOB_TIMEOUT_S = '45';

describe('collectives through the host group (ivrun --host-slots on)', () => {
  // `all` includes 8 MB allreduces (fresh, into, in place, in shared memory): by single copy,
  // and with --single-copy off by messages after the first round (no rank can copy).
  it.each([
    ['all', 2, []],
    ['all', 3, []],
    ['all', 5, []],
    ['all', 3, ['--single-copy', 'off']],
    ['overlap', 3, []],
    ['overlap', 4, []],
  ] as const)('%s with %i ranks %j', async (scenario, n, extra) => {
    const r = await ivrun(['-n', String(n), '--transport', 'ivcom', '--host-slots', 'on', ...extra, '--timeout', JOB_TIMEOUT_S, 'node', COLL, scenario]);
    expect({ code: r.code, stderr: r.stderr.slice(-3000) }).toEqual({ code: 0, stderr: expect.any(String) });
    expect(r.stdout).toContain(`OK ${scenario} size=${n}`);
    expect(r.leftovers).toEqual([]);
  });

  it('says which ranks called what when one calls barrier and the others allreduce', async () => {
    const r = await ivrun(['-n', '2', '--transport', 'ivcom', '--host-slots', 'on', '--timeout', JOB_TIMEOUT_S, 'node', COLL, 'mismatch', 'D']);
    // Case D: 5000 allreduces agree, then rank 0 calls allreduce where rank 1 calls barrier.
    // Both see the other's part in the slots and name both calls; the next collective fails at
    // once (the slots went out of step) and ends the job, which may stop the other rank before
    // it prints: at least one of them says it, and nothing else is printed for case D.
    const lines = r.stdout.split('\n').filter((l) => l.startsWith('case D rank'));
    expect(lines.length).toBeGreaterThan(0);
    for (const l of lines) {
      expect(l).toMatch(/^case D rank (0: ERR_IVCOM_COLLECTIVE_MISMATCH rank 0: its allreduce of 8 bytes \(Float64Array, Op\.SUM\) met rank 1's barrier|1: ERR_IVCOM_COLLECTIVE_MISMATCH rank 1: its barrier met rank 0's allreduce of 8 bytes)/);
    }
    expect(r.stderr).toMatch(/went out of step at an earlier call/);
    expect(r.code).toBe(1);
    expect(r.leftovers).toEqual([]);
  });

  it('says which ranks called what when rank 0 calls bcast and the others allreduce, then ends the job', async () => {
    const r = await ivrun(['-n', '3', '--transport', 'ivcom', '--host-slots', 'on', '--timeout', JOB_TIMEOUT_S, 'node', COLL, 'mismatch', 'A']);
    // Ranks 1 and 2 see rank 0's bcast message at their allreduce, or rank 0's next collective
    // in the slots, and rank 0 sees their allreduce at its barrier: whoever sees it first names
    // both calls, and the collectives after that cannot meet, so the job ends saying so (never
    // a silent success, never a hang). Which rank gets there first is up to the scheduler.
    const said = r.stdout + r.stderr;
    expect(said).toMatch(/rank [12]: its allreduce #1 on world met rank 0's bcast \(root 0\)|rank [12]: its allreduce of a value that is not a small typed array .* met rank 0's barrier|rank 0: its barrier met rank [12]'s allreduce of a value that is not a small typed array/);
    for (const l of r.stdout.split('\n').filter((x) => x.startsWith('case A rank'))) expect(l).toMatch(/^case A rank (0: ok|[12]: ERR_IVCOM_COLLECTIVE_MISMATCH )/);
    expect(r.stderr).toMatch(/went out of step at an earlier call/);
    expect(r.code).toBe(1);
    expect(r.leftovers).toEqual([]);
  });

  it('wakes ranks asleep on their doorbells when a late rank comes, with the right results (4 ranks)', async () => {
    const r = await ivrun(['-n', '4', '--transport', 'ivcom', '--host-slots', 'on', '--timeout', JOB_TIMEOUT_S, 'node', SLOTS_FIXTURE, 'late']);
    expect({ code: r.code, stderr: r.stderr.slice(-3000) }).toEqual({ code: 0, stderr: expect.any(String) });
    for (let i = 0; i < 4; i++) expect(r.stdout).toContain(`OK late rank ${i}`);
    // Rank 0 really waited for the late rank (so it slept, past any spin).
    for (const m of r.stdout.matchAll(/rank 0 waited (\d+) ms/g)) expect(Number(m[1])).toBeGreaterThanOrEqual(200);
    expect(r.leftovers).toEqual([]);
  });

  it('rejects a barrier a finished rank never made: ERR_IVCOM_PEER_LOST naming it', async () => {
    const r = await ivrun(['-n', '3', '--transport', 'ivcom', '--host-slots', 'on', '--timeout', JOB_TIMEOUT_S, 'node', SLOTS_FIXTURE, 'leaves']);
    for (const k of [0, 2]) {
      expect(r.stdout).toMatch(new RegExp(`leaves rank ${k}: ERR_IVCOM_PEER_LOST rank ${k}: a collective call on the world communicator can never complete: rank 1 has finalized or exited without making it`));
    }
    expect(r.code).toBe(0);
    expect(r.leftovers).toEqual([]);
  });

  it('refuses a --host-slots or IVCOM_HOST_SLOTS it does not know, naming it', async () => {
    const flag = await ivrun(['-n', '2', '--host-slots', 'yes', 'node', COLL, 'all']);
    expect(flag.code).toBe(2);
    expect(flag.stderr).toMatch(/--host-slots must be one of on, off, got 'yes'/);
    const env = await ivrun(['-n', '2', 'node', COLL, 'all'], { env: { IVCOM_HOST_SLOTS: 'sometimes' } });
    expect(env.code).toBe(2);
    expect(env.stderr).toMatch(/IVCOM_HOST_SLOTS must be one of on, off, got 'sometimes'/);
  });
});
