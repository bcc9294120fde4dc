import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { AGREE, RunQueue } from '../../runtime/run-queue.js';

const dir = mkdtempSync(join(tmpdir(), 'ivcom-rq-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const MS10 = 10_000_000n;

describe('run-queue pressure', () => {
  it(`turns on after ${AGREE} samples in a row with more runnable threads than cores, and off the same way`, () => {
    const f = join(dir, 'loadavg');
    const runnable = (n: number) => writeFileSync(f, `0.96 1.95 2.08 ${n}/85 15755\n`);
    runnable(5);
    const rq = new RunQueue(2, f);
    let t = 1n;
    expect(rq.pressure(t)).toBe(false); // one sample is one instant
    expect(rq.pressure(t + 1n)).toBe(false); // not re-read within the sampling period
    for (let i = 2; i < AGREE; i++) expect(rq.pressure((t += MS10))).toBe(false);
    expect(rq.pressure((t += MS10))).toBe(true);
    runnable(2);
    for (let i = 1; i < AGREE; i++) expect(rq.pressure((t += MS10))).toBe(true);
    expect(rq.pressure((t += MS10))).toBe(false);
    // A burst shorter than AGREE samples (a scavenge's helpers, a short process) changes nothing:
    // a sample that agrees with the verdict resets the count.
    for (let burst = 0; burst < 3; burst++) {
      runnable(12);
      for (let i = 1; i < AGREE; i++) expect(rq.pressure((t += MS10))).toBe(false);
      runnable(1);
      expect(rq.pressure((t += MS10))).toBe(false);
    }
    rq.close();
  });

  it('never reports pressure from an unreadable or malformed count', () => {
    const f = join(dir, 'bad');
    writeFileSync(f, 'garbage without the field\n');
    const rq = new RunQueue(1, f);
    for (let i = 1n; i < 5n; i++) expect(rq.pressure(i * MS10)).toBe(false);
    rq.close();
    const none = new RunQueue(1, join(dir, 'missing'));
    expect(none.pressure(MS10)).toBe(false);
    expect(none.pressure(3n * MS10)).toBe(false);
  });

  it('reads the real /proc/loadavg of this machine', () => {
    const rq = new RunQueue();
    expect(typeof rq.pressure(1n)).toBe('boolean');
    rq.close();
  });
});
