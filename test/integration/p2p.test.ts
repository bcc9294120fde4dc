// Point-to-point through real ranks started by ivrun, on every transport.

import { describe, expect, it } from 'vitest';
import { fixture, ivrun } from '../helpers/job.js';

const P2P = fixture('p2p.js');
export const TRANSPORTS = (process.env.IVCOM_TEST_TRANSPORTS ?? 'ivcom,tcp').split(',');

async function scenario(name: string, n: number, transport: string, extra: string[] = []) {
  // ivrun's own --timeout names the ranks still running if a job ever hangs.
  const r = await ivrun(['-n', String(n), '--transport', transport, '--timeout', '40', ...extra, 'node', P2P, name]);
  expect(r.stderr + r.stdout).toContain(`OK ${name}`);
  expect(r.code).toBe(0);
  expect(r.leftovers).toEqual([]);
  return r;
}

describe.each(TRANSPORTS)('point to point over %s', (transport) => {
  it('keeps per-tag order under interleaved tags and receive orders', () => scenario('order', 2, transport));
  it('fans in with ANY_SOURCE, each sender in order', () => scenario('fanin', 5, transport));
  it("lets the program's timers run while it awaits one message after another", () => scenario('fair', 2, transport));
  it('delivers every kind of value intact', () => scenario('fidelity', 2, transport));
  it('carries plain objects as records of announced shapes: more shapes than a table, out of order, large, to self, broadcast', () => scenario('shapes', 3, transport));
  it('carries a 64 MiB message both ways (checksummed)', () => scenario('big', 2, transport));
  it('truncates into a small buffer with ERR_IVCOM_TRUNCATE and consumes the message', () => scenario('truncate', 2, transport));
  it('receives large messages straight into posted buffers, wildcards and truncation intact', () => scenario('into', 2, transport));
  it('stages large unexpected messages in reused memory without mixing them up', () => scenario('staged', 2, transport));
  it('keeps a stalled receiver small: 2 GiB of large messages wait at the sender, none lost', async () => {
    const r = await scenario('stalled', 2, transport);
    expect(r.stdout).toMatch(/receiver RSS while stalled: \d+ MB/);
  });
  it('carries large messages every byte intact, the pair sharing the copy over ivcom (also with --verify)', async () => {
    for (const extra of [[], ['--verify']]) {
      const r = await scenario('shared', 2, transport, extra);
      const lines = [...r.stdout.matchAll(/rank (\d): (\d+) copies shared, (\d+) chunks written for the peer/g)];
      if (transport !== 'ivcom') {
        expect(lines).toEqual([]); // no single copy over tcp: nothing to share
        continue;
      }
      expect(lines).toHaveLength(2);
      // Rank 1 receives the serial and posted messages: it shares copies, and rank 0 helps with them.
      const [shared1, helped0] = [lines.find((l) => l[1] === '1')![2], lines.find((l) => l[1] === '0')![3]];
      expect(Number(shared1)).toBeGreaterThan(0);
      expect(Number(helped0)).toBeGreaterThan(0);
    }
  });
  it('interleaves eager and large messages with wildcards, probes, an aborted receive and truncation', () => scenario('rndvmix', 3, transport));
  it('interleaves them the same with single copy off (large messages streamed on request)', () => scenario('rndvmix', 3, transport, ['--single-copy', 'off']));
  it('rejects a large send to a rank that finalizes without receiving it, naming that rank', () => scenario('unmatched', 2, transport));
  it('rejects an aborted receive, which then matches nothing', () => scenario('abortrecv', 2, transport));
  it('probes without consuming', () => scenario('probe', 2, transport));
  it('PROC_NULL, byteLength, sync send, sendrecvMessage, mprobe/improbe, splitType, free, reduceScatter, MINLOC/MAXLOC', () => scenario('additions', 2, transport));
  it('rejects a receive that only a finished rank could satisfy (ERR_IVCOM_PEER_LOST), before or after it finished', () => scenario('finishedpeer', 2, transport));
  it('refuses at the send what structured clone refuses (ERR_IVCOM_UNSERIALIZABLE), delivering none of it', () => scenario('unserializable', 2, transport));
  it('refuses a message over the one-array limit (ERR_IVCOM_TOO_LARGE) and over the depth limit, then carries the deepest allowed and a sparse array', () => scenario('limits', 2, transport));
  it('rejects every operation after finalize() at once with ERR_IVCOM_STATE naming it', () => scenario('afterfinalize', 2, transport));
  it('wakes a sleeping receive after iprobe looked around meanwhile', () => scenario('probewake', 2, transport));
  it('rejects bad arguments with Node codes', () => scenario('badargs', 2, transport));
  it('passes a token around 8 ranks on 2 cores', () => scenario('ring', 8, transport));
});

describe('job secret', () => {
  it('refuses a stranger who does not know the secret; nothing it sends is delivered', async () => {
    const r = await scenario('stranger', 2, 'tcp');
    expect(r.stderr).toMatch(/rank 1 refused a TCP connection/);
  });
});
