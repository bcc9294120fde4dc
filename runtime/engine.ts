// One per process: the transports, the matching engines of every context, the routing of a
// peer to its transport, and the keep-alive that holds the event loop open exactly while there
// is communication pending.

import os from 'node:os';
import type { PeerInfo, TransportMode } from '../transport/bootstrap/protocol.js';
import type { DestinationRequest, Endpoint, IncomingMessage, OutgoingMessage, Transport, TransportName } from '../transport/transport.js';
import { TcpTransport } from '../transport/tcp/transport.js';
import { BootstrapClient } from './bootstrap.js';
import { OutOfRangeError, StateError, TransportUnavailableError } from './errors.js';
import { Matcher, type Envelope, type Request } from './match.js';

/** Every completed-at-once send returns this one settled promise: no allocation per message. */
const RESOLVED = Promise.resolve();
const NO_BYTES = new Uint8Array(0);

/** Longest run of back-to-back spins before the event loop gets a turn. */
const FAIRNESS_NS = 2_000_000n;

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

export interface EngineInit {
  rank: number;
  size: number;
  peers: PeerInfo[];
  mode: TransportMode;
  bootstrap?: BootstrapClient;
  tcp?: TcpTransport;
  /** The shared-memory transport, when this build and host provide one. */
  ivcom?: Transport;
}

export class Engine {
  readonly rank: number;
  readonly size: number;
  readonly peers: PeerInfo[];
  readonly mode: TransportMode;
  readonly bootstrap: BootstrapClient | undefined;
  private tcp: TcpTransport | undefined;
  private ivcom: Transport | undefined;
  private readonly matchers = new Map<number, Matcher>();
  private readonly routes: Array<Endpoint | null | undefined> = [];
  private seq = 0;
  private holds = 0;
  private readonly keepAlive: NodeJS.Timeout;
  private failure: Error | undefined;
  private readonly pendingSends = new Set<Promise<void>>();
  /** Next free context id; agreed on collectively when communicators are created. */
  nextCtx = 2;
  finalized = false;
  private readonly memory: Transport[] = [];
  private spinScheduled = false;
  private spinBudgetNs: bigint;
  private readonly crowded: boolean;
  private readonly spinMinNs: bigint;
  private readonly spinMaxNs: bigint;
  /** When the last spin gave up and the doorbells were armed (0n: not sleeping). */
  private armedAt = 0n;

  constructor(init: EngineInit) {
    this.rank = init.rank;
    this.out = this.newOutgoing();
    this.size = init.size;
    this.peers = init.peers;
    this.mode = init.mode;
    this.bootstrap = init.bootstrap;
    this.tcp = init.tcp;
    this.ivcom = init.ivcom;
    if (this.ivcom?.poll) this.memory.push(this.ivcom);
    this.keepAlive = setInterval(() => {}, 1 << 30);
    this.keepAlive.unref();
    // Spinning only pays while every rank has a core; oversubscribed, a spinning rank steals the
    // core its peer needs to answer, so yield to the kernel almost at once.
    const local = init.peers.filter((p) => p.node === init.peers[init.rank]?.node).length;
    const roomy = local <= os.availableParallelism();
    const fixed = spinOverride(process.env.IVCOM_SPIN_US, init.rank);
    const us = (x: number) => BigInt(Math.max(0, Math.round(x * 1000)));
    // Crowded (more local ranks than cores): poll with a yield between polls, so the peer gets
    // the core, and only briefly: a yielding rank still takes turns on the core (the scheduler
    // hands it back long before the peer's turn is used up), so long yield-polling starves the
    // ranks that have work. Measured, 4 ranks on 2 cores, 1 MiB allreduce: 4.1-4.9 ms with
    // 100-300 us of yield-polling, 5.8 ms with 1 ms, 9-10 ms adapting up to 2 ms, 46 ms with 20 ms.
    this.crowded = !roomy;
    this.spinBudgetNs = us(fixed ?? (roomy ? 50 : 100));
    // Adaptive: a wait that the doorbell ended soon after the spin gave up means the spin was
    // just too short (e.g. the peer handles a window of messages before it answers): spin
    // longer next time. A long sleep means the peer was really idle: spin less.
    this.spinMinNs = fixed !== undefined ? this.spinBudgetNs : us(20);
    this.spinMaxNs = fixed !== undefined ? this.spinBudgetNs : us(roomy ? 1000 : 200);
  }

  matcher(ctx: number): Matcher {
    let m = this.matchers.get(ctx);
    if (m === undefined) this.matchers.set(ctx, (m = new Matcher()));
    return m;
  }

