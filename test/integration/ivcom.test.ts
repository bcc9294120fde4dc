// The shared-memory fast path through real ranks: selection, lazy grants, a hostile peer,
// a 1 GiB message, and nothing left behind.

import { describe, expect, it } from 'vitest';
import { fixture, ivrun } from '../helpers/job.js';

const IVCOM = fixture('ivcom.js');
const P2P = fixture('p2p.js');

describe('ivcom transport', () => {
  it('is chosen for every pair of one host, across domains (--vms), and tcp when forced', async () => {
    const probe = `import('${P2P.replace('test/fixtures/p2p.js', 'runtime/index.js')}').then(async (m) => {
      const c = await m.init();
      const t = []; for (let p = 0; p < c.size; p++) t.push(c.transportTo(p));
      console.log('r' + c.rank + ' ' + t.join(','));
      await m.finalize();
    })`;
    const auto = await ivrun(['-n', '4', '--vms', '2', 'node', '-e', probe]);
    expect(auto.code).toBe(0);
    expect(auto.stdout).toContain('r0 self,ivcom,ivcom,ivcom');
    expect(auto.stdout).toContain('r3 ivcom,ivcom,ivcom,self');
    const tcp = await ivrun(['-n', '3', '--transport', 'tcp', 'node', '-e', probe]);
    expect(tcp.stdout).toContain('r1 tcp,self,tcp');
    expect(auto.leftovers).toEqual([]);
  });

  it('creates a segment only for pairs that talk, and ivrun keeps no copy of it', async () => {
    const r = await ivrun(['-n', '4', 'node', IVCOM, 'lazy']);
    expect(r.stderr + r.stdout).toContain('OK lazy');
    expect(r.code).toBe(0);
    expect(r.leftovers).toEqual([]);
  });

  it.each([1, 2, 3])('survives a peer scribbling random bytes over a live segment (seed %i)', async (seed) => {
    const r = await ivrun(['-n', '2', 'node', IVCOM, 'scribble'], { env: { SCRIBBLE_SEED: String(seed) } });
    expect(r.stdout + r.stderr).toMatch(/victim saw: ERR_IVCOM_CORRUPT: .*rank 1/);
    expect(r.stdout).toContain('OK scribble');
    expect(r.code).toBe(0);
    expect(r.leftovers).toEqual([]);
  });

  it('delivers payload bytes scribbled in a live ring as data; with --verify they are ERR_IVCOM_CORRUPT naming the peer', async () => {
    const plain = await ivrun(['-n', '2', 'node', IVCOM, 'payload']);
    expect(plain.stdout).toContain('scribbled payload: delivered 1000 bytes, changed');
    expect(plain.code).toBe(0);
    const checked = await ivrun(['-n', '2', '--verify', 'node', IVCOM, 'payload']);
    expect(checked.stdout).toMatch(/scribbled payload: ERR_IVCOM_CORRUPT: rank 0: a 1000-byte message \(tag 3\) from rank 1 failed its end-to-end checksum/);
    expect(checked.stdout).toContain('OK payload');
    expect(checked.code).toBe(0);
    expect([...plain.leftovers, ...checked.leftovers]).toEqual([]);
    // A value that is neither on nor off is refused, never guessed.
    const bad = await ivrun(['-n', '1', 'node', IVCOM, 'payload'], { env: { IVCOM_VERIFY: 'yes' } });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("IVCOM_VERIFY must be 1 or 0, got 'yes'");
  });

  it.each([
    ['single copy', []],
    ['streamed through the ring', ['--single-copy', 'off']],
    ['over tcp', ['--transport', 'tcp']],
  ])('--verify checks a large message (%s) against the checksum announced at send()', async (_how, args) => {
    const plain = await ivrun(['-n', '2', ...args, 'node', IVCOM, 'tamper']);
    expect(plain.stdout).toContain('tampered large message: delivered 1048576 bytes, changed');
    // IVCOM_VERIFY=1 in ivrun's environment is the same as --verify.
    const checked = await ivrun(['-n', '2', ...args, 'node', IVCOM, 'tamper'], { env: { IVCOM_VERIFY: '1' } });
    expect(checked.stdout).toMatch(/tampered large message: ERR_IVCOM_CORRUPT: rank 0: a 1048576-byte message \(tag 3\) from rank 1 failed its end-to-end checksum/);
    expect(checked.stderr).not.toContain('IvcomWarning');
    for (const r of [plain, checked]) {
      expect(r.stdout).toContain('OK tamper');
      expect(r.code).toBe(0);
      expect(r.leftovers).toEqual([]);
    }
  });

  it('carries a 1 GiB message through a 1 MiB ring, checksummed both ways', async () => {
    const r = await ivrun(['-n', '2', '--transport', 'ivcom', '--ring-bytes', String(1 << 20), 'node', P2P, 'big'], {
      env: { BIG_MIB: '1024' },
      timeoutMs: 120_000,
    });
    expect(r.stderr + r.stdout).toContain('OK big size=2 transport=ivcom');
    expect(r.code).toBe(0);
    expect(r.leftovers).toEqual([]);
  }, 150_000);

  // The --ring-bytes limits: the largest ring's second direction lies above 2^31 bytes into the
  // segment (a signed word index there once failed every job).
  it.each([
    [1 << 30, 3],
    [4096, 20],
  ])('laps both rings of --ring-bytes %i %i times, every message compared', async (ringBytes, laps) => {
    const r = await ivrun(
      ['-n', '2', '--transport', 'ivcom', '--single-copy', 'off', '--ring-bytes', String(ringBytes), 'node', IVCOM, 'laps'],
      { env: { RING_BYTES: String(ringBytes), LAPS: String(laps) }, timeoutMs: 120_000 },
    );
    expect(r.stderr + r.stdout).toContain('OK laps');
    expect(r.code).toBe(0);
    expect(r.leftovers).toEqual([]);
  }, 150_000);

  it('leaves no segment, fd or process when a rank is SIGKILLed mid-job', async () => {
    const r = await ivrun(['-n', '4', '--vms', '2', 'node', P2P, 'ring'], {
      env: { RING_ROUNDS: '1000000' },
      onStdout: () => {},
      onSpawn: () => {
        setTimeout(() => {
          // ranks are busy passing tokens over ivcom: kill one outright
          import('../helpers/job.js').then(({ ranksRunning, signalIfAlive }) => {
            const victim = ranksRunning(`${P2P}\0ring`).sort((a, b) => a - b)[2];
            if (victim) signalIfAlive(victim, 'SIGKILL');
          });
        }, 2000);
      },
    });
    expect(r.code).toBe(137);
    expect(r.stderr).toMatch(/killed by signal SIGKILL/);
    expect(r.leftovers).toEqual([]);
  });
});
