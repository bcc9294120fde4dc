// The communicator: MPI point-to-point semantics over the engine's transports and matching.
// Operations post when called (so order is the order of calls) and settle later.

import type { TransportName } from '../transport/transport.js';
import * as coll from './collectives/index.js';
import type { CollPort, Posted, Signature } from './collectives/port.js';
import { announce, type Kind } from './collectives/signature.js';
import type { ActiveCollective } from './report.js';
import { encode } from './codec.js';
import { ANY_SOURCE, ANY_TAG, PROC_NULL } from './constants.js';
import type { Engine } from './engine.js';
import { AbortError, InvalidArgTypeError, OutOfRangeError, StateError, TooLargeError, UnserializableError } from './errors.js';
import { ANY, type Envelope } from './match.js';
import { Outcome } from './outcome.js';
import { MatchedMessage } from './matched.js';
import { NULL_STATUS, Receive, nullResult, statusOf, Taken, Yield, type Message, type ReceiveOwner, type Status } from './receive.js';
import { asBytes, elementsOf } from './typed.js';
import { NO_OPTIONS, checkDest, checkOptions, checkRank, checkSource, checkTag, type RecvOptions } from './validate.js';

export interface SendOptions {
  /** Settle only once a receive has matched the message (MPI_Ssend); to itself a rank's send settles at once. */
  sync?: boolean;
}

/** A collective call: its signature (tags) and its record among the calls in progress. */
interface CallRecord extends Omit<ActiveCollective, 'root'>, Signature {
  kind: Kind;
  /** Reported through port.ended (possibly before the engine was told it started), and whether with a value. */
  ended: boolean;
  endedOk: boolean;
}

/** The public call behind each kind of receive, to name it in errors. */
const YIELD_OPS: Record<Yield, string> = {
  [Yield.Value]: 'recv',
  [Yield.Message]: 'recvMessage',
  [Yield.Into]: 'recvInto',
  [Yield.Status]: 'probe',
  [Yield.Piece]: 'receive',
  [Yield.Claim]: 'mprobe',
};

export class Comm {
  readonly rank: number;
  readonly size: number;
  /** World rank of each member, by communicator rank. */
  protected readonly group: readonly number[];
  private readonly toLocal: Map<number, number> | undefined;
  /** What a receive of this communicator needs to build its result. */
  private readonly owner: ReceiveOwner;

  constructor(
    protected readonly engine: Engine,
    /** Point-to-point context; collectives use ctx + 1. */
    protected readonly ctx: number,
    group: readonly number[],
  ) {
    this.group = group;
    this.size = group.length;
    const me = group.indexOf(engine.rank);
    if (me < 0) throw new StateError(`world rank ${engine.rank} is not a member of this communicator`);
    this.rank = me;
    // The world communicator maps ranks to themselves; others translate at the edges.
    const identity = group.every((w, i) => w === i) && group.length === engine.size;
    this.toLocal = identity ? undefined : new Map(group.map((w, i) => [w, i]));
    this.owner = { rank: me, engine, local: (w) => this.local(w) };
  }

  protected world(r: number): number {
    return this.group[r]!;
  }

  protected local(w: number): number {
    return this.toLocal === undefined ? w : this.toLocal.get(w)!;
  }

  // ---- sending -------------------------------------------------------------------------

  send(data: unknown, dest: number, tag = 0, opts?: SendOptions): Promise<void> {
    let sync = false;
    try {
      checkDest(dest, this.size, this.rank);
      checkTag(tag, this.rank, false);
      if (opts !== undefined) {
        if (typeof opts !== 'object' || opts === null) throw new InvalidArgTypeError(`rank ${this.rank}: send options must be an object like { sync: true }, got ${typeof opts}`);
        sync = opts.sync === true;
      }
      this.checkLive('send');
    } catch (e) {
      return Promise.reject(e);
    }
    if (dest === PROC_NULL) return Promise.resolve();
    return this.sendOn(this.ctx, data, dest, tag, sync);
  }

  protected sendOn(ctx: number, data: unknown, dest: number, tag: number, sync = false): Promise<void> {
    let enc;
    try {
      enc = encode(data);
    } catch (e) {
      if (!(e instanceof UnserializableError || e instanceof TooLargeError)) return Promise.reject(e);
      const Kind = e instanceof TooLargeError ? TooLargeError : UnserializableError;
      return Promise.reject(new Kind(`rank ${this.rank}: send to rank ${dest} (tag ${tag}): ${e.message}`, { rank: this.rank, peer: dest, cause: e.cause }));
    }
    return this.engine.send(ctx, this.world(dest), tag, enc.codec, enc.bytes, sync);
  }

