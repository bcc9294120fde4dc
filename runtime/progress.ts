// How a rank waits: spin on the memory transports for an adaptive budget (no syscalls), then arm
// their doorbells and let the event loop sleep; and hold the event loop open exactly while there
// is communication pending (every handle the runtime owns is unref'd, so an idle rank may exit).

import os from 'node:os';
import { performance } from 'node:perf_hooks';
import { HOST_CPUS_ENV, type PeerInfo } from '../transport/bootstrap/protocol.js';
import type { IncomingMessage, Transport } from '../transport/transport.js';
import { OutOfRangeError } from './errors.js';
import { Outcome } from './outcome.js';
import { RunQueue } from './run-queue.js';

/**
 * Spins are scheduled as reactions to this settled promise, not with queueMicrotask(): Node's
 * queueMicrotask wraps every callback in an AsyncResource and a bound function (~250 B and an
 * async-hooks check per call), and a ping-pong schedules a spin for every receive. Same
 * microtask queue, same order. (spin() does not throw: transport failures are reported through
 * their own upcalls.)
 */
const SETTLED = Promise.resolve();

/**
 * Polls between readings of the clock while spinning, minus one (a mask): a reading (~45 ns)
 * costs more than a quiet poll, so a spin reads it every few µs, well within its 20 µs minimum
 * budget; polls that yield the core take longer, so those read it more often.
 */
const CLOCK_EVERY = 127;
const CLOCK_EVERY_RELAXED = 15;
/**
 * A spin's deadline before its first reading of the clock. A spin does not read the clock to
 * begin: its budget runs from its first check (CLOCK_EVERY polls in, a few µs), so a spin that
 * ends sooner (a ping-pong's reply, a collective partner already there) never reads it. A reading
 * costs ~45 ns, 7 % of an 8 B message's one-way time (docs/performance.md, stop 31). A spin that
 * yields between polls (ranks outnumber cores) starts its deadline at once: its polls take µs
 * each, and CLOCK_EVERY_RELAXED of them would stretch its short budget.
 */
const UNSTARTED = -1;
/** A spin's deadline once it has passed (deadlines are performance.now() readings, never negative). */
const PASSED = -2;

/**
 * Longest run (ms) of spins scheduled as microtasks before the event loop gets a turn (timers,
 * I/O). A program that awaits one message after another never empties the microtask queue while
 * the messages keep coming within the spin: without this, its timers and sockets would wait
 * until a spin gave up (docs/performance.md).
 */
const FAIRNESS_MS = 2;
/** Spins between readings of the clock for FAIRNESS_MS (a mask): a reading per spin would cost ~0.1 µs a message. */
const FAIRNESS_CHECK_EVERY = 63;

/**
 * Longest spin (ms) of a collective step waiting inside its own call (waitNow) before the usual
 * spin in a microtask takes over: a partner that entered the same step at about the same time
 * answers well within it (an 8 B exchange takes ~2 µs), and a program that posts, after the
 * call, what its partner waits for is held up by no more than this.
 */
const WAIT_NOW_MS = 0.01;

const ANY_PEER = -1;

/** How Progress.waitFor() ended. */
export const enum Waited {
  Ready,
  /** A poll delivered something: let its continuations run (a microtask), then wait on. */
  Moved,
  /** The event loop is owed a turn (FAIRNESS_MS): give it one, then wait on. */
  TurnOwed,
  /** The spin budget ran out: sleep. */
  Spent,
}

/** What waitNow() waits for: a posted receive. */
export interface Settles {
  readonly outcome: Outcome;
  /** The world rank it waits for (negative: any). */
  readonly source: number;
}

/** IVCOM_SPIN_US: a fixed spin budget in µs (unset or empty: adaptive). Anything else is refused. */
export function spinOverride(v: string | undefined, rank: number): number | undefined {
  if (v === undefined || v.trim() === '') return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) {
    throw new OutOfRangeError(
      `rank ${rank}: IVCOM_SPIN_US must be a number of microseconds >= 0 (the spin before sleeping on the doorbell), got '${v}'; unset it for the adaptive default`,
    );
  }
  return n;
}

