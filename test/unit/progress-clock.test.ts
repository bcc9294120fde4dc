import os from 'node:os';
import { performance } from 'node:perf_hooks';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { Progress, Waited } from '../../runtime/progress.js';
import type { Transport } from '../../transport/transport.js';

/** A memory transport that only counts its polls; `moves` says when one delivers something. */
function countingTransport(moves: (poll: number) => number): { tr: Transport; polls: () => number } {
  let polls = 0;
  const tr = { poll: () => moves(++polls), idle: () => {}, relax: () => true } as unknown as Transport;
  return { tr, polls: () => polls };
}

describe('a spin reads the clock only once it lasts', () => {
  const made: Progress[] = [];
  afterEach(() => {
    vi.restoreAllMocks();
    for (const p of made.splice(0)) p.close();
    delete process.env.IVCOM_SPIN_US;
  });

  it('a wait that ends within its first polls (a ping-pong reply) never reads it', () => {
    const { tr, polls } = countingTransport(() => 0);
    const p = new Progress(0, [tr], 1);
    made.push(p);
    const now = vi.spyOn(performance, 'now');
    expect(p.waitFor(() => polls() >= 20)).toBe(Waited.Ready);
    expect(polls()).toBe(20);
    expect(now).not.toHaveBeenCalled();
  });

  it('a wait that lasts starts its budget at its first reading and ends when it is spent', () => {
    process.env.IVCOM_SPIN_US = '2000';
    const { tr, polls } = countingTransport(() => 0);
    const p = new Progress(0, [tr], 1);
    made.push(p);
    const now = vi.spyOn(performance, 'now');
    const t0 = Date.now();
    expect(p.waitFor(() => false)).toBe(Waited.Spent);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(2);
    expect(now.mock.calls.length).toBeGreaterThan(1);
    expect(polls()).toBeGreaterThan(128);
  });

  it('a wait that yields between polls (ranks outnumber cores) starts its budget at once', () => {
    const { tr, polls } = countingTransport(() => 0);
    const p = new Progress(0, [tr], 4 * os.availableParallelism());
    made.push(p);
    const now = vi.spyOn(performance, 'now');
    expect(p.waitFor(() => polls() >= 3)).toBe(Waited.Ready);
    expect(now).toHaveBeenCalledTimes(1);
  });

  it('a wait that moves something ends at once, still without the clock', () => {
    const { tr } = countingTransport((n) => (n === 5 ? 1 : 0));
    const p = new Progress(0, [tr], 1);
    made.push(p);
    const now = vi.spyOn(performance, 'now');
    expect(p.waitFor(() => false)).toBe(Waited.Moved);
    expect(now).not.toHaveBeenCalled();
  });
});