  // ---- receiving -----------------------------------------------------------------------

  /** Posts a receive (or a blocking probe) on a context. */
  protected post<T>(
    ctx: number,
    source: number,
    tag: number,
    opts: RecvOptions,
    yields: Yield,
    probe = false,
    into?: Uint8Array,
  ): Promise<T> {
    const req = this.postReceive(ctx, source, tag, opts, yields, probe, into);
    if (req instanceof Promise) return req as Promise<T>;
    if (this.mustWait(ctx, req)) this.engine.progress.kick();
    return req.promise as Promise<T>;
  }

  /**
   * A collective step's receive (CollPort.recvNow): posted, then waited for right here for a
   * moment (Progress.waitNow), so a step whose partner is already there goes on without a hop.
   */
  protected recvNowOn(ctx: number, source: number, tag: number): Posted {
    // First, the partner's message straight from its ring, also while waiting a moment for it
    // (Engine.takeFrom): no receive, no promise, no matching for a step that needs none.
    const engine = this.engine;
    const from = source >= 0 && source < this.size ? this.world(source) : -1;
    let waited = false;
    let m = from >= 0 ? engine.takeFrom(ctx, from, tag) : null;
    if (m === undefined) {
      m = engine.progress.waitTake(() => engine.takeFrom(ctx, from, tag), from);
      waited = m !== null;
    }
    if (m != null) return new Taken(m, engine);
    const req = this.postReceive(ctx, source, tag, NO_OPTIONS, Yield.Value, false, undefined);
    if (req instanceof Promise) return { outcome: Outcome.Pending, value: undefined, promise: req };
    // After a wait for the take that ran out, the usual spin takes over (no second wait here).
    if (this.mustWait(ctx, req)) {
      if (waited) engine.progress.kick();
      else engine.progress.waitNow(req);
    }
    return req;
  }

  /** A posted receive that did not match at once, and that a message may still satisfy. */
  private mustWait(ctx: number, req: Receive): boolean {
    const engine = this.engine;
    return !req.done && !(engine.anyPeerGone && engine.rejectIfUnsatisfiable(engine.matcher(ctx), req));
  }

  /** Checks and posts a receive; a promise when it is refused (rejected) or answered at once (PROC_NULL). */
  private postReceive(
    ctx: number,
    source: number,
    tag: number,
    opts: RecvOptions,
    yields: Yield,
    probe: boolean,
    into: Uint8Array | undefined,
  ): Receive | Promise<unknown> {
    const engine = this.engine;
    if (engine.failed) return Promise.reject(engine.failed);
    if (source === PROC_NULL) return Promise.resolve(nullResult(yields));
    // Collective contexts (odd) are left alone: a collective begun before finalize() finishes.
    if ((ctx & 1) === 0 || this.freed) {
      const bad = this.unusable(YIELD_OPS[yields]);
      if (bad !== undefined) return Promise.reject(bad);
    }
    if ((ctx & 1) === 1) {
      const broken = engine.calls.brokenCall(ctx, tag);
      if (broken !== undefined) return Promise.reject(broken);
    }
    const signal = opts.signal;
    if (signal?.aborted) return Promise.reject(new AbortError(undefined, { cause: signal.reason }));
    const matcher = engine.matcher(ctx);
    const req = new Receive(
      this.owner,
      yields,
      source === ANY_SOURCE ? ANY : this.world(source),
      tag === ANY_TAG ? ANY : tag,
      into,
      signal,
    );
    engine.progress.hold();
    if (signal !== undefined) req.listen(matcher);
    req.seq = postSeq++;
    if (probe) matcher.probe(req);
    else matcher.post(req);
    return req;
  }

  protected recvOn(ctx: number, source: number, tag: number, opts: RecvOptions = NO_OPTIONS): Promise<unknown> {
    return this.post(ctx, source, tag, opts, Yield.Value);
  }

