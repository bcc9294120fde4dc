import { describe, expect, it } from 'vitest';
import { ringMemoryWarning, worstRingMemory } from '../../launcher/ring-memory.js';
import { MAX_RING_BYTES, segmentBytes } from '../../transport/ivcom/layout.js';

describe('ring memory warning', () => {
  it('counts one segment per pair of ranks on a host', () => {
    expect(worstRingMemory(1, MAX_RING_BYTES)).toBe(0);
    expect(worstRingMemory(2, MAX_RING_BYTES)).toBe(segmentBytes(MAX_RING_BYTES));
    expect(worstRingMemory(4, 4096)).toBe(6 * segmentBytes(4096));
  });

  it('warns only when every pair filling its rings would outgrow the host, naming the way out', () => {
    const GiB = 2 ** 30;
    expect(ringMemoryWarning('h', 2, MAX_RING_BYTES, 24 * GiB)).toBeUndefined();
    const w = ringMemoryWarning('h', 12, MAX_RING_BYTES, 24 * GiB);
    expect(w).toMatch(/^ivrun: warning: --ring-bytes 1073741824 .* on h .* all 12 ranks .* 132\.0 GiB, more than its 24\.0 GiB/);
    expect(w).toContain('give a smaller --ring-bytes');
    // Small rings, many ranks: sizes in the unit that reads (not "a 0.0 GiB segment").
    expect(ringMemoryWarning('h', 3000, 4096, 24 * GiB)).toMatch(/a 12\.0 KiB segment; .* that is 51\.5 GiB, more than its 24\.0 GiB/);
  });
});