  /**
   * Which transport carries traffic to a world rank (the truth behind comm.transportTo), and the
   * selection policy: self; ivcom for co-resident pairs; tcp otherwise; --transport overrides.
   */
  transportName(peer: number): TransportName {
    if (peer === this.rank) return 'self';
    const sameNode = this.peers[peer]!.node === this.peers[this.rank]!.node;
    if (this.mode === 'auto') return sameNode && this.ivcom ? 'ivcom' : 'tcp';
    if (this.mode === 'tcp') return 'tcp';
    if (!sameNode) {
      throw new TransportUnavailableError(
        `rank ${this.rank}: --transport ivcom was forced but rank ${peer} is on another host; shared memory only joins ranks of one host. Use --transport auto or tcp.`,
        { rank: this.rank, peer },
      );
    }
    if (!this.ivcom) {
      throw new TransportUnavailableError(
        `rank ${this.rank}: --transport ivcom was forced but the shared-memory transport is not available (native addon missing?). Run 'npm run build' or use --transport tcp.`,
        { rank: this.rank, peer },
      );
    }
    return 'ivcom';
  }

  private route(peer: number): Endpoint | null {
    let ep = this.routes[peer];
    if (ep !== undefined) return ep;
    const name = this.transportName(peer);
    if (name === 'self') ep = null;
    else if (name === 'ivcom') ep = this.ivcom!.endpoint(peer);
    else {
      if (!this.tcp) throw new TransportUnavailableError(`rank ${this.rank}: no TCP transport to reach rank ${peer}`, { rank: this.rank, peer });
      ep = this.tcp.endpoint(peer);
    }
    this.routes[peer] = ep;
    return ep;
  }

  private out: OutgoingMessage & { parts: Uint8Array[] };

  private newOutgoing(): OutgoingMessage & { parts: Uint8Array[] } {
    return { ctx: 0, source: this.rank, tag: 0, codec: 0, parts: [NO_BYTES], byteLength: 0 };
  }

