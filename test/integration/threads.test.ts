// ivrun --ranks-as threads: each domain's ranks run as worker threads of one process (the thread
// host). The same supervision as a process per rank: every collective correct, failures end the
// job by rank, signals reach the ranks, nothing outlives the job.

import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { fixture, IVRUN, ivrun, signalLater } from '../helpers/job.js';

const P2P = fixture('p2p.js');
const COLL = fixture('collectives.js');
const TRANSPORTS = (process.env.IVCOM_TEST_TRANSPORTS ?? 'ivcom,tcp').split(',');
const THREADS = ['--ranks-as', 'threads', '--timeout', '45'];

/** rank → [pid, thread id] from the 'where' scenario's lines. */
function placement(stdout: string): Map<number, [number, number]> {
  const m = new Map<number, [number, number]>();
  for (const [, r, pid, t] of stdout.matchAll(/^where (\d+) pid (\d+) thread (\d+)$/gm)) m.set(Number(r), [Number(pid), Number(t)]);
  return m;
}

describe.each(TRANSPORTS)('--ranks-as threads over %s', (transport) => {
  it('runs a host\'s ranks as threads of one process, each a rank of its own', async () => {
    const r = await ivrun([...THREADS, '-n', '4', '--oversubscribe', '--transport', transport, 'node', P2P, 'where']);
    expect({ code: r.code, stderr: r.stderr.slice(-2000) }).toEqual({ code: 0, stderr: expect.any(String) });
    const at = placement(r.stdout);
    expect([...at.keys()].sort()).toEqual([0, 1, 2, 3]);
    expect(new Set([...at.values()].map(([pid]) => pid)).size).toBe(1);
    expect(new Set([...at.values()].map(([, t]) => t)).size).toBe(4);
    expect([...at.values()].every(([, t]) => t > 0)).toBe(true);
    expect(r.leftovers).toEqual([]);
  });

  it('runs every collective and op correctly with 4 ranks as threads', async () => {
    const r = await ivrun([...THREADS, '-n', '4', '--oversubscribe', '--transport', transport, 'node', COLL, 'all']);
    expect({ code: r.code, stderr: r.stderr.slice(-3000) }).toEqual({ code: 0, stderr: expect.any(String) });
    expect(r.stdout).toContain('OK all size=4');
    expect(r.leftovers).toEqual([]);
  });
});

