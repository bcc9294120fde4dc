// Soak: ~20 000 mixed-size messages (0 B to 5 MiB: eager, rendezvous, streamed; ~750 MB) between
// 4 ranks, pairwise and fan-in with ANY_SOURCE, each checked on receipt for loss, duplication,
// reordering and corruption (sequence numbers and CRC-32C: test/fixtures/soak.ts), on every path;
// then a last 3 MiB message per rank, its sender finalizing at once (the streamed-close bug: with
// it, the 64 KiB-ring run failed about one time in six).

import { describe, expect, it } from 'vitest';
import { fixture, ivrun } from '../helpers/job.js';

const SOAK = fixture('soak.js');

describe('soak', () => {
  it.each([
    ['ivcom', []],
    ['tcp', ['--transport', 'tcp']],
    ['ivcom, --single-copy off through a 64 KiB ring', ['--single-copy', 'off', '--ring-bytes', '65536']],
    ['ivcom --verify', ['--verify']],
    ['tcp --verify', ['--verify', '--transport', 'tcp']],
  ])('%s: no loss, duplicate, reorder or corruption', async (_name, args) => {
    const r = await ivrun(['-n', '4', ...args, '--timeout', '100', 'node', SOAK], { timeoutMs: 110_000 });
    expect(r.stderr + r.stdout).toMatch(/OK soak size=4 transport=(ivcom|tcp) messages=20400 bytes=745921673/);
    expect(r.stdout).toContain(`transport=${args.includes('tcp') ? 'tcp' : 'ivcom'}`);
    expect(r.code).toBe(0);
    expect(r.leftovers).toEqual([]);
  }, 120_000);

  it('fails, naming the message, when a byte changes after its checksum (the checks can fail)', async () => {
    const r = await ivrun(['-n', '4', 'node', SOAK], { env: { SOAK_SPOIL: '3', SOAK_PAIR: '40', SOAK_FANIN: '40' } });
    expect(r.stderr).toMatch(/soak check failed: (pairwise|fan-in) message 3 from rank \d: body checksum \(corrupted\)/);
    expect(r.code).not.toBe(0);
    expect(r.leftovers).toEqual([]);
  });
});