/**
 * The CPUs the host's ranks share: ivrun's count (HOST_CPUS_ENV) where it started the rank,
 * since under `--bind-to core` the rank's own affinity shows one; else this process's.
 */
export function hostCpus(v: string | undefined, rank: number): number {
  if (v === undefined) return os.availableParallelism();
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) {
    throw new OutOfRangeError(`rank ${rank}: ${HOST_CPUS_ENV} must be a count of CPUs >= 1 (ivrun sets it), got '${v}'; start the program with ivrun, or unset it`);
  }
  return n;
}

/** Ranks of this rank's host (they share its cores). */
export function localRanks(peers: PeerInfo[], rank: number): number {
  return peers.filter((p) => p.node === peers[rank]?.node).length;
}

export class Progress {
  private holds = 0;
  private readonly keepAlive: NodeJS.Timeout;
  private spinScheduled = false;
  // The spin's clock is performance.now(), in ms: cheaper than process.hrtime.bigint(), which
  // allocates a BigInt per reading (docs/decisions.md).
  private spinBudgetMs: number;
  private readonly crowded: boolean;
  private readonly spinMinMs: number;
  private readonly spinMaxMs: number;
  /**
   * The world rank a collective step that could not finish inside its call waits for, a hint
   * for the spin that takes over (ANY_PEER: none known).
   */
  private awaited = ANY_PEER;
  /** When the last spin gave up and the doorbells were armed (0: not sleeping). */
  private armedAt = 0;
  /** Whether the host has more runnable threads than cores: then waiting means sleeping. */
  private readonly runQueue: RunQueue | undefined;

  /** `memory`: the transports that are polled (shared memory); `local`: ranks on this host. */
  constructor(
    rank: number,
    private readonly memory: Transport[],
    local: number,
  ) {
    this.keepAlive = setInterval(() => {}, 1 << 30);
    this.keepAlive.unref();
    // Spinning only pays while every rank has a core; oversubscribed, a spinning rank steals the
    // core its peer needs to answer, so yield to the kernel almost at once.
    const cpus = hostCpus(process.env[HOST_CPUS_ENV], rank);
    const roomy = local <= cpus;
    const fixed = spinOverride(process.env.IVCOM_SPIN_US, rank);
    const us = (x: number) => Math.max(0, x) / 1000;
    // Crowded (more local ranks than cores): poll with a yield between polls, so the peer gets
    // the core, and only briefly: a yielding rank still takes turns on the core (the scheduler
    // hands it back long before the peer's turn is used up), so long yield-polling starves the
    // ranks that have work. Measured, 4 ranks on 2 cores, 1 MiB allreduce: 4.1-4.9 ms with
    // 100-300 us of yield-polling, 5.8 ms with 1 ms, 9-10 ms adapting up to 2 ms, 46 ms with 20 ms.
    this.crowded = !roomy;
    this.spinBudgetMs = us(fixed ?? (roomy ? 50 : 100));
    // Adaptive: a wait that the doorbell ended soon after the spin gave up means the spin was
    // just too short (e.g. the peer handles a window of messages before it answers): spin
    // longer next time. A long sleep means the peer was really idle: spin less.
    this.spinMinMs = fixed !== undefined ? this.spinBudgetMs : us(20);
    this.spinMaxMs = fixed !== undefined ? this.spinBudgetMs : us(roomy ? 1000 : 200);
    // A fixed budget is the user's decision; adaptive spinning also yields to run-queue pressure.
    this.runQueue = fixed === undefined && memory.length > 0 ? new RunQueue(cpus) : undefined;
  }

