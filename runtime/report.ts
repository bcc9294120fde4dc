// What a rank is waiting for, in words: the collectives it is inside, the receives and probes it
// has posted, the large sends its peers have not taken, and the messages that arrived and that
// nothing has asked for (a tag or source off by one shows up here). ivrun asks every rank for
// this on --timeout and on SIGUSR1, so a hung job says where it hangs.

import { ANY, type Envelope, type Request } from './match.js';

/** A collective call in progress on one communicator. */
export interface ActiveCollective {
  /** The communicator's point-to-point context (its collectives run on ctx + 1). */
  ctx: number;
  kind: string;
  /** Its number among the collectives of that communicator, from 1. */
  seq: number;
  root?: number;
  /** Its tag base (signature.ts): what its messages carry. */
  base: number;
}

export interface WaitState {
  rank: number;
  collectives: Iterable<ActiveCollective>;
  /** Per context: posted receives, blocking probes, arrived but unreceived messages. */
  contexts: Iterable<[number, { posted: Request[]; probes: Request[]; unexpected: Envelope[] }]>;
  /** Large sends announced and not yet taken by their receiver. */
  largeSends: Iterable<{ dest: number; ctx: number; tag: number; bytes: number }>;
  /** Sends waiting for ring or socket space. */
  queuedSends: number;
}

/** Lines a user can act on; at most this many of each kind, then a count of the rest. */
const MAX_LINES_PER_KIND = 8;

/** Communicators are named by their context: ctx 0 is the world, its collectives ctx 1. */
function commName(ctx: number): string {
  const base = ctx & ~1;
  return base === 0 ? 'world' : `communicator ${base}`;
}

const who = (r: number) => (r === ANY ? 'any source' : `rank ${r}`);
const tagOf = (t: number) => (t === ANY ? 'any tag' : `tag ${t}`);

function bounded<T>(items: T[], line: (x: T) => string, rest: (n: number) => string): string[] {
  const out = items.slice(0, MAX_LINES_PER_KIND).map(line);
  if (items.length > MAX_LINES_PER_KIND) out.push(rest(items.length - MAX_LINES_PER_KIND));
  return out;
}

export function describeWaits(s: WaitState): string[] {
  const lines: string[] = [];
  const colls = [...s.collectives];
  lines.push(
    ...bounded(
      colls,
      (c) => `inside ${c.kind} #${c.seq} on ${commName(c.ctx)}${c.root !== undefined ? ` (root ${c.root})` : ''}`,
      (n) => `and ${n} more collectives`,
    ),
  );
  const recvs: string[] = [];
  const arrived: string[] = [];
  for (const [ctx, m] of s.contexts) {
    // Receives on a collective context belong to the collective named above.
    const where = ctx & 1 ? `on ${commName(ctx)}, for its collective` : `on ${commName(ctx)}`;
    for (const r of m.posted) recvs.push(`receive from ${who(r.source)}, ${tagOf(r.tag)} ${where}`);
    for (const r of m.probes) recvs.push(`probe for ${who(r.source)}, ${tagOf(r.tag)} ${where}`);
    const counts = new Map<string, number>();
    for (const e of m.unexpected) {
      const k = `from rank ${e.source}, tag ${e.tag} ${where}`;
      counts.set(k, (counts.get(k) ?? 0) + 1);
    }
    for (const [k, n] of counts) arrived.push(`${n} message${n > 1 ? 's' : ''} arrived and not received: ${k}`);
  }
  lines.push(...bounded(recvs, (x) => x, (n) => `and ${n} more receives`));
  lines.push(
    ...bounded(
      [...s.largeSends],
      (x) => `send of ${x.bytes} bytes to rank ${x.dest}, tag ${x.tag} on ${commName(x.ctx)}: announced, not yet received there`,
      (n) => `and ${n} more large sends`,
    ),
  );
  if (s.queuedSends > 0) lines.push(`${s.queuedSends} send${s.queuedSends > 1 ? 's' : ''} waiting for space in a ring or socket`);
  lines.push(...bounded(arrived, (x) => x, (n) => `and ${n} more kinds of unreceived messages`));
  if (lines.length === 0) lines.push('not waiting for any message (busy elsewhere, or done)');
  return lines.map((l) => `rank ${s.rank}: ${l}`);
}
