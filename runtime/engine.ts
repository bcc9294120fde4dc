// One per process: the transports, the matching engines of every context, the routing of a
// peer to its transport, and failure. How waiting works (spin, doorbells, keep-alive) is the
// progress object's (progress.ts).

import type { PeerInfo, TransportMode } from '../transport/bootstrap/protocol.js';
import type { DestinationRequest, Endpoint, IncomingMessage, OutgoingMessage, Transport, TransportName } from '../transport/transport.js';
import { selectTransport } from '../transport/select.js';
import { TcpTransport } from '../transport/tcp/transport.js';
import { BootstrapClient } from './bootstrap.js';
import { PeerLostError, StateError, TransportUnavailableError } from './errors.js';
import { CollectiveCalls } from './calls.js';
import { HostSlots } from './host-slots.js';
import { ANY, Matcher, type Envelope, type Request } from './match.js';
import { localRanks, Progress } from './progress.js';
import { Rendezvous } from './rendezvous.js';
import { describeWaits } from './report.js';
import { PeerShapes } from './shapes.js';
import { StagingPool } from './staging.js';
import { Codec, CODEC_MAX } from './codec-ids.js';
import type { CrossMemory } from '../transport/cma.js';
import { verifyingEndpoint, type Checksum } from './verify.js';

/** How soon a finished peer is looked at again while a TCP handshake (maybe its) is running. */
const HANDSHAKE_RECHECK_MS = 20;

/** Every completed-at-once send returns this one settled promise: no allocation per message. */
const RESOLVED = Promise.resolve();
const NO_BYTES = new Uint8Array(0);

export interface EngineInit {
  rank: number;
  size: number;
  peers: PeerInfo[];
  mode: TransportMode;
  bootstrap?: BootstrapClient;
  tcp?: TcpTransport;
  /** The shared-memory transport, when this build and host provide one. */
  ivcom?: Transport;
  /** Single copy of large messages between co-resident ranks (off: --single-copy off). */
  cma?: CrossMemory;
  /**
   * --verify: every message carries a CRC-32C checked on arrival (verify.ts). The deliver upcall
   * must then be wrapped too (verifyingUpcalls).
   */
  verify?: Checksum;
  /** ivrun --host-slots decided that the world's small collectives meet in the host group. */
  hostSlots?: boolean;
}

export class Engine {
  readonly rank: number;
  readonly size: number;
  readonly peers: PeerInfo[];
  readonly mode: TransportMode;
  readonly bootstrap: BootstrapClient | undefined;
  private tcp: TcpTransport | undefined;
  private ivcom: Transport | undefined;
  private readonly verify: Checksum | undefined;
  private readonly matchers = new Map<number, Matcher>();
  private readonly routes: Array<Endpoint | null | undefined> = [];
  private seq = 0;
  /** Spinning, sleeping on doorbells, and holding the event loop open while work is pending. */
  readonly progress: Progress;
  /** The promise send() returns for a send complete at once (compare to skip an await). */
  readonly sent: Promise<void> = RESOLVED;
  private failure: Error | undefined;
  private readonly pendingSends = new Set<Promise<void>>();
  /** Next free context id; agreed on collectively when communicators are created. */
  nextCtx = 2;
  /** finalize() was called: the public API refuses new operations (comm.ts). */
  leaving = false;
  finalized = false;

  constructor(init: EngineInit) {
    this.rank = init.rank;
    this.out = this.newOutgoing();
    this.size = init.size;
    this.peers = init.peers;
    this.mode = init.mode;
    this.bootstrap = init.bootstrap;
    this.tcp = init.tcp;
    this.ivcom = init.ivcom;
    this.verify = init.verify;
    this.progress = new Progress(init.rank, init.ivcom?.poll ? [init.ivcom] : [], localRanks(init.peers, init.rank));
    this.rendezvous = new Rendezvous(
      { rank: this.rank, staging: this.staging, endpointTo: (peer) => this.route(peer)!, fail: this.fail },
      init.cma,
      init.verify,
    );
    this.calls = new CollectiveCalls(
      this.rank,
      (ctx) => this.matchers.get(ctx),
      (a, err) => a.ctx === 0 && this.hostSlots?.abortCall(a, err) === true,
    );
    this.shapes = new PeerShapes(init.rank, init.size);
    this.hostSlots = this.slotsFor(init);
  }

