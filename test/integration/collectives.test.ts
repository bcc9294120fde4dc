// Collectives through real ranks started by ivrun, for every communicator size from 1 to 9
// (up to 9 ranks on 2 cores: oversubscribed), on both transports. The fixture checks every
// collective and every op against a reference each rank computes by itself; see
// test/fixtures/collectives.ts. No timings are asserted: the machine is shared.

import { describe, expect, it } from 'vitest';
import { fixture, ivrun } from '../helpers/job.js';

const COLL = fixture('collectives.js');
const TRANSPORTS = (process.env.IVCOM_TEST_TRANSPORTS ?? 'tcp,ivcom').split(',');
const SIZES = [1, 2, 3, 4, 5, 6, 7, 8, 9];
// ivrun ends a hung job itself (status 124, reported below) well before vitest's own timeout.
const JOB_TIMEOUT_S = '45';

describe.each(TRANSPORTS)('collectives over %s', (transport) => {
  it.each(SIZES)('every collective and op, split, dup and isolation with %i ranks', async (n) => {
    const r = await ivrun(['-n', String(n), '--transport', transport, '--timeout', JOB_TIMEOUT_S, 'node', COLL, 'all']);
    // On failure, show what the ranks said (the first failed check names rank, size and values).
    expect({ code: r.code, stderr: r.stderr.slice(-3000) }).toEqual({ code: 0, stderr: expect.any(String) });
    expect(r.stdout).toContain(`OK all size=${n}`);
    expect(r.leftovers).toEqual([]);
  });

  it.each([2, 3, 4])('collectives overlapping point-to-point: called before a send the partner waits for, around a sleeping receive (%i ranks)', async (n) => {
    const r = await ivrun(['-n', String(n), '--transport', transport, '--timeout', JOB_TIMEOUT_S, 'node', COLL, 'overlap']);
    expect({ code: r.code, stderr: r.stderr.slice(-3000) }).toEqual({ code: 0, stderr: expect.any(String) });
    expect(r.stdout).toContain(`OK overlap size=${n}`);
    expect(r.leftovers).toEqual([]);
  });

  it.each(['A', 'B', 'C', 'D', 'E'])(
    'collectives called differently on different ranks (case %s) are never a silent success: ERR_IVCOM_COLLECTIVE_MISMATCH',
    async (c) => {
      const n = c === 'D' ? '2' : '3';
      // The messages' way of telling (host-slots.test.ts has the host group's, which ivrun
      // chooses by default when ranks outnumber cores).
      const r = await ivrun(['-n', n, '--transport', transport, '--host-slots', 'off', '--timeout', JOB_TIMEOUT_S, 'node', COLL, 'mismatch', c]);
      const lines = r.stdout.split('\n').filter((l) => l.startsWith(`case ${c} `));
      // Each rank either got the right value for the call it made, or saw the mismatch.
      for (const l of lines) expect(l).toMatch(/: (ok|ERR_IVCOM_COLLECTIVE_MISMATCH rank \d: its .* met rank \d's .* at the same point: every rank must call the same collectives in the same order, with the same root)$/);
      const early = lines.some((l) => l.includes('ERR_IVCOM_COLLECTIVE_MISMATCH'));
      // A rank whose call had returned (a bcast root, a gather sender) sees the other call's
      // message only later: nothing waits to be told then, so the job ends, naming both sides.
      const late = /ivrun: rank \d aborted the job: uncaught CollectiveMismatchError: rank \d: its .* met rank \d's .* at the same point \(it had returned already, so the job cannot go on\)/.test(r.stderr);
      expect(early || late).toBe(true);
      expect(r.code).toBe(late ? 1 : 0);
      if (c === 'A' && !late) expect(r.stdout).toMatch(/case A rank [12]: ERR_IVCOM_COLLECTIVE_MISMATCH rank [12]: its allreduce #1 on world met rank 0's bcast \(root 0\)/);
      if (c === 'E') expect(late).toBe(true);
      if (c === 'D') expect(r.stdout).toMatch(/case D rank 0: ERR_IVCOM_COLLECTIVE_MISMATCH rank 0: its allreduce #5001 on world met rank 1's barrier/);
      expect(r.leftovers).toEqual([]);
    },
  );

  it.each([
    ['throws', 'throw', 1, /ivrun: rank 2 aborted the job: uncaught Error: deliberate failure inside a collective on rank 2/],
    ['exits with code 3', 'exit', 3, /ivrun: rank 2 exited with code 3/],
  ] as const)('ends the job when a rank %s inside a collective the others are blocked in', async (_what, how, code, named) => {
    const r = await ivrun(['-n', '4', '--transport', transport, '--timeout', JOB_TIMEOUT_S, 'node', COLL, 'dies', how, '2'], {
      timeoutMs: 55_000,
    });
    // On failure, show how the job ended instead (its code and the ranks' last words).
    expect({ stdout: r.stdout, code: r.code, stderr: r.stderr.slice(-3000) }).toMatchObject({ stdout: expect.stringContaining(`rank 2 dies now (${how})`) });
    expect(r.stderr).toMatch(named);
    // Not the launcher's --timeout (124): the death itself ended the job.
    expect(r.code).toBe(code);
    expect(r.stdout).not.toContain('OK dies');
    expect(r.leftovers).toEqual([]);
  });
});
