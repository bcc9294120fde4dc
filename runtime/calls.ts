// The collective calls of this rank, against what arrives for them: every collective message's
// tag names its call (slot, kind, root: collectives/signature.ts), so a message of another call
// at a slot where this rank makes one is a mismatch. The call in progress rejects through its
// receives (those posted, and those it posts later); a call that had already returned (a bcast
// root, a gather sender) ends the job, as any uncaught error does: never a silent success.

import { CollectiveMismatchError } from './errors.js';
import { describeCall, sameCall, slotOf, TAG_SLOTS } from './collectives/signature.js';
import type { IncomingMessage } from '../transport/transport.js';
import type { Envelope, Matcher } from './match.js';
import type { ActiveCollective } from './report.js';

/**
 * Returned calls remembered per collective context for late mismatches, by slot mod this (a
 * power of two): enough for any slot still in flight.
 */
const RETURNED_CALLS_KEPT = 64;

/** One key per (collective context, slot). */
const keyOf = (cctx: number, tag: number) => cctx * TAG_SLOTS + slotOf(tag);

export class CollectiveCalls {
  /** Calls in progress (Comm registers them); also what a rank's report lists. */
  /**
   * An array, not a Set: a Set that goes from one entry to none on every call shrinks its table
   * each time, garbage on every collective.
   */
  readonly active: ActiveCollective[] = [];
  /**
   * The last calls that returned, per collective context, at their slot mod RETURNED_CALLS_KEPT:
   * a call overwrites the one RETURNED_CALLS_KEPT slots before it, in place: no table grows or
   * rehashes per call.
   */
  private readonly returned = new Map<number, Array<ActiveCollective | undefined>>();
  /** Calls that met another call's message: what they post from now on rejects at once. */
  private readonly broken = new Map<number, Error>();
  /**
   * Calls that met another call's message while nothing of theirs was waiting to be told (no
   * receive posted: between steps, or done receiving but not yet returned), with that message.
   * If such a call then returns a value, the mismatch ends the job, as for a call that had returned.
   */
  private readonly untold = new Map<ActiveCollective, Envelope | IncomingMessage>();

  constructor(
    private readonly rank: number,
    /** The matching state of a context, if it has any. */
    private readonly matcherOf: (ctx: number) => Matcher | undefined,
    /**
     * A call that posted no receive may wait elsewhere (the host group's slots): told of its
     * mismatch here, it returns whether it took the error.
     */
    private readonly tellElsewhere: (a: ActiveCollective, err: Error) => boolean = () => false,
  ) {}

  /** A call starts: did messages of another call arrive for its slot before it? */
  started(a: ActiveCollective): void {
    this.active.push(a);
    if (this.broken.size > 0) this.broken.delete(keyOf(a.ctx + 1, a.base));
    // Often the peer is ahead and its message for this very call is already queued, so this runs
    // on most calls: look at the queues' tags in place, without copying what is queued.
    const e = this.matcherOf(a.ctx + 1)?.findUnexpected(otherCallAtSlot, a.base);
    if (e !== undefined) this.mismatch(a, e);
  }

  /**
   * A call settled (`ok`: with a value). One that a mismatch ended is not remembered (the rest of
   * the other call's messages will come).
   */
  returnedFrom(a: ActiveCollective, ok: boolean): void {
    if (this.untold.size > 0) {
      const m = this.untold.get(a);
      if (m !== undefined) {
        this.untold.delete(a);
        // It rejected through a receive it posted after the mismatch: told. Else nothing was.
        if (ok) this.endJob(this.error(a, m, 'it had returned already, so the job cannot go on'));
        return;
      }
    }
    if (!removeFrom(this.active, a)) return;
    let calls = this.returned.get(a.ctx + 1);
    if (calls === undefined) this.returned.set(a.ctx + 1, (calls = new Array(RETURNED_CALLS_KEPT).fill(undefined)));
    calls[slotOf(a.base) & (RETURNED_CALLS_KEPT - 1)] = a;
  }

  /** The mismatch, if any, of the call that a receive on collective context `cctx` with `tag` belongs to. */
  brokenCall(cctx: number, tag: number): Error | undefined {
    return this.broken.size === 0 ? undefined : this.broken.get(keyOf(cctx, tag));
  }

  /** A message for a collective (odd context) arrived: is it of the call this rank makes at its slot? */
  arrived(m: IncomingMessage): void {
    const slot = slotOf(m.tag);
    let waiting = false;
    // Backwards: mismatch() removes the call it rejects, moving only the ones already seen.
    for (let i = this.active.length - 1; i >= 0; i--) {
      const a = this.active[i]!;
      if (a.ctx + 1 !== m.ctx || slotOf(a.base) !== slot) continue;
      waiting = true;
      if (!sameCall(a.base, m.tag)) this.mismatch(a, m);
    }
    if (waiting) return;
    const calls = this.returned.get(m.ctx);
    const at = slot & (RETURNED_CALLS_KEPT - 1);
    const done = calls?.[at];
    if (done === undefined || slotOf(done.base) !== slot || sameCall(done.base, m.tag)) return;
    calls![at] = undefined;
    this.endJob(this.error(done, m, 'it had returned already, so the job cannot go on'));
  }

  /** Nothing is waiting to be told: end the job, as any uncaught error does. */
  private endJob(err: Error): void {
    queueMicrotask(() => {
      throw err;
    });
  }

  /** Rejects call `a`, which met `m` (another call's message), and what it waits for. */
  private mismatch(a: ActiveCollective, m: Envelope | IncomingMessage): void {
    if (!removeFrom(this.active, a)) return;
    const err = this.error(a, m);
    this.broken.set(keyOf(a.ctx + 1, a.base), err);
    const matcher = this.matcherOf(a.ctx + 1);
    const slot = slotOf(a.base);
    const { posted, probes } = matcher?.snapshot() ?? { posted: [], probes: [] };
    let told = false;
    for (const r of [...posted, ...probes]) {
      if (slotOf(r.tag) === slot && matcher!.cancel(r)) {
        r.fail?.(err);
        told = true;
      }
    }
    if (!told && !this.tellElsewhere(a, err)) this.untold.set(a, m);
  }

  private error(a: ActiveCollective, m: Envelope | IncomingMessage, after = ''): CollectiveMismatchError {
    const mine = a.root !== undefined ? `${a.kind} (root ${a.root})` : a.kind;
    const comm = a.ctx === 0 ? 'world' : `communicator ${a.ctx}`;
    return new CollectiveMismatchError(
      `rank ${this.rank}: its ${mine} #${a.seq} on ${comm} met rank ${m.source}'s ${describeCall(m.tag)} at the same point${after ? ` (${after})` : ''}: every rank must call the same collectives in the same order, with the same root`,
      { rank: this.rank, peer: m.source },
    );
  }
}

/** Whether `tag` is of another call than `base` at the same slot. */
function otherCallAtSlot(tag: number, base: number): boolean {
  return slotOf(tag) === slotOf(base) && !sameCall(base, tag);
}

/** Removes `a` from `list` keeping the order of the rest; false when it was not there. */
function removeFrom<T>(list: T[], a: T): boolean {
  const i = list.indexOf(a);
  if (i < 0) return false;
  for (let j = i + 1; j < list.length; j++) list[j - 1] = list[j]!;
  list.pop();
  return true;
}
