import { describe, expect, it } from 'vitest';
import { ANY, type Envelope, type Request } from '../../runtime/match.js';
import { describeWaits } from '../../runtime/report.js';

const req = (source: number, tag: number) => ({ source, tag }) as Request;
const env = (source: number, tag: number) => ({ source, tag }) as Envelope;

describe("a rank's report of what it waits for", () => {
  it('names collectives, receives, probes, large and queued sends, and what arrived unasked', () => {
    const lines = describeWaits({
      rank: 3,
      collectives: [{ ctx: 0, kind: 'bcast', seq: 7, root: 2, base: 0 }],
      contexts: [
        [0, { posted: [req(1, 5), req(ANY, ANY)], probes: [req(2, 9)], unexpected: [env(1, 6), env(1, 6), env(4, 5)] }],
        [1, { posted: [req(2, 128)], probes: [], unexpected: [] }],
        [4, { posted: [req(0, 1)], probes: [], unexpected: [] }],
      ],
      largeSends: [{ dest: 0, ctx: 0, tag: 2, bytes: 4194304 }],
      queuedSends: 2,
    });
    expect(lines).toEqual([
      'rank 3: inside bcast #7 on world (root 2)',
      'rank 3: receive from rank 1, tag 5 on world',
      'rank 3: receive from any source, any tag on world',
      'rank 3: probe for rank 2, tag 9 on world',
      'rank 3: receive from rank 2, tag 128 on world, for its collective',
      'rank 3: receive from rank 0, tag 1 on communicator 4',
      'rank 3: send of 4194304 bytes to rank 0, tag 2 on world: announced, not yet received there',
      'rank 3: 2 sends waiting for space in a ring or socket',
      'rank 3: 2 messages arrived and not received: from rank 1, tag 6 on world',
      'rank 3: 1 message arrived and not received: from rank 4, tag 5 on world',
    ]);
  });

  it('says so when nothing is pending, and bounds long lists', () => {
    expect(describeWaits({ rank: 0, collectives: [], contexts: [], largeSends: [], queuedSends: 0 })).toEqual([
      'rank 0: not waiting for any message (busy elsewhere, or done)',
    ]);
    const many = Array.from({ length: 50 }, (_, i) => req(1, i));
    const lines = describeWaits({ rank: 0, collectives: [], contexts: [[0, { posted: many, probes: [], unexpected: [] }]], largeSends: [], queuedSends: 0 });
    expect(lines).toHaveLength(9);
    expect(lines[8]).toBe('rank 0: and 42 more receives');
  });
});
