// Hostile TCP clients against a real job: garbage, huge length prefixes, bad proofs, impossible
// ranks, idle and cut-off handshakes, hundreds of connections. Nothing they send is delivered,
// the job ends well, the rank's stderr stays a few lines with the counts per reason, and the
// rank's fds are back to what it held before.

import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { PREFIX_BYTES } from '../../transport/tcp/framing.js';
import { HELLO_BYTES, MAGIC } from '../../transport/tcp/handshake.js';
import { FULL_LINES_PER_REASON, SUMMARY_INTERVAL_MS } from '../../transport/tcp/refusals.js';
import { fixture, ivrun } from '../helpers/job.js';

/** Connections of each kind but the idle ones (those each hold the rank for its handshake timeout). */
const EACH = 50;
const IDLE = 20;
/** Connections open at once, so the client stays well inside its own fd limit. */
const AT_ONCE = 25;
/** The kinds of hostile connection `attack` makes EACH of. */
const KINDS = 7;

function hello(from: number, to: number): Buffer {
  const b = Buffer.alloc(HELLO_BYTES);
  b.writeUInt32LE(MAGIC, 0);
  b.writeUInt32LE(from, 4);
  b.writeUInt32LE(to, 8);
  randomBytes(32).copy(b, 12);
  return b;
}

/** One connection: sends `first`, answers the server's challenge with `reply`, returns once closed. */
function stranger(host: string, port: number, first?: Buffer, reply?: Buffer, end = false): Promise<void> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port }, () => {
      if (first !== undefined) s.write(first);
      if (end) s.end();
    });
    s.on('data', () => {
      if (reply !== undefined) s.write(reply);
    });
    s.on('error', () => {});
    s.on('close', () => resolve());
  });
}

async function attack(host: string, port: number): Promise<number> {
  const huge = () => {
    // A frame that says it carries 4 GiB, and the start of it, with no handshake before it.
    const p = Buffer.alloc(PREFIX_BYTES + HELLO_BYTES);
    p.writeUInt32LE(0xffffffff, 0);
    return p;
  };
  const kinds: Array<() => Promise<void>> = [
    () => stranger(host, port, randomBytes(64)),
    () => stranger(host, port, huge()),
    () => stranger(host, port, hello(0, 1), Buffer.concat([randomBytes(32), huge()])),
    () => stranger(host, port, hello(99_999, 1)),
    () => stranger(host, port, hello(1, 1)),
    () => stranger(host, port, hello(0, 7)),
    () => stranger(host, port, hello(0, 1).subarray(0, 10), undefined, true),
  ];
  const idle = Array.from({ length: IDLE }, () => stranger(host, port));
  const jobs = kinds.flatMap((k) => Array.from({ length: EACH }, () => k));
  for (let i = 0; i < jobs.length; i += AT_ONCE) await Promise.all(jobs.slice(i, i + AT_ONCE).map((j) => j()));
  await Promise.all(idle);
  return jobs.length + idle.length;
}

describe('hostile TCP clients', () => {
  it('deliver nothing, flood nothing, leak no fd, and the job ends well', async () => {
    const total = KINDS * EACH + IDLE;
    let attacked: Promise<number> | undefined;
    const r = await ivrun(['-n', '2', '--transport', 'tcp', '--timeout', '60', 'node', fixture('strangers.js'), String(total)], {
      timeoutMs: 90_000,
      onStdout: (t) => {
        const m = /LISTENING (\S+) (\d+)/.exec(t);
        if (m !== null && attacked === undefined) attacked = attack(m[1]!, Number(m[2]));
      },
    });
    expect(await attacked).toBe(total);
    expect(r.stdout).toContain('OK strangers');
    expect(r.code).toBe(0);
    expect(r.leftovers).toEqual([]);
    const m = /REFUSED (\d+) FDS (\d+) (\d+)/.exec(r.stdout);
    expect(m).not.toBeNull();
    expect(Number(m![1])).toBe(total);
    expect(Number(m![3])).toBe(Number(m![2]));
    // Bounded output: a few full lines per reason, one summary (at close), the totals.
    const lines = r.stderr.split('\n').filter((l) => l.includes('refused'));
    const full = lines.filter((l) => l.includes('refused a TCP connection'));
    expect(full.length).toBeLessThanOrEqual(KINDS * FULL_LINES_PER_REASON);
    // Summaries: one per interval the job ran at most, the last one, and the totals.
    expect(lines.length - full.length).toBeLessThanOrEqual(Math.ceil(r.ms / SUMMARY_INTERVAL_MS) + 2);
    const all = lines.find((l) => l.includes('TCP connections in all'));
    expect(all).toBeDefined();
    expect(all).toContain(`rank 1 refused ${total} TCP connections in all: `);
    for (const [n, reason] of [
      [2 * EACH, 'not ivcom'],
      [2 * EACH, 'impossible rank'],
      [EACH, 'bad proof'],
      [EACH, 'wrong rank'],
      [EACH, 'closed early'],
      [IDLE, 'idle'],
    ] as const) {
      expect(all).toContain(`${n} ${reason}`);
    }
  });
});
