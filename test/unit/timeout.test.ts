// --timeout / MPIEXEC_TIMEOUT: values mean what they say, however large; nonsense is refused.

import { afterEach, describe, expect, it, vi } from 'vitest';
import { deadline, MAX_TIMER_MS, parseTimeout } from '../../launcher/timeout.js';

describe('parseTimeout', () => {
  it('reads seconds, fractions and exponents', () => {
    expect(parseTimeout('1', '--timeout')).toBe(1);
    expect(parseTimeout('2.5', '--timeout')).toBe(2.5);
    expect(parseTimeout('3e6', '--timeout')).toBe(3_000_000);
    expect(parseTimeout(' 3000000 ', 'MPIEXEC_TIMEOUT')).toBe(3_000_000);
  });

  it('takes 0, Infinity and their synonyms as no limit (0 as Open MPI does)', () => {
    for (const t of ['0', '0.0', 'Infinity', 'inf', 'none', 'unlimited']) expect(parseTimeout(t, '--timeout')).toBeUndefined();
  });

  it('refuses what is not a number of seconds, naming it and what to write', () => {
    for (const t of ['', 'abc', '-1', '10s', '0x10', 'NaN', '1e999', '-Infinity']) {
      expect(() => parseTimeout(t, '--timeout')).toThrow(/--timeout ".*" is not a number of seconds; give e\.g\. --timeout 600, or 0 \(or Infinity\) for no limit/);
    }
    expect(() => parseTimeout('x', 'MPIEXEC_TIMEOUT')).toThrow(/MPIEXEC_TIMEOUT=600/);
  });
});

describe('deadline', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('waits out a delay longer than setTimeout can hold, in steps, and fires once', () => {
    vi.useFakeTimers();
    const fired = vi.fn();
    const ms = 3_000_000 * 1000; // --timeout 3000000: 34.7 days
    deadline(ms, fired);
    vi.advanceTimersByTime(1);
    expect(fired).not.toHaveBeenCalled();
    vi.advanceTimersByTime(MAX_TIMER_MS);
    expect(fired).not.toHaveBeenCalled();
    vi.advanceTimersByTime(ms - MAX_TIMER_MS - 2);
    expect(fired).not.toHaveBeenCalled();
    vi.advanceTimersByTime(1);
    expect(fired).toHaveBeenCalledTimes(1);
    vi.advanceTimersByTime(10 * MAX_TIMER_MS);
    expect(fired).toHaveBeenCalledTimes(1);
  });

  it('fires a short one on time and never a cancelled one', () => {
    vi.useFakeTimers();
    const a = vi.fn();
    const b = vi.fn();
    deadline(1000, a);
    const cancel = deadline(2 * MAX_TIMER_MS, b);
    vi.advanceTimersByTime(1000);
    expect(a).toHaveBeenCalledTimes(1);
    vi.advanceTimersByTime(MAX_TIMER_MS);
    cancel();
    vi.advanceTimersByTime(2 * MAX_TIMER_MS);
    expect(b).not.toHaveBeenCalled();
  });
});