  recv<T = unknown>(source: number = ANY_SOURCE, tag: number = ANY_TAG, opts?: RecvOptions): Promise<T> {
    let o: RecvOptions;
    try {
      o = this.checkRecv(source, tag, opts);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.post(this.ctx, source, tag, o, Yield.Value);
  }

  recvMessage<T = unknown>(source: number = ANY_SOURCE, tag: number = ANY_TAG, opts?: RecvOptions): Promise<Message<T>> {
    let o: RecvOptions;
    try {
      o = this.checkRecv(source, tag, opts);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.post(this.ctx, source, tag, o, Yield.Message);
  }

  /**
   * Receives into a caller's buffer: the message's bytes (for non-raw values, their encoded
   * form) are copied in. A message larger than the buffer is consumed and rejected with
   * ERR_IVCOM_TRUNCATE.
   */
  recvInto(buffer: ArrayBufferView, source: number = ANY_SOURCE, tag: number = ANY_TAG, opts?: RecvOptions): Promise<Status> {
    let o: RecvOptions;
    try {
      if (!ArrayBuffer.isView(buffer)) {
        throw new InvalidArgTypeError(`rank ${this.rank}: recvInto needs a typed array, Buffer or DataView to fill`);
      }
      o = this.checkRecv(source, tag, opts);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.post(this.ctx, source, tag, o, Yield.Into, false, asBytes(buffer));
  }

  sendrecv<T = unknown>(data: unknown, dest: number, source: number = ANY_SOURCE, sendTag = 0, recvTag: number = ANY_TAG, opts?: RecvOptions): Promise<T> {
    const bad = this.unusable('sendrecv');
    if (bad !== undefined) return Promise.reject(bad);
    return this.exchange(data, dest, sendTag, this.recv<T>(source, recvTag, opts));
  }

  /** sendrecv whose result is a Message ({ data, source, tag, byteLength }). */
  sendrecvMessage<T = unknown>(
    data: unknown,
    dest: number,
    source: number = ANY_SOURCE,
    sendTag = 0,
    recvTag: number = ANY_TAG,
    opts?: RecvOptions,
  ): Promise<Message<T>> {
    const bad = this.unusable('sendrecvMessage');
    if (bad !== undefined) return Promise.reject(bad);
    return this.exchange(data, dest, sendTag, this.recvMessage<T>(source, recvTag, opts));
  }

  /**
   * Sends while `received` (posted first, so that two ranks exchanging with each other never
   * wait on each other's send) completes; resolves with what was received.
   */
  private async exchange<R>(data: unknown, dest: number, sendTag: number, received: Promise<R>): Promise<R> {
    const [v] = await Promise.all([received, this.send(data, dest, sendTag)]);
    return v;
  }

  /**
   * Waits for a message that fits and claims it (MPI_Mprobe): no other receive can take it any
   * more; receive it with the returned handle's recv() or recvInto().
   */
  async mprobe<T = unknown>(source: number = ANY_SOURCE, tag: number = ANY_TAG, opts?: RecvOptions): Promise<MatchedMessage<T>> {
    const o = this.checkRecv(source, tag, opts);
    if (source === PROC_NULL) return new MatchedMessage<T>(this.owner, undefined);
    const env = (await this.post(this.ctx, source, tag, o, Yield.Claim)) as Envelope;
    return new MatchedMessage<T>(this.owner, env);
  }

  /** mprobe without waiting: the claimed message, or null when none fits now. */
  improbe<T = unknown>(source: number = ANY_SOURCE, tag: number = ANY_TAG): MatchedMessage<T> | null {
    this.checkRecv(source, tag, undefined);
    if (source === PROC_NULL) return new MatchedMessage<T>(this.owner, undefined);
    this.checkLive('improbe');
    const m = this.engine.matcher(this.ctx);
    const pattern = source === ANY_SOURCE ? ANY : this.world(source);
    let env = m.take(pattern, tag);
    if (env === undefined && this.engine.progress.poll() > 0) env = m.take(pattern, tag);
    return env === undefined ? null : new MatchedMessage<T>(this.owner, env);
  }

  async probe(source: number = ANY_SOURCE, tag: number = ANY_TAG, opts?: RecvOptions): Promise<Status> {
    const o = this.checkRecv(source, tag, opts);
    return this.post(this.ctx, source, tag, o, Yield.Status, true);
  }

  iprobe(source: number = ANY_SOURCE, tag: number = ANY_TAG): Status | null {
    this.checkRecv(source, tag, undefined);
    if (source === PROC_NULL) return { ...NULL_STATUS };
    this.checkLive('iprobe');
    const m = this.engine.matcher(this.ctx);
    let env = m.peek(source === ANY_SOURCE ? ANY : this.world(source), tag);
    if (env === undefined && this.engine.progress.poll() > 0) {
      env = m.peek(source === ANY_SOURCE ? ANY : this.world(source), tag);
    }
    return env === undefined ? null : statusOf(this.owner, env);
  }


  private checkRecv(source: unknown, tag: unknown, opts: unknown): RecvOptions {
    checkSource(source, this.size, this.rank);
    checkTag(tag, this.rank, true);
    return checkOptions(opts, this.rank);
  }

  // ---- collectives ------------------------------------------------------------------------
  // Written against a port on this communicator's collective context (ctx + 1), so collective
  // traffic never matches user point-to-point messages.

  private portCache: CollPort | undefined;
  protected get port(): CollPort {
    if (this.portCache === undefined) {
      const cctx = this.ctx + 1;
      const peers = this.engine.peers;
      this.portCache = {
        rank: this.rank,
        size: this.size,
        worldRank: this.engine.rank,
        signature: undefined,
        slot: 0,
        send: (data, dest, tag) => this.sendOn(cctx, data, dest, tag),
        recv: (source, tag) => this.recvOn(cctx, source, tag),
        recvNow: (source, tag) => this.recvNowOn(cctx, source, tag),
        sent: this.engine.sent,
        hostOf: (r) => peers[this.world(r)]!.node,
        recvInto: (into, source, tag) => this.post(cctx, source, tag, NO_OPTIONS, Yield.Piece, false, asBytes(into)),
        ended: (sig, ok) => this.callEnded(sig, ok),
        // The world communicator only: its calls are the host group's one sequence.
        slots: this.ctx === 0 ? this.engine.hostSlots : undefined,
      };
    }
    return this.portCache;
  }

  private collSeq = 0;

  /**
   * Runs a collective: its messages carry its kind and root (signature.ts), and while it is in
   * progress the engine checks what arrives for its slot against them (a mismatch rejects it)
   * and lists it in the rank's report (report.ts).
   */
  private collective<T>(kind: Kind, root: number | undefined, run: () => Promise<T>): Promise<T> {
    const bad = this.unusable(kind);
    if (bad !== undefined) return Promise.reject(bad);
    const port = this.port;
    // One record per call: what its tags carry (the port's signature) and what the engine checks
    // arrivals against while it is in progress.
    const call: CallRecord = { ctx: this.ctx, kind, seq: 0, root, base: -1, reportsEnd: false, ended: false, endedOk: false };
    announce(port, call);
    let p: Promise<T>;
    try {
      p = run();
    } catch (e) {
      return Promise.reject(e);
    } finally {
      announce(port, undefined);
    }
    if (call.base < 0) return p; // refused before it began (bad arguments): nothing to watch
    // A mismatch rejects the call through its receives (calls.ts): the ones posted, and any it
    // posts afterwards.
    call.seq = ++this.collSeq;
    const calls = this.engine.calls;
    calls.started(call);
    if (call.reportsEnd) {
      // It tells the port its end itself (port.ended); one that ended already (failed at once,
      // or completed within run(): its steps' partners were there) is reported here.
      if (call.ended) calls.returnedFrom(call, call.endedOk);
      return p;
    }
    p.then(
      () => calls.returnedFrom(call, true),
      () => calls.returnedFrom(call, false),
    );
    return p;
  }

  /**
   * port.ended: a call that reports its own end (Signature.reportsEnd) has returned or failed.
   * One that ended inside collective()'s run(), before the engine was told it started (seq 0),
   * is reported there.
   */
  private callEnded(sig: Signature, ok: boolean): void {
    const call = sig as CallRecord;
    call.ended = true;
    call.endedOk = ok;
    if (call.seq !== 0) this.engine.calls.returnedFrom(call, ok);
  }

  barrier(): Promise<void> {
    return this.collective('barrier', undefined, () => coll.barrier(this.port));
  }

  bcast<T>(data: T, root = 0): Promise<T> {
    return this.collective('bcast', root, () => coll.bcast(this.port, data, root));
  }

  reduce<T>(data: T, op: coll.OpLike = coll.Op.SUM, root = 0): Promise<T | undefined> {
    return this.collective('reduce', root, () => coll.reduce(this.port, data, op, root));
  }

  /**
   * With `{ into }` (a typed array of the contribution's kind and length, or the contribution
   * itself for in place) the result is written there and `into` is returned.
   */
  allreduce<T>(data: T, op: coll.OpLike = coll.Op.SUM, opts?: { into?: ArrayBufferView }): Promise<T> {
    if (opts !== undefined && (typeof opts !== 'object' || opts === null)) {
      return Promise.reject(new InvalidArgTypeError(`rank ${this.rank}: allreduce options must be an object like { into }, got ${typeof opts}`));
    }
    return this.collective('allreduce', undefined, () => coll.allreduce(this.port, data, op, opts?.into as never));
  }

  gather<T>(data: T, root = 0): Promise<T[] | undefined> {
    return this.collective('gather', root, () => coll.gather(this.port, data, root));
  }

  allgather<T>(data: T): Promise<T[]> {
    return this.collective('allgather', undefined, () => coll.allgather(this.port, data));
  }

  scatter<T>(array: T[] | undefined, root = 0): Promise<T> {
    return this.collective('scatter', root, () => coll.scatter(this.port, array, root));
  }

  alltoall<T>(array: T[]): Promise<T[]> {
    return this.collective('alltoall', undefined, () => coll.alltoall(this.port, array));
  }

  scan<T>(data: T, op: coll.OpLike = coll.Op.SUM): Promise<T> {
    return this.collective('scan', undefined, () => coll.scan(this.port, data, op));
  }

  exscan<T>(data: T, op: coll.OpLike = coll.Op.SUM): Promise<T | undefined> {
    return this.collective('exscan', undefined, () => coll.exscan(this.port, data, op));
  }

  // ---- communicators ----------------------------------------------------------------------

  /**
   * Splits into one communicator per color, ordered by (key, rank). A rank passing color
   * undefined takes part but gets null. Collective over this communicator.
   */
  async split(color: number | undefined, key: number = this.rank): Promise<Comm | null> {
    if (color !== undefined && (typeof color !== 'number' || !Number.isInteger(color) || color < 0)) {
      throw typeof color === 'number'
        ? new OutOfRangeError(`rank ${this.rank}: split color must be a non-negative integer or undefined, got ${color}`)
        : new InvalidArgTypeError(`rank ${this.rank}: split color must be a non-negative integer or undefined, got ${typeof color}`);
    }
    if (typeof key !== 'number' || !Number.isInteger(key)) {
      throw new InvalidArgTypeError(`rank ${this.rank}: split key must be an integer, got ${String(key)}`);
    }
    const all = await this.collective('split', undefined, () => coll.allgather(this.port, [color ?? -1, key, this.engine.nextCtx]));
    // A fresh context id for every new communicator: above every member's next free id.
    const base = Math.max(...all.map((e) => e[2]!));
    const colors = [...new Set(all.map((e) => e[0]!).filter((c) => c >= 0))].sort((a, b) => a - b);
    this.engine.nextCtx = Math.max(this.engine.nextCtx, base + 2 * colors.length);
    if (color === undefined) return null;
    const members = all
      .map((e, r) => ({ color: e[0]!, key: e[1]!, r }))
      .filter((m) => m.color === color)
      .sort((a, b) => a.key - b.key || a.r - b.r)
      .map((m) => this.world(m.r));
    return new Comm(this.engine, base + 2 * colors.indexOf(color), members);
  }

  /** The same group in a separate message space: nothing sent on one is received on the other. */
  async dup(): Promise<Comm> {
    const base = await this.collective('dup', undefined, () => coll.allreduce(this.port, this.engine.nextCtx, coll.Op.MAX));
    this.engine.nextCtx = Math.max(this.engine.nextCtx, base + 2);
    return new Comm(this.engine, base, this.group);
  }

  /**
   * The ranks of this communicator that share a host ('shared', MPI_COMM_TYPE_SHARED: they talk
   * through shared memory) or a VM ('vm': one domain of ivrun's --vms). Collective.
   */
  splitType(type: 'shared' | 'vm', key: number = this.rank): Promise<Comm> {
    if (type !== 'shared' && type !== 'vm') {
      return Promise.reject(new OutOfRangeError(`rank ${this.rank}: splitType takes 'shared' (the ranks of this host) or 'vm' (of this VM), got ${String(type)}`));
    }
    const me = this.engine.peers[this.engine.rank];
    const color = me === undefined ? 0 : type === 'shared' ? me.node : me.domain;
    return this.split(color, key) as Promise<Comm>;
  }

  private freed = false;

  /**
   * Releases the communicator (MPI_Comm_free): what it holds goes, and every later operation on
   * it rejects with ERR_IVCOM_STATE. Local; the world communicator cannot be freed.
   */
  free(): void {
    if (this.ctx === 0) throw new StateError(`rank ${this.rank}: the world communicator cannot be freed`, { rank: this.engine.rank });
    if (this.freed) return;
    this.freed = true;
    this.engine.releaseContext(this.ctx);
    this.engine.releaseContext(this.ctx + 1);
  }

  /** Why `op` cannot run on this communicator any more (freed, or finalize() called), if so. */
  private unusable(op: string): StateError | undefined {
    const rank = this.engine.rank;
    if (this.engine.leaving) {
      return new StateError(
        `rank ${rank}: ${op}() after finalize(): this rank has left the job and can no longer communicate; finish every operation before calling finalize()`,
        { rank },
      );
    }
    if (this.freed) return new StateError(`rank ${this.rank}: ${op} on a communicator that was freed (comm.free()); use one that is still alive`, { rank });
    return undefined;
  }

  /** Throws ERR_IVCOM_STATE when the communicator was freed or finalize() was called. */
  private checkLive(op: string): void {
    const bad = this.unusable(op);
    if (bad !== undefined) throw bad;
  }

  /**
   * Reduces a typed array of size * k elements and gives each rank its k-element block of the
   * result (MPI_Reduce_scatter_block). Collective.
   */
  reduceScatterBlock<T extends ArrayBufferView>(data: T, op: coll.OpLike = coll.Op.SUM): Promise<T> {
    const bad = this.unusable('reduceScatterBlock');
    if (bad !== undefined) return Promise.reject(bad);
    const n = elementsOf(data);
    if (n === undefined) {
      return Promise.reject(new InvalidArgTypeError(`rank ${this.rank}: reduceScatterBlock takes a typed array of size * k elements`));
    }
    if (n % this.size !== 0) {
      return Promise.reject(new OutOfRangeError(`rank ${this.rank}: reduceScatterBlock needs a length that ${this.size} ranks divide, got ${n}`));
    }
    return this.reduceScatter(data, new Array<number>(this.size).fill(n / this.size), op);
  }

  /**
   * Reduces a typed array and gives rank i the counts[i] elements that follow those of the
   * ranks before it (MPI_Reduce_scatter). Collective; every rank passes the same counts.
   */
  reduceScatter<T extends ArrayBufferView>(data: T, counts: readonly number[], op: coll.OpLike = coll.Op.SUM): Promise<T> {
    const bad = this.unusable('reduceScatter');
    if (bad !== undefined) return Promise.reject(bad);
    const n = elementsOf(data);
    if (n === undefined) {
      return Promise.reject(new InvalidArgTypeError(`rank ${this.rank}: reduceScatter takes a typed array`));
    }
    if (!Array.isArray(counts) || counts.length !== this.size || counts.some((c) => !Number.isInteger(c) || c < 0)) {
      return Promise.reject(new InvalidArgTypeError(`rank ${this.rank}: reduceScatter counts must be ${this.size} non-negative integers, one per rank`));
    }
    const total = counts.reduce((a, b) => a + b, 0);
    if (total !== n) {
      return Promise.reject(new OutOfRangeError(`rank ${this.rank}: reduceScatter counts add up to ${total}, but the array holds ${n} elements`));
    }
    const from = counts.slice(0, this.rank).reduce((a, b) => a + b, 0);
    // The whole reduction, then this rank's block: simple and exactly MPI's result; the ring's
    // reduce-scatter phase would move less for large arrays.
    return this.collective('reduce_scatter', undefined, () => coll.allreduce(this.port, data, op)).then(
      (r) => (r as unknown as { slice(a: number, b: number): T }).slice(from, from + counts[this.rank]!),
    );
  }

  // ---- the rest -------------------------------------------------------------------------

  /** Which transport carries messages to `peer`: 'self', 'ivcom' or 'tcp'. */
  transportTo(peer: number): TransportName {
    checkRank('peer', peer, this.size, this.rank);
    return this.engine.transportName(this.world(peer));
  }

  /** Ends the whole job now with `code` (ivrun exits with it). */
  abort(code = 1): never {
    return this.engine.abort(code, `comm.abort(${code})`);
  }
}

let postSeq = 0;
