import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { MAJORITY, RunQueue, WINDOW } from '../../runtime/run-queue.js';

const dir = mkdtempSync(join(tmpdir(), 'ivcom-rq-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const MS10 = 10;

describe('run-queue pressure', () => {
  it(`follows the majority of the last ${WINDOW} samples: on after ${MAJORITY} over the cores, off the same way`, () => {
    const f = join(dir, 'loadavg');
    const runnable = (n: number) => writeFileSync(f, `0.96 1.95 2.08 ${n}/85 15755\n`);
    runnable(5);
    const rq = new RunQueue(2, f);
    let t = 1;
    expect(rq.pressure(t)).toBe(false); // one sample is one instant
    expect(rq.pressure(t + 1)).toBe(false); // not re-read within the sampling period
    for (let i = 2; i < MAJORITY; i++) expect(rq.pressure((t += MS10))).toBe(false);
    expect(rq.pressure((t += MS10))).toBe(true);
    for (let i = MAJORITY; i < WINDOW; i++) expect(rq.pressure((t += MS10))).toBe(true);
    runnable(2);
    for (let i = 1; i < MAJORITY; i++) expect(rq.pressure((t += MS10))).toBe(true);
    expect(rq.pressure((t += MS10))).toBe(false);
    // Single samples against the verdict (a scavenge's helpers, a compile, a short process)
    // change nothing, whichever way the verdict is.
    for (let burst = 0; burst < 3; burst++) {
      runnable(12);
      expect(rq.pressure((t += MS10))).toBe(false);
      runnable(1);
      for (let i = 0; i < WINDOW; i++) expect(rq.pressure((t += MS10))).toBe(false);
    }
    runnable(4);
    for (let i = 0; i < WINDOW; i++) rq.pressure((t += MS10));
    for (let burst = 0; burst < 3; burst++) {
      runnable(2);
      expect(rq.pressure((t += MS10))).toBe(true);
      runnable(4);
      for (let i = 0; i < WINDOW; i++) expect(rq.pressure((t += MS10))).toBe(true);
    }
    // A crowd that thins out with a straggler sample in it (one of the job's own helper threads
    // waking) still ends the verdict: a rule of samples in a row would restart at the straggler
    // and keep the rank sleeping on its doorbell.
    const seq = [2, 2, 2, 4, 2];
    for (const n of seq) {
      runnable(n);
      expect(rq.pressure((t += MS10))).toBe(true);
    }
    runnable(2);
    expect(rq.pressure((t += MS10))).toBe(false);
    rq.close();
  });

  it('gives its last verdict without sampling (latest), as a spin reads it before the clock', () => {
    const f = join(dir, 'latest');
    writeFileSync(f, '0.96 1.95 2.08 5/85 15755\n');
    const rq = new RunQueue(2, f);
    expect(rq.latest).toBe(false);
    let t = 1;
    for (let i = 0; i < MAJORITY; i++) rq.pressure((t += MS10));
    expect(rq.latest).toBe(true);
    // Only pressure() samples: the file changing leaves the verdict as it was.
    writeFileSync(f, '0.96 1.95 2.08 1/85 15755\n');
    expect(rq.latest).toBe(true);
    rq.close();
  });

  it('never reports pressure from an unreadable or malformed count', () => {
    const f = join(dir, 'bad');
    writeFileSync(f, 'garbage without the field\n');
    const rq = new RunQueue(1, f);
    for (let i = 1; i < 5; i++) expect(rq.pressure(i * MS10)).toBe(false);
    rq.close();
    const none = new RunQueue(1, join(dir, 'missing'));
    expect(none.pressure(MS10)).toBe(false);
    expect(none.pressure(3 * MS10)).toBe(false);
  });

  it('reads the real /proc/loadavg of this machine', () => {
    const rq = new RunQueue();
    expect(typeof rq.pressure(1)).toBe('boolean');
    rq.close();
  });
});