  /**
   * Looks at the memory transports once from outside a spin (iprobe, a peer's finish); returns
   * how much moved (0: nothing). Polling withdraws the doorbell requests (a spinning rank needs
   * no rings), so a rank that was asleep with operations pending re-arms them at once: otherwise
   * its peers' next writes would not ring and it would sleep through them.
   */
  poll(): number {
    let n = 0;
    for (const tr of this.memory) n += tr.poll!();
    if (this.holds > 0 && !this.spinScheduled) this.arm();
    return n;
  }

  /** Keeps the event loop alive while an operation is pending. */
  hold(): void {
    if (this.holds++ === 0 && !this.refd) {
      this.refd = true;
      this.keepAlive.ref();
    }
  }

  release(): void {
    // Unref lazily: a ping-pong goes 0 → 1 → 0 pending per message, and each ref()/unref() is
    // a call into the timer binding. The check phase runs only once the microtasks have drained.
    if (--this.holds === 0 && !this.unrefScheduled) {
      this.unrefScheduled = true;
      setImmediate(this.maybeUnref).unref();
    }
  }

  private refd = false;
  private unrefScheduled = false;
  private readonly maybeUnref = (): void => {
    this.unrefScheduled = false;
    if (this.holds === 0 && this.refd) {
      this.refd = false;
      this.keepAlive.unref();
    }
  };

  /**
   * Called after posting a receive that did not complete at once: spin on the memory
   * transports for a short budget (no syscalls), then arm their doorbells and let the event
   * loop sleep. The spin runs in a microtask, after the caller has posted what it posts next.
   */
  kick(): void {
    if (this.memory.length === 0 || this.spinScheduled) return;
    this.scheduleSpin();
  }

  /** The next spin: a microtask, unless the event loop has not had a turn for FAIRNESS_MS. */
  private scheduleSpin(): void {
    this.spinScheduled = true;
    if (this.turnDue()) setImmediate(this.spinAfterTurn);
    else void SETTLED.then(this.spin);
  }

  /** Whether the event loop is owed a turn (the clock is read once every FAIRNESS_CHECK_EVERY + 1 calls). */
  private turnDue(): boolean {
    return (++this.spinsScheduled & FAIRNESS_CHECK_EVERY) === 0 && performance.now() - this.turnAt >= FAIRNESS_MS;
  }

  /** Spins scheduled (the clock is read for every FAIRNESS_CHECK_EVERY + 1st of them). */
  private spinsScheduled = 0;
  /** When the event loop last had a turn that this object saw (performance.now(), ms). */
  private turnAt = 0;
  private readonly spinAfterTurn = (): void => {
    this.turnAt = performance.now();
    this.spin();
  };

  /**
   * Called by a collective step right after posting its receive, with nothing else to post
   * before it waits: spins here, synchronously, until `req` settles (true) or a short budget is
   * spent (false: the usual spin in a microtask takes over). Saves the microtask hops of a wait
   * that would have ended within a spin anyway, and lets the step go on inside the same call.
   */
  waitNow(req: Settles): boolean {
    if (this.memory.length === 0 || this.owesTurn()) return false;
    this.pollFor(this.waitNowBudget(), req);
    if (req.outcome === Outcome.Pending) {
      this.awaited = req.source;
      this.kick();
      return false;
    }
    this.paidOff();
    return true;
  }

  /**
   * waitNow() for a message a collective step takes straight from its peer's ring
   * (Engine.takeFrom, `take`): looks at that ring head between polls, with waitNow's budget.
   * Returns the message; undefined when the budget ran out, the event loop is owed a turn, or
   * the message came the usual way meanwhile (a poll delivered it): then post the receive and
   * let the usual spin take over. Null: it did not wait (ranks outnumber cores, where waiting
   * for the take gained nothing: docs/performance.md, stop 26); wait for the receive instead.
   */
  waitTake(take: () => IncomingMessage | undefined | null, source: number): IncomingMessage | undefined | null {
    if (this.crowded) return null;
    if (this.memory.length === 0 || this.owesTurn()) return undefined;
    const t = this.memory;
    const budget = this.waitNowBudget();
    let deadline = UNSTARTED;
    const clockEvery = budget === 0 ? CLOCK_EVERY_RELAXED : CLOCK_EVERY;
    for (let i = 0; ; ) {
      const m = take();
      if (m !== undefined) {
        if (m === null) return undefined;
        this.paidOff();
        return m;
      }
      let n = 0;
      for (const tr of t) n += tr.poll!();
      if (n !== 0) continue;
      if ((i & clockEvery) === clockEvery && (deadline = this.check(deadline, budget)) === PASSED) break;
      i++;
    }
    this.awaited = source;
    return undefined;
  }