  /**
   * Small collectives of the world communicator through the host group (host-slots.ts), where
   * ivrun says so (--host-slots: a job on one host, with few enough ranks for one grant; one
   * decision for the whole job) and the job runs over shared memory without --verify (which
   * checksums every message; the slots carry none): every rank decides alike from the same job.
   */
  readonly hostSlots: HostSlots | undefined;

  private slotsFor(init: EngineInit): HostSlots | undefined {
    const tr = init.ivcom;
    if (init.hostSlots !== true || init.size < 2 || tr?.hostGroup === undefined || init.mode === 'tcp' || init.verify !== undefined) return undefined;
    return new HostSlots(() => tr.hostGroup!(), this.progress, this.rank, this.gone, init.cma);
  }

  /** The object shapes told to each peer and learned from each (plain values go as records of them). */
  readonly shapes: PeerShapes;

  /** Large messages: announced, then moved once a receive matches them (rendezvous.ts). */
  readonly rendezvous: Rendezvous;

  matcher(ctx: number): Matcher {
    // Most messages and receives are on the context of the one before (a program's world
    // communicator): that one is kept at hand, without a hash lookup.
    if (ctx === this.lastCtx) return this.lastMatcher!;
    let m = this.matchers.get(ctx);
    if (m === undefined) this.matchers.set(ctx, (m = new Matcher()));
    this.lastCtx = ctx;
    this.lastMatcher = m;
    return m;
  }

  private lastCtx = -1;
  private lastMatcher: Matcher | undefined = undefined;

  /** Which transport carries traffic to a world rank (the truth behind comm.transportTo). */
  transportName(peer: number): TransportName {
    return selectTransport({ rank: this.rank, peers: this.peers, mode: this.mode, ivcom: this.ivcom !== undefined }, peer);
  }

  /**
   * A collective step's message, taken straight from the head of `source`'s ring when the
   * matcher holds nothing that could come before it (Matcher.quietFor): the message a receive
   * for exactly (source, tag) would get, without the receive, its promise and the matching.
   * Returns it, or undefined (not at the head yet), or null (not this way: post a receive).
   */
  takeFrom(ctx: number, source: number, tag: number): IncomingMessage | undefined | null {
    const memory = this.ivcom;
    // --verify checks a trailer the deliver upcall strips (verify.ts): those go the usual way.
    if (memory?.take === undefined || this.verify !== undefined || this.failure !== undefined) return null;
    const ep = this.route(source);
    if (ep === null || ep.caps.latencyClass !== 'memory' || !this.matcher(ctx).quietFor(source, tag)) return null;
    const m = memory.take(source, ctx, tag);
    if (m === undefined) return undefined;
    if (m.ctx !== ctx || m.tag !== tag || m.codec > CODEC_MAX) {
      // Not what the head looked like a moment ago (the peer rewrote it): the usual way.
      this.arrive(m);
      return null;
    }
    if ((m.ctx & 1) === 1) this.calls.arrived(m);
    m.seq = this.seq++;
    // As a receive's completion: a wait that a sleep ended tunes the spin budget (and a take
    // that ends none must not leave that sleep's start behind for the next receive to misjudge).
    this.progress.completed();
    return m;
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
    // Wrapped once per peer: with verify off, no message pays for it.
    if (ep !== null && this.verify !== undefined) ep = verifyingEndpoint(ep, this.verify);
    this.routes[peer] = ep;
    return ep;
  }

  private out: OutgoingMessage & { parts: Uint8Array[] };

  private newOutgoing(): OutgoingMessage & { parts: Uint8Array[] } {
    return { ctx: 0, source: this.rank, tag: 0, codec: 0, parts: [NO_BYTES], byteLength: 0 };
  }