describe('--ranks-as threads', () => {
  it('makes one process per domain with --vms', async () => {
    const r = await ivrun([...THREADS, '-n', '5', '--vms', '2', '--oversubscribe', 'node', P2P, 'where']);
    expect({ code: r.code, stderr: r.stderr.slice(-2000) }).toEqual({ code: 0, stderr: expect.any(String) });
    const at = placement(r.stdout);
    expect(at.size).toBe(5);
    // Blocks of consecutive ranks: 0-2 in one domain, 3-4 in the other.
    expect(at.get(0)![0]).toBe(at.get(2)![0]);
    expect(at.get(3)![0]).toBe(at.get(4)![0]);
    expect(at.get(0)![0]).not.toBe(at.get(3)![0]);
    expect(r.leftovers).toEqual([]);
  });

  it('runs the point-to-point order scenario and keeps output lines whole and per rank', async () => {
    const order = await ivrun([...THREADS, '-n', '2', 'node', P2P, 'order']);
    expect({ code: order.code, stderr: order.stderr.slice(-2000) }).toEqual({ code: 0, stderr: expect.any(String) });
    expect(order.stdout).toContain('OK order size=2');
    const lines = await ivrun([...THREADS, '-n', '3', '--oversubscribe', '--tag-output', 'node', P2P, 'lines']);
    expect(lines.code).toBe(0);
    const got = lines.stdout.split('\n').filter((l) => l.includes(' line '));
    expect(got).toHaveLength(900);
    for (const l of got) expect(l).toMatch(/^\[(\d)\] line \1 \d+ x{200} end$/);
  });

  it('ends the job when a rank throws, naming the rank, with its stack printed once', async () => {
    const r = await ivrun([...THREADS, '-n', '4', '--oversubscribe', 'node', P2P, 'throws']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/ivrun: rank 3 aborted the job: uncaught Error: deliberate failure in the test/);
    expect(r.stderr.match(/^Error: deliberate failure in the test$/gm)).toHaveLength(1);
    expect(r.stderr).toMatch(/^    at throws \(.*p2p\.js:\d+:\d+\)$/m);
    expect(r.stderr).not.toMatch(/FATAL ERROR/);
    expect(r.leftovers).toEqual([]);
  });

  // A rank's worker that ends while its peer still rings its doorbell: the wake-up that comes
  // during the worker's teardown must not take the whole process down (it was a fatal error in
  // the addon, with the ranks' report cut off by a native stack).
  it('ends a rank cleanly while its peer still rings its doorbell', async () => {
    for (let i = 0; i < 3; i++) {
      const r = await ivrun([...THREADS, '-n', '2', 'node', P2P, 'diesringing']);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/ivrun: rank 1 aborted the job: uncaught Error: deliberate failure while its peer sends/);
      expect(r.stderr).not.toMatch(/FATAL ERROR/);
      expect(r.leftovers).toEqual([]);
    }
  });

  // The others are inside a large allreduce, copying from the dying rank's memory in the same process.
  it.each([
    ['throws', 'throw', 1, /ivrun: rank 2 aborted the job: uncaught Error: deliberate failure inside a collective on rank 2/],
    ['exits with code 3', 'exit', 3, /ivrun: rank 2 exited with code 3/],
  ] as const)('ends the job when a rank %s inside a collective the other threads are in', async (_what, how, code, named) => {
    const r = await ivrun([...THREADS, '-n', '4', '--oversubscribe', 'node', COLL, 'dies', how, '2'], { timeoutMs: 55_000 });
    expect({ stdout: r.stdout, code: r.code, stderr: r.stderr.slice(-3000) }).toMatchObject({ stdout: expect.stringContaining(`rank 2 dies now (${how})`) });
    expect(r.stderr).toMatch(named);
    expect(r.stderr).not.toMatch(/FATAL ERROR/);
    expect(r.code).toBe(code);
    expect(r.leftovers).toEqual([]);
  });

  it("exits with a rank's non-zero status and names that rank", async () => {
    const r = await ivrun([...THREADS, '-n', '3', '--oversubscribe', 'node', P2P, 'exit3']);
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/ivrun: rank 1 exited with code 3/);
    expect(r.leftovers).toEqual([]);
  });

  it('passes SIGTERM on and leaves nothing behind', async () => {
    const r = await ivrun([...THREADS, '-n', '3', '--oversubscribe', 'node', P2P, 'hang'], {
      onSpawn: (pid) => signalLater(pid, 'SIGTERM', 1500),
    });
    expect(r.code).toBe(143);
    expect(r.leftovers).toEqual([]);
  });

  it('leaves nothing behind when ivrun itself is SIGKILLed', async () => {
    // Once, when every rank has joined (stdout comes in chunks; one kill per chunk used to be sent).
    let seen = '';
    let killed = false;
    const r = await ivrun([...THREADS, '-n', '3', '--oversubscribe', 'node', P2P, 'joined'], {
      onStdout: (text, pid) => {
        seen += text;
        if (killed || (seen.match(/joined \d/g) ?? []).length < 3) return;
        killed = true;
        signalLater(pid, 'SIGKILL', 300);
      },
    });
    expect(r.signal).toBe('SIGKILL');
    expect(r.leftovers).toEqual([]);
  });

  it("still refuses init() in a worker the program starts", async () => {
    const r = await ivrun([...THREADS, '-n', '2', 'node', P2P, 'nested']);
    expect({ code: r.code, stderr: r.stderr.slice(-2000) }).toEqual({ code: 0, stderr: expect.any(String) });
    expect(r.stdout).toContain('OK nested size=2');
  });

  it('refuses what it cannot run as threads, with status 2', () => {
    const run = (...a: string[]) => spawnSync(process.execPath, [IVRUN, '--ranks-as', 'threads', ...a], { encoding: 'utf8' });
    const evalCode = run('-n', '2', 'node', '-e', '1');
    expect(evalCode.status).toBe(2);
    expect(evalCode.stderr).toMatch(/--ranks-as threads needs a script file .* node -e has none/);
    const notNode = run('-n', '2', 'python3', 'x.py');
    expect(notNode.status).toBe(2);
    expect(notNode.stderr).toMatch(/the command must be 'node \[options\] script\.js \[args\]', not 'python3'/);
    const bound = run('-n', '2', '--bind-to', 'core', 'node', P2P);
    expect(bound.status).toBe(2);
    expect(bound.stderr).toMatch(/use --bind-to none/);
    expect(run('--ranks-as', 'fibers', 'node', P2P).status).toBe(2);
  });
});