  /**
   * waitNow() for a condition outside the transports (the host group's slots, host-slots.ts):
   * polls `ready` and the memory transports, yielding the CPU between polls when ranks outnumber
   * cores (the ranks it waits for need this core to get there), for the spin budget (the one a
   * receive spins for before it sleeps: nothing but this spin stands between the wait and its
   * doorbell). Stops as soon as a poll delivers something: its continuations (a receive the
   * program awaits, a collective step) must run, and the awaited ranks may wait for them.
   */
  waitFor(ready: () => boolean): Waited {
    if (ready()) return Waited.Ready;
    if (this.owesTurn()) return Waited.TurnOwed;
    const t = this.memory;
    const relax = this.crowded;
    const budget = this.runQueue?.latest === true ? 0 : this.spinBudgetMs;
    let deadline = relax ? this.check(UNSTARTED, budget) : UNSTARTED;
    const clockEvery = relax || budget === 0 ? CLOCK_EVERY_RELAXED : CLOCK_EVERY;
    let out = Waited.Spent;
    for (let i = 0; ; i++) {
      let n = 0;
      for (const tr of t) n += tr.poll!();
      if (ready()) {
        out = Waited.Ready;
        break;
      }
      if (n !== 0) {
        out = Waited.Moved;
        break;
      }
      if (relax) for (const tr of t) tr.relax?.(ANY_PEER);
      if ((i & clockEvery) === clockEvery && (deadline = this.check(deadline, budget)) === PASSED) break;
    }
    // Polling withdrew the doorbell requests (as poll() says): receives still pending need them
    // back, or their peers' next writes would not ring while this rank sleeps.
    if (this.holds > 0 && !this.spinScheduled) this.arm();
    return out;
  }

  /** If the event loop is owed a turn, the spin is scheduled after it (and true: do not spin here). */
  private owesTurn(): boolean {
    if (!this.turnDue()) return false;
    if (!this.spinScheduled) {
      this.spinScheduled = true;
      setImmediate(this.spinAfterTurn);
    }
    return true;
  }

  /** How long a wait inside a call spins: WAIT_NOW_MS at most, nothing under run-queue pressure (as last sampled). */
  private waitNowBudget(): number {
    return this.runQueue?.latest === true ? 0 : this.spinBudgetMs < WAIT_NOW_MS ? this.spinBudgetMs : WAIT_NOW_MS;
  }

  /**
   * A spin's check of the clock: its deadline, PASSED once that has passed. The first check
   * starts it (`deadline` UNSTARTED): `budget` from now, or now when the run queue, sampled
   * again, is under pressure (the spin then ends here).
   */
  private check(deadline: number, budget: number): number {
    const now = performance.now();
    if (deadline === UNSTARTED) deadline = this.runQueue?.pressure(now) === true ? now : now + budget;
    return now >= deadline ? PASSED : deadline;
  }

  private readonly spin = (): void => {
    this.spinScheduled = false;
    let moved = 0;
    if (this.holds > 0) {
      // Under pressure (run-queue.ts), or with no budget: a few looks at the rings (yielding
      // ones when crowded: the peer may answer meanwhile, cheaper than a doorbell), then sleep
      // on the doorbell.
      moved = this.pollFor(this.runQueue?.latest === true ? 0 : this.spinBudgetMs, undefined);
      if (moved !== 0) this.awaited = ANY_PEER;
    }
    if (moved === 0) {
      if (this.holds > 0) this.armedAt = performance.now();
      this.arm();
      return;
    }
    this.paidOff();
  };