  /**
   * Posts a message; resolves when the caller may reuse `bytes` or, with `sync`, once a receive
   * has matched it (it goes as a large message does: announced, taken by the matched receive).
   */
  send(ctx: number, dest: number, tag: number, codec: number, bytes: Uint8Array, sync = false): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.finalized) return Promise.reject(new StateError(`rank ${this.rank}: send after finalize()`, { rank: this.rank }));
    const ep = this.route(dest);
    if (codec === Codec.MsgpackShaped && this.shapes.behind(dest)) this.tellShapes(dest, ep);
    if (ep === null) {
      // To self: copy now, as a transport would, so the caller may reuse its buffer.
      this.arrive({ ctx, source: this.rank, tag, codec, payload: bytes.slice(), seq: 0 });
      return Promise.resolve();
    }
    // One message object serves every send that completes at once; a transport that keeps it
    // (queued behind backpressure, streaming) returns a promise, and then it is its to keep.
    if (sync || bytes.byteLength > ep.caps.eagerLimit) return this.track(this.rendezvous.send(ep, dest, ctx, tag, codec, bytes));
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
    return this.track(p);
  }

  /**
   * Shapes `dest` must know before a message written with them: sent ahead of it on the same
   * channel, so they arrive (and are learned, in arrive()) before it.
   */
  private tellShapes(dest: number, ep: Endpoint | null): void {
    const list = this.shapes.announce(dest);
    if (ep === null) {
      this.shapes.learn(this.rank, list);
      return;
    }
    const p = ep.send({ ctx: 0, source: this.rank, tag: 0, codec: Codec.Shapes, parts: [list], byteLength: list.byteLength });
    if (p !== undefined) this.track(p);
  }

  /** A send that settles later: it keeps the process alive and makes progress until it does. */
  private track(p: Promise<void>): Promise<void> {
    this.progress.hold();
    // Waiting for ring space is waiting like a receive: spin (the polls write what fits), and
    // only then sleep on the doorbell. Left to the doorbell alone, every refill of the ring
    // cost a wake-up.
    this.progress.kick();
    const tracked = p.finally(() => {
      this.pendingSends.delete(tracked);
      this.progress.release();
    });
    this.pendingSends.add(tracked);
    // The caller may never await it; its failure still reaches fail() through the transport.
    tracked.catch(() => {});
    return tracked;
  }

  /** Upcall from transports. */
  readonly arrive = (m: IncomingMessage): void => {
    if (m.codec > Codec.Rts) {
      this.rendezvous.control(m);
      return;
    }
    if (m.codec === Codec.Shapes) {
      try {
        this.shapes.learn(m.source, m.payload);
      } catch (err) {
        this.fail(err as Error);
      }
      return;
    }
    // Every collective message, also when no call is in progress: one of a call that returned
    // before it arrived must still end the job.
    if ((m.ctx & 1) === 1) this.calls.arrived(m);
    const env: Envelope = m;
    env.seq = this.seq++;
    const claimed = this.claimsPending > 0 && this.claimedView[m.source] === m.payload ? this.claimedBy[m.source] : undefined;
    if (claimed !== undefined) {
      this.unclaim(m.source);
      claimed.done = true;
      claimed.complete(env);
      return;
    }
    this.matcher(m.ctx).arrive(env);
  };

  // Receives taken by a message still arriving, and the view the transport fills, one slot per
  // source: a transport assembles one message per peer at a time, and slots allocate nothing
  // per message.
  private readonly claimedBy: Array<Request | undefined> = [];
  private readonly claimedView: Array<Uint8Array | undefined> = [];
  private claimsPending = 0;

  private unclaim(source: number): void {
    this.claimedBy[source] = undefined;
    this.claimedView[source] = undefined;
    this.claimsPending--;
  }

  /** Memory for large messages that arrive before a receive is posted for them. */
  readonly staging = new StagingPool();

  /** Upcall from transports: reusable memory for a large message nobody claimed (staging.ts). */
  readonly stage = (h: DestinationRequest): Uint8Array | undefined => this.staging.take(h.byteLength);

  /** Upcall from transports: place a large message straight into a posted recvInto buffer. */
  readonly allocate = (h: DestinationRequest): Uint8Array | undefined => {
    if (h.codec === Codec.Data) return this.rendezvous.placeData(h.source, h.tag, h.byteLength);
    // One claim per source at a time; should a transport ever start a second, that message
    // goes through matching like any other.
    if (this.claimedBy[h.source] !== undefined) return undefined;
    const req = this.matchers.get(h.ctx)?.claim(h.source, h.tag, h.byteLength);
    if (req === undefined) return undefined;
    const into = req.into!;
    const dest = into.byteLength === h.byteLength ? into : into.subarray(0, h.byteLength);
    this.claimedBy[h.source] = req;
    this.claimedView[h.source] = dest;
    this.claimsPending++;
    return dest;
  };

  /**
   * Upcall from transports: a channel broke (peer lost, corrupt ring, bad frame). Every pending
   * receive fails with the cause, and so does every later operation: this process no longer
   * knows what its peers sent. It is not a crash: the program decides (by default an unhandled
   * rejection ends the job, naming the cause). With nobody waiting, say so on stderr at once
   * (`told`: the caller already rejected an operation with it).
   */
  readonly fail = (err: Error, told = false): void => {
    if (this.failure) return;
    this.failure = err;
    this.rendezvous.failAll(err);
    this.hostSlots?.fail(err);
    const claimed = this.claimedBy.filter((r) => r !== undefined);
    for (let s = 0; s < this.claimedBy.length; s++) if (this.claimedBy[s] !== undefined) this.unclaim(s);
    for (const r of claimed) {
      r.done = true;
      r.fail?.(err);
      told = true;
    }
    for (const m of this.matchers.values()) {
      for (const r of m.drainPosted()) {
        r.fail?.(err);
        told = true;
      }
    }
    if (!told) process.emitWarning(err.message, { code: (err as { code?: string }).code ?? 'ERR_IVCOM', type: 'IvcomWarning' });
  };

  /** Upcall from transports: a peer closed its end in order, after its last byte to us. */
  readonly peerClosed = (peer: number): void => {
    this.peerGone(peer);
  };

  /** Peers that finished and whose every message has been delivered: nothing more comes from them. */
  private readonly gone = new Set<number>();

  get anyPeerGone(): boolean {
    return this.gone.size > 0;
  }

  /** `peer` is done and all it sent is here: what only it could complete rejects, naming it. */
  private peerGone(peer: number): void {
    if (this.gone.has(peer) || peer === this.rank) return;
    this.gone.add(peer);
    this.rendezvous.peerClosed(peer);
    this.hostSlots?.peerGone();
    for (const m of this.matchers.values()) {
      const { posted, probes } = m.snapshot();
      for (const r of posted) this.rejectIfUnsatisfiable(m, r);
      for (const r of probes) this.rejectIfUnsatisfiable(m, r);
    }
  }

  /**
   * A receive (or probe) that only finished peers could satisfy, with nothing of theirs queued
   * to match it, can never complete: it rejects with ERR_IVCOM_PEER_LOST instead of waiting
   * forever. A wildcard source counts only when every other rank has finished.
   */
  rejectIfUnsatisfiable(m: Matcher, r: Request): boolean {
    const source = r.source;
    if (source === ANY ? this.gone.size < this.size - 1 : !this.gone.has(source)) return false;
    if (!m.cancel(r)) return false;
    const from = source === ANY ? 'any rank (every other rank has finished)' : `rank ${source}`;
    const tag = r.tag === ANY ? '' : ` with tag ${r.tag}`;
    r.fail?.(
      new PeerLostError(
        `rank ${this.rank}: a receive from ${from}${tag} can never complete: ${source === ANY ? 'they have' : `rank ${source} has`} finalized or exited, and nothing sent before matches it`,
        { rank: this.rank, peer: source === ANY ? undefined : source },
      ),
    );
    return true;
  }

  /**
   * ivrun says `peer` finished (finalized or exited 0). That word travels apart from the peer's
   * own traffic, so first take in what the peer sent before (a completion among it must win):
   * the rings are in order with its finishing, and a TCP connection from it reports its own
   * close after its last byte. Only a peer with nothing left in flight is closed here.
   */
  readonly peerFinished = (peer: number, ring?: boolean): void => {
    if (this.failure !== undefined) return;
    // A ring between us carries the peer's closing in order after its last message, and this
    // rank may not even have attached it yet (the grant travels apart from this word): its
    // channel reports the close (peerClosed) once everything before it has been delivered.
    if (ring === true && this.transportName(peer) === 'ivcom') return;
    this.progress.poll();
    if (this.transportName(peer) === 'tcp' && this.tcp !== undefined) {
      const state = this.tcp.mayStillDeliverFrom(peer);
      if (state === 'open') return;
      if (state === 'unknown') {
        setTimeout(() => this.peerFinished(peer), HANDSHAKE_RECHECK_MS).unref();
        return;
      }
    }
    this.peerGone(peer);
  };

  /**
   * A freed communicator's context: its matching state goes. Receives still posted on it reject
   * (they would otherwise wait forever, and hold the process open); queued messages are dropped.
   */
  releaseContext(ctx: number): void {
    const m = this.matchers.get(ctx);
    if (m === undefined) return;
    this.matchers.delete(ctx);
    if (ctx === this.lastCtx) {
      this.lastCtx = -1;
      this.lastMatcher = undefined;
    }
    for (const r of m.drainPosted()) {
      r.fail?.(
        new StateError(`rank ${this.rank}: the communicator of this receive was freed (comm.free()) before a message matched it`, { rank: this.rank }),
      );
    }
  }

  /** Collective calls in progress and just returned: checked against what arrives (calls.ts). */
  readonly calls: CollectiveCalls;

  /** What this rank is waiting for, in lines a user can act on (ivrun asks on a hang). */
  report(): string[] {
    // A rank asleep on something else (a slot round, a doorbell it armed before a channel was
    // attached) may not have looked at a ring since a message landed there: take in what has
    // arrived, so the report counts it.
    this.progress.poll();
    let large = 0;
    for (const _ of this.rendezvous.waitingSends()) large++;
    return describeWaits({
      rank: this.rank,
      collectives: this.calls.active,
      contexts: [...this.matchers].map(([ctx, m]) => [ctx, m.snapshot()] as [number, ReturnType<Matcher['snapshot']>]),
      largeSends: this.rendezvous.waitingSends(),
      // Tracked sends that are not large ones wait for transport space.
      queuedSends: Math.max(0, this.pendingSends.size - large),
    });
  }

  get failed(): Error | undefined {
    return this.failure;
  }

  async finalize(): Promise<void> {
    if (this.finalized) return;
    this.leaving = true;
    this.progress.hold();
    try {
      await Promise.allSettled([...this.pendingSends]);
      this.finalized = true;
      this.rejectLeftBehind();
      const rings = this.ivcom?.channelPeers?.();
      await Promise.all([this.ivcom?.close(), this.tcp?.close()]);
      this.bootstrap?.send({ op: 'finalize', rings });
      this.bootstrap?.close();
    } finally {
      this.progress.release();
      this.progress.close();
    }
  }

  /**
   * Receives and probes still posted when this rank leaves can never complete: they reject
   * rather than stay pending, which would let the process exit with the code after them unrun.
   */
  private rejectLeftBehind(): void {
    for (const m of this.matchers.values()) {
      for (const r of m.drainPosted()) {
        const from = r.source === ANY ? 'any rank' : `rank ${r.source}`;
        const tag = r.tag === ANY ? '' : `, tag ${r.tag}`;
        r.fail?.(
          new StateError(
            `rank ${this.rank}: a receive from ${from}${tag} was still posted when finalize() was called and can no longer complete; receive every message before finalize(), or cancel such receives with an AbortSignal`,
            { rank: this.rank, peer: r.source === ANY ? undefined : r.source },
          ),
        );
      }
    }
  }

  abort(code: number, reason: string): never {
    BootstrapClient.leaving = true;
    this.bootstrap?.sendNow({ op: 'abort', code, reason });
    process.exit(code);
  }
}
