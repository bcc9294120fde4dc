// A flood of refused TCP connections costs a bounded number of stderr lines, and the counts
// per reason are still all said.

import { afterEach, describe, expect, it, vi } from 'vitest';
import { FULL_LINES_PER_REASON, RefusalLog, SUMMARY_INTERVAL_MS } from '../../transport/tcp/refusals.js';

describe('RefusalLog', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('shows the first few of each reason in full, then counts and summarises every interval and at close', () => {
    vi.useFakeTimers();
    const lines: string[] = [];
    const log = new RefusalLog(3, (l) => lines.push(l));
    for (let i = 0; i < 500; i++) log.refused('not ivcom', `10.0.0.1:${i}`, 'not an ivcom connection (bad magic)');
    for (let i = 0; i < 7; i++) log.refused('bad proof', '10.0.0.2:1', 'connection claiming rank 0 failed to prove it knows the job secret');
    expect(lines).toHaveLength(2 * FULL_LINES_PER_REASON);
    expect(lines[0]).toBe('ivcom: rank 3 refused a TCP connection from 10.0.0.1:0: not an ivcom connection (bad magic)');
    expect(lines[FULL_LINES_PER_REASON - 1]).toMatch(/further 'not ivcom' refusals are counted, summarised every 10 s/);

    vi.advanceTimersByTime(SUMMARY_INTERVAL_MS);
    expect(lines).toHaveLength(2 * FULL_LINES_PER_REASON + 1);
    expect(lines.at(-1)).toBe(`ivcom: rank 3 refused ${500 - FULL_LINES_PER_REASON + 7 - FULL_LINES_PER_REASON} more TCP connections in the last 10 s: 498 not ivcom, 5 bad proof`);

    // A quiet interval says nothing; a new burst is summarised at close, then the totals.
    vi.advanceTimersByTime(5 * SUMMARY_INTERVAL_MS);
    expect(lines).toHaveLength(2 * FULL_LINES_PER_REASON + 1);
    for (let i = 0; i < 10; i++) log.refused('idle', '10.0.0.3:1', 'handshake timed out after 10000 ms');
    log.close();
    expect(lines.slice(-3)).toEqual([
      'ivcom: rank 3 refused a TCP connection from 10.0.0.3:1: handshake timed out after 10000 ms (further \'idle\' refusals are counted, summarised every 10 s)',
      'ivcom: rank 3 refused 8 more TCP connections since the last summary: 8 idle',
      'ivcom: rank 3 refused 517 TCP connections in all: 500 not ivcom, 10 idle, 7 bad proof',
    ]);
    expect(log.count).toBe(517);
    // Closed: nothing more is said, no timer is left.
    log.refused('idle', 'x', 'y');
    vi.advanceTimersByTime(10 * SUMMARY_INTERVAL_MS);
    expect(lines).toHaveLength(2 * FULL_LINES_PER_REASON + 1 + 4);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('a few refusals are each said once, with no summary', () => {
    vi.useFakeTimers();
    const lines: string[] = [];
    const log = new RefusalLog(0, (l) => lines.push(l));
    log.refused('wrong rank', 'a:1', 'connection meant for rank 2 reached rank 0');
    log.close();
    vi.advanceTimersByTime(SUMMARY_INTERVAL_MS);
    expect(lines).toEqual(['ivcom: rank 0 refused a TCP connection from a:1: connection meant for rank 2 reached rank 0']);
  });
});