  /**
   * Polls the memory transports until `until` settles, or (without it) until something moved
   * and the rings are quiet again (a burst is taken whole, then its continuations run: receives
   * completed, sends written), or until `budget` ms pass with nothing moving (counted from the
   * first check of the clock: UNSTARTED). Returns how much moved.
   */
  private pollFor(budget: number, until: Settles | undefined): number {
    const t = this.memory;
    const relax = this.crowded;
    let deadline = relax ? this.check(UNSTARTED, budget) : UNSTARTED;
    // A quiet poll takes tens of ns; a yielding one (relax) over a µs.
    const clockEvery = relax || budget === 0 ? CLOCK_EVERY_RELAXED : CLOCK_EVERY;
    let moved = 0;
    for (let i = 0; ; ) {
      let n = 0;
      for (const tr of t) n += tr.poll!();
      if (n !== 0) {
        moved += n;
        if (until !== undefined && until.outcome !== Outcome.Pending) break;
        continue;
      }
      if (moved !== 0 && until === undefined) break;
      if (relax) {
        // A poll that kept the CPU (the awaited peer works) is quick and bounded by the
        // transport (KEEP_CPU_POLLS): it is not one of the few looks a crowded wait takes.
        let gave = false;
        for (const tr of t) if (tr.relax?.(until !== undefined ? until.source : this.awaited) !== false) gave = true;
        if (!gave) continue;
      }
      if ((i & clockEvery) === clockEvery && (deadline = this.check(deadline, budget)) === PASSED) break;
      i++;
    }
    return moved;
  }

  /** A wait ended within a spin. */
  private paidOff(): void {
    if (this.holds > 0) {
      // Operations still pending (a window of receives, queued sends): spin again once the
      // continuations just released have run, instead of falling back to doorbells.
      if (!this.spinScheduled) this.scheduleSpin();
      return;
    }
    if (!this.armScheduled) {
      // The spin paid off. Arming now would make the peer ring (a syscall) for a reply this
      // rank will most likely spin for again; arm only once the program stops posting receives
      // back to back (the check phase runs after every microtask has drained).
      this.armScheduled = true;
      setImmediate(this.deferredArm).unref();
    }
  }

  private armScheduled = false;
  private readonly deferredArm = (): void => {
    this.armScheduled = false;
    this.turnAt = performance.now();
    // A spin is running again (receives were posted since): it arms when it gives up. Arming
    // under it would only make the peer ring a doorbell (a syscall on each side) for nothing.
    if (this.spinScheduled) return;
    this.arm();
  };

  /** Before the event loop may sleep: doorbells armed, and one last look so nothing is missed. */
  private arm(): void {
    for (const tr of this.memory) tr.idle?.();
  }

  /** A receive completed: if it ended a sleep, tune the spin budget by how long the sleep was. */
  completed(): void {
    if (this.armedAt === 0) return;
    const slept = performance.now() - this.armedAt;
    this.armedAt = 0;
    const b = this.spinBudgetMs;
    // Judged against the longest spin, not the current one: a sleep's length includes the
    // kernel wake-up (0.1-0.7 ms on an idle VM), so once both sides of an exchange sleep, every
    // reply looks slower than any short spin and a rule relative to the budget never grows it
    // (measured: a 64-message window stream slept on ~45 % of its windows).
    if (slept < this.spinMaxMs) this.spinBudgetMs = b * 2 < this.spinMaxMs ? b * 2 : this.spinMaxMs;
    else if (slept > 4 * this.spinMaxMs) this.spinBudgetMs = b / 2 > this.spinMinMs ? b / 2 : this.spinMinMs;
  }

  close(): void {
    clearInterval(this.keepAlive);
    this.runQueue?.close();
  }
}