  /** Posts a message; resolves when the caller may reuse `bytes`. */
  send(ctx: number, dest: number, tag: number, codec: number, bytes: Uint8Array): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.finalized) return Promise.reject(new StateError(`rank ${this.rank}: send after finalize()`, { rank: this.rank }));
    const ep = this.route(dest);
    if (ep === null) {
      // To self: copy now, as a transport would, so the caller may reuse its buffer.
      this.arrive({ ctx, source: this.rank, tag, codec, payload: bytes.slice(), seq: 0 });
      return Promise.resolve();
    }
    // One message object serves every send that completes at once; a transport that keeps it
    // (queued behind backpressure, streaming) returns a promise, and then it is its to keep.
    const msg = this.out;
    msg.ctx = ctx;
    msg.tag = tag;
    msg.codec = codec;
    msg.parts[0] = bytes;
    msg.byteLength = bytes.byteLength;
    const p = ep.send(msg);
    if (p === undefined) {
      msg.parts[0] = NO_BYTES; // the caller's memory is not ours to hold on to
      return RESOLVED;
    }
    this.out = this.newOutgoing();
    this.hold();
    // Waiting for ring space is waiting like a receive: spin (the polls write what fits), and
    // only then sleep on the doorbell. Left to the doorbell alone, every refill of the ring
    // cost a wake-up.
    this.progress();
    const tracked = p.finally(() => {
      this.pendingSends.delete(tracked);
      this.release();
    });
    this.pendingSends.add(tracked);
    // The caller may never await it; its failure still reaches fail() through the transport.
    tracked.catch(() => {});
    return tracked;
  }

  /** Upcall from transports. */
  readonly arrive = (m: IncomingMessage): void => {
    const env: Envelope = m;
    env.seq = this.seq++;
    const claimed = this.claims.size > 0 ? this.claims.get(m.payload) : undefined;
    if (claimed !== undefined) {
      this.claims.delete(m.payload);
      claimed.done = true;
      claimed.complete(env);
      return;
    }
    this.matcher(m.ctx).arrive(env);
  };

  /** Receives taken by a message still arriving, keyed by the view the transport fills. */
  private readonly claims = new Map<Uint8Array, Request>();

  /** Upcall from transports: place a large message straight into a posted recvInto buffer. */
  readonly allocate = (h: DestinationRequest): Uint8Array | undefined => {
    const req = this.matchers.get(h.ctx)?.claim(h.source, h.tag, h.byteLength);
    if (req === undefined) return undefined;
    const into = req.into!;
    const dest = into.byteLength === h.byteLength ? into : into.subarray(0, h.byteLength);
    this.claims.set(dest, req);
    return dest;
  };

  /**
   * Upcall from transports: a channel broke (peer lost, corrupt ring, bad frame). Every pending
   * receive fails with the cause, and so does every later operation: this process no longer
   * knows what its peers sent. It is not a crash: the program decides (by default an unhandled
   * rejection ends the job, naming the cause). With nobody waiting, say so on stderr at once.
   */
  readonly fail = (err: Error): void => {
    if (this.failure) return;
    this.failure = err;
    let told = false;
    const claimed = [...this.claims.values()];
    this.claims.clear();
    for (const r of claimed) {
      r.done = true;
      (r as { fail?: (e: Error) => void }).fail?.(err);
      told = true;
    }
    for (const m of this.matchers.values()) {
      for (const r of m.drainPosted()) {
        (r as { fail?: (e: Error) => void }).fail?.(err);
        told = true;
      }
    }
    if (!told) process.emitWarning(err.message, { code: (err as { code?: string }).code ?? 'ERR_IVCOM', type: 'IvcomWarning' });
  };

  get failed(): Error | undefined {
    return this.failure;
  }

  /** Looks at the memory transports once (iprobe); returns how much moved (0: nothing). */
  poll(): number {
    let n = 0;
    for (const tr of this.memory) n += tr.poll!();
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
  progress(): void {
    if (this.memory.length === 0 || this.spinScheduled) return;
    this.spinScheduled = true;
    queueMicrotask(this.spin);
  }

  private readonly spin = (): void => {
    this.spinScheduled = false;
    const t = this.memory;
    let moved = 0;
    if (this.holds > 0) {
      const deadline = process.hrtime.bigint() + this.spinBudgetNs;
      const relax = this.crowded;
      for (let i = 0; ; i++) {
        let n = 0;
        for (const tr of t) n += tr.poll!();
        moved += n;
        if (n !== 0) continue;
        // Stop once something moved and the rings are quiet again (a burst is taken whole, then
        // its continuations run: receives completed, sends written), or when the budget is
        // spent without anything moving.
        if (moved !== 0) break;
        if (relax) for (const tr of t) tr.relax?.();
        if ((i & 15) === 15 && process.hrtime.bigint() >= deadline) break;
      }
    }
    if (moved === 0) {
      this.streak = 0;
      if (this.holds > 0) this.armedAt = process.hrtime.bigint();
      this.arm();
      return;
    }
    if (this.holds > 0) {
      // Progress, and operations still pending (a window of receives, queued sends): spin again once the
      // continuations just released have run, instead of falling back to doorbells. Every few
      // milliseconds of this, let the event loop turn once (timers, I/O: fairness).
      this.spinScheduled = true;
      if (this.streak === 0) this.streakStart = process.hrtime.bigint();
      if (++this.streak < 64 || process.hrtime.bigint() - this.streakStart < FAIRNESS_NS) queueMicrotask(this.spin);
      else {
        this.streak = 0;
        setImmediate(this.spin);
      }
      return;
    }
    this.streak = 0;
    if (!this.armScheduled) {
      // The spin paid off. Arming now would make the peer ring (a syscall) for a reply this
      // rank will most likely spin for again; arm only once the program stops posting receives
      // back to back (the check phase runs after every microtask has drained).
      this.armScheduled = true;
      setImmediate(this.deferredArm).unref();
    }
  };

  private streak = 0;
  private streakStart = 0n;

  private armScheduled = false;
  private readonly deferredArm = (): void => {
    this.armScheduled = false;
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
    if (this.armedAt === 0n) return;
    const slept = process.hrtime.bigint() - this.armedAt;
    this.armedAt = 0n;
    const b = this.spinBudgetNs;
    // Judged against the longest spin, not the current one: a sleep's length includes the
    // kernel wake-up (0.1-0.7 ms on an idle VM), so once both sides of an exchange sleep, every
    // reply looks slower than any short spin and a rule relative to the budget never grows it
    // (measured: a 64-message window stream slept on ~45 % of its windows).
    if (slept < this.spinMaxNs) this.spinBudgetNs = b * 2n < this.spinMaxNs ? b * 2n : this.spinMaxNs;
    else if (slept > 4n * this.spinMaxNs) this.spinBudgetNs = b / 2n > this.spinMinNs ? b / 2n : this.spinMinNs;
  }

  async finalize(): Promise<void> {
    if (this.finalized) return;
    this.hold();
    try {
      await Promise.allSettled([...this.pendingSends]);
      this.finalized = true;
      await Promise.all([this.ivcom?.close(), this.tcp?.close()]);
      this.bootstrap?.send({ op: 'finalize' });
      this.bootstrap?.close();
    } finally {
      this.release();
      clearInterval(this.keepAlive);
    }
  }

  abort(code: number, reason: string): never {
    BootstrapClient.leaving = true;
    this.bootstrap?.sendNow({ op: 'abort', code, reason });
    process.exit(code);
  }
}
