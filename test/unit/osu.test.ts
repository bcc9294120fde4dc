import { describe, expect, it } from 'vitest';
import { osuBlock } from '../../apps/bench/osu.js';

describe('OSU output format', () => {
  it("prints OSU's headers and `%-10d%18.2f` lines", () => {
    expect(osuBlock('latency', 'ivcom, transport ivcom', [[0, 0.21], [4194304, 1234.5]])).toEqual([
      '# OSU MPI Latency Test v7.4',
      '# ivcom, transport ivcom',
      '# Size          Latency (us)',
      '0                       0.21',
      '4194304              1234.50',
    ]);
    expect(osuBlock('bandwidth', 'x', [[1, 3.5]])[2]).toBe('# Size      Bandwidth (MB/s)');
    expect(osuBlock('allreduce', 'x', [[8, 4.456]])).toEqual(['# OSU MPI Allreduce Latency Test v7.4', '# x', '# Size       Avg Latency(us)', '8                       4.46']);
    // osu_barrier has no size column.
    expect(osuBlock('barrier', 'x', [[0, 6.78]]).slice(2)).toEqual(['# Avg Latency(us)', '              6.78']);
  });
});
