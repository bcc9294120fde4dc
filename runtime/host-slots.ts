// Small collectives of a job that runs on one host, through the host group's slots
// (transport/ivcom/group.ts; ivrun --host-slots): every rank publishes its part once and reads
// everybody's, so an 8 B allreduce or a barrier is one round with one wait, not log2(p) rounds
// of messages, each with its matching, its receive and its wake-up. Ranks outnumbering cores
// gain most: a rank that gets the core finds every part that is there, instead of one partner's
// message per turn (docs/performance.md, stop 28).
//
// Every rank reduces all the parts in rank order with the same kernel, so all get identical bits.
// Calls run one at a time in call order (the slot's two buffers rely on it, group.ts).
//
// A large allreduce (allreduceCopyBytes) makes up to four rounds: the ranks say where their
// contribution and result are; then (host-copy.ts) each reduces its chunk out of the others'
// contributions by single copy, and takes the others' chunks out of their results, saying after
// each step that it is done, so nobody's memory is read after its call returned. Whether all can
// copy is decided from what all said, so every rank goes the same way: by copy, or by messages.

import { GROUP_DATA_BYTES, type Descriptor } from '../transport/ivcom/group-layout.js';
import type { HostGroup } from '../transport/ivcom/group.js';
import { CollectiveMismatchError, CorruptError, PeerLostError } from './errors.js';
import { allocLike, allocToOverwrite, BUILTIN_OPS, type Kernel } from './collectives/op.js';
import { allreduceCopyBytes } from './collectives/select.js';
import { CopyStatus, gatherChunks, probe, reduceOwnChunk, type CopyPlan, type SlotCopier } from './host-copy.js';
import { Waited, type Progress } from './progress.js';
import { asBytes, CTOR_OF_KIND, typedKind, type AnyTypedArray } from './typed.js';

/** A settled promise: awaiting it is one microtask hop (what a delivered message's continuation needs). */
const SETTLED = Promise.resolve();

/** What a slot call is (Descriptor.kind). */
const enum SlotKind {
  Barrier = 1,
  /** A small typed array with a built-in op: the data travels in the slot. */
  Allreduce = 2,
  /** Any other allreduce: the slot round only checks that every rank took this path too. */
  AllreduceByMessages = 3,
  /** A large typed array with a built-in op: addresses in the slot, data by single copy. */
  AllreduceByCopy = 4,
  /** The later rounds of AllreduceByCopy; Descriptor.op is the rank's CopyStatus. */
  CopyProbed = 5,
  CopyReduced = 6,
  CopyGathered = 7,
}

/** The first AllreduceByCopy round's words: where, how long, and what the rank can (FLAG_*). */
const AT_DATA = 0;
const AT_OUT = 1;
const AT_BYTES = 2;
const AT_FLAGS = 3;
const COPY_WORDS_BYTES = 4 * 8;
/** Every other rank of the host may be read (same user, pid known, not refused before). */
const FLAG_CAN_COPY = 1;
/** Every other rank has been read before: no refusal is to be expected. */
const FLAG_PROVEN = 2;
/** The result is the contribution: once changed, going by messages instead is impossible. */
const FLAG_IN_PLACE = 4;

/**
 * Descriptor.op of an allreduce: the op's number times KIND_SPAN plus the typed kind's (numbers
 * from 1, in the tables' own order, the same in every rank of a job).
 */
const OP_IDS: ReadonlyMap<string, number> = new Map(BUILTIN_OPS.map((o, i) => [o, i + 1]));
const KIND_IDS: ReadonlyMap<string, number> = new Map([...CTOR_OF_KIND.keys()].map((k, i) => [k, i + 1]));
const KIND_NAMES: readonly string[] = ['', ...CTOR_OF_KIND.keys()];
const OP_NAMES: readonly string[] = ['', ...OP_IDS.keys()];
/** More than the typed kinds there are. */
const KIND_SPAN = 32;

/** One call: what it says (its descriptor) and, for an allreduce in the slots, its data. */
interface SlotCall {
  readonly d: Descriptor;
  /** The communicator's record of the call (port.signature), when it keeps one. */
  readonly record?: object;
  readonly data?: AnyTypedArray;
  readonly kind?: string;
  readonly kernel?: Kernel;
  readonly into?: AnyTypedArray;
  /** A large allreduce by single copy (several rounds, copyCall). */
  readonly copy?: true;
}

const BARRIER: Descriptor = { kind: SlotKind.Barrier, op: 0, bytes: 0 };
const BY_MESSAGES: Descriptor = { kind: SlotKind.AllreduceByMessages, op: 0, bytes: 0 };

export class HostSlots {
  /** The group, once its grant is here (the first call waits for it). */
  private group: HostGroup | undefined;
  private arrived: Promise<HostGroup> | undefined;
  /** The number of the last call started (the group's calls count from 1). */
  private call = 0;
  /** The call in progress, if any: later calls start after it. */
  private busy: Promise<unknown> | undefined;
  private failure: Error | undefined;
  /** A sleeping wait's wake-up (the doorbell rang) and its way out (failure). */
  private sleeper: { resolve: () => void; reject: (e: Error) => void } | undefined;
  /** The call in progress met another call's message (calls.ts): it ends with this. */
  private callError: Error | undefined;
  /** The record of the call in progress (between its publish and its end). */
  private current: object | undefined;
  /** Records of calls waiting for the one in progress, and the errors of those aborted meanwhile. */
  private readonly queued = new Set<object>();
  private readonly aborted = new WeakMap<object, Error>();
  /** The first mismatch: the ranks' slot calls are out of step since (outOfStep()). */
  private broken: Error | undefined;
  /** Typed views of the slots' data regions, by kind (viewsOf()). */
  private readonly views = new Map<string, AnyTypedArray[]>();
  /**
   * The last small allreduce's kind and op, and what the tables made of them (its descriptor's op
   * number, the slots' views of that kind): a loop of like calls, the common case, looks nothing
   * up (typedKind() keeps its own last answer). The lookups were six Map.get a call, ~3 % of an
   * 8 B allreduce's samples (perf, docs/performance.md, stop 31).
   */
  private lastKind = '';
  private lastOp = '';
  private lastOpId = 0;
  private lastViews: AnyTypedArray[] | undefined;
  private readonly checkReady: () => boolean = () => this.callError !== undefined || this.complete(this.call);
  private readonly turn = (r: () => void): void => void setImmediate(r);

  constructor(
    /** Asks for the group (the first call does: memory only for jobs that make collectives). */
    private readonly ask: () => Promise<HostGroup>,
    private readonly progress: Progress,
    private readonly rank: number,
    /** Peers that have finished (engine): a call they never joined can never complete. */
    private readonly gone: ReadonlySet<number>,
    /** Single copy between the host's ranks (absent: --single-copy off, or none here). */
    private readonly copier?: SlotCopier,
  ) {}

  private arrival(): Promise<HostGroup> {
    this.arrived ??= this.ask().then((g) => {
      this.group = g;
      g.wakeWith(() => this.sleeper?.resolve());
      return g;
    });
    return this.arrived;
  }

  /** Whether allreduce(data) travels in the slots (else allreduceByMessages first). */
  carries(data: AnyTypedArray, kernel: Kernel | undefined): boolean {
    return kernel !== undefined && data.byteLength <= GROUP_DATA_BYTES;
  }

  /** allreduce of a small typed array with a built-in op: a fresh result, or `into`. */
  allreduce<T extends AnyTypedArray>(data: T, op: string, kernel: Kernel, into: T | undefined, record: object | undefined): Promise<T> {
    const kind = typedKind(data)!;
    if (kind !== this.lastKind || op !== this.lastOp) {
      this.lastOpId = OP_IDS.get(op)! * KIND_SPAN + KIND_IDS.get(kind)!;
      if (kind !== this.lastKind) this.lastViews = undefined;
      this.lastKind = kind;
      this.lastOp = op;
    }
    const d: Descriptor = { kind: SlotKind.Allreduce, op: this.lastOpId, bytes: data.byteLength };
    return this.run({ d, record, data, kind, kernel, into }) as Promise<T>;
  }

  /**
   * Whether allreduce(data) among `ranks` ranks (the world, all on this host) goes by
   * allreduceByCopy: it has a built-in op's kernel and is large.
   */
  copies(data: AnyTypedArray, kernel: Kernel | undefined, ranks: number): boolean {
    return kernel !== undefined && data.byteLength >= allreduceCopyBytes(ranks);
  }

  /**
   * allreduce of a large typed array with a built-in op by single copy: a fresh result, or
   * `into`. Undefined: some rank cannot copy (or a copy was refused before anything changed),
   * and every rank learned it in the same round: all go by messages instead.
   */
  allreduceByCopy<T extends AnyTypedArray>(data: T, op: string, kernel: Kernel, into: T | undefined, record: object | undefined): Promise<T | undefined> {
    const kind = typedKind(data)!;
    const d: Descriptor = { kind: SlotKind.AllreduceByCopy, op: OP_IDS.get(op)! * KIND_SPAN + KIND_IDS.get(kind)!, bytes: COPY_WORDS_BYTES };
    return this.run({ d, record, data, kind, kernel, into, copy: true }) as Promise<T | undefined>;
  }

  /** The slot round an allreduce that goes by messages makes first: every rank must go that way. */
  allreduceByMessages(record: object | undefined): Promise<void> {
    return this.run({ d: BY_MESSAGES, record }) as Promise<void>;
  }

  barrier(record: object | undefined): Promise<void> {
    return this.run({ d: BARRIER, record }) as Promise<void>;
  }

  /** The engine failed: the call waiting now, and every later one, reject with its cause. */
  fail(err: Error): void {
    this.failure ??= err;
    this.sleeper?.reject(err);
  }

  /**
   * The call `record` (the communicator's record of it, calls.ts) met another collective's
   * message at its point: if it is this object's call in progress, or one queued behind it, it
   * ends with `err` (true). False: it is not here (an allreduce past its slot round, in its
   * messages).
   */
  abortCall(record: object, err: Error): boolean {
    if (record === this.current) {
      this.callError ??= err;
      this.sleeper?.resolve();
      return true;
    }
    if (this.queued.has(record)) {
      this.aborted.set(record, err);
      return true;
    }
    return false;
  }

  /** A peer finished: a sleeping call that it never joined rejects. */
  peerGone(): void {
    const s = this.sleeper;
    if (s === undefined || this.group === undefined) return;
    try {
      this.checkPeers(this.group, this.call);
    } catch (err) {
      s.reject(err as Error);
    }
  }

  /**
   * Once the ranks' slot calls went out of step (a mismatch), which call meets which is no
   * longer known: every later call fails at once, naming the first mismatch (docs/decisions.md,
   * stop 28: with messages a program can go on after one).
   */
  private outOfStep(err: Error): Error {
    this.broken ??= err;
    return err;
  }

  private run(c: SlotCall): Promise<unknown> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    if (this.broken !== undefined) {
      return Promise.reject(
        new CollectiveMismatchError(
          `rank ${this.rank}: the world communicator's collectives went out of step at an earlier call (${this.broken.message}); in the host group (ivrun --host-slots) they cannot go on after that: end the job, or run with --host-slots off`,
          { rank: this.rank },
        ),
      );
    }
    const g = this.group;
    if (g === undefined) {
      // The grant's socket does not hold the event loop open; a call waiting for it does.
      this.progress.hold();
      const release = (): void => this.progress.release();
      return this.arrival().finally(release).then(() => this.run(c));
    }
    const record = c.record;
    if (this.busy !== undefined) {
      if (record !== undefined) this.queued.add(record);
      const again = (): Promise<unknown> => {
        if (record !== undefined) {
          this.queued.delete(record);
          const err = this.aborted.get(record);
          if (err !== undefined) return Promise.reject(err);
        }
        return this.run(c);
      };
      return this.busy.then(again, again);
    }
    try {
      this.current = record;
      let p: Promise<unknown>;
      if (c.copy === true) {
        p = this.copyCall(g, c).finally(() => {
          this.current = undefined;
        });
      } else {
        const call = this.publish(g, c);
        const w = this.progress.waitFor(this.checkReady);
        if (w === Waited.Ready) return Promise.resolve(this.finish(g, call, c));
        p = this.waitAsync(g, call, w).then(
          () => this.finish(g, call, c),
          (err: unknown) => {
            this.current = undefined;
            throw err;
          },
        );
      }
      const busy = p.then(
        () => {
          if (this.busy === busy) this.busy = undefined;
        },
        () => {
          if (this.busy === busy) this.busy = undefined;
        },
      );
      this.busy = busy;
      return p;
    } catch (err) {
      this.current = undefined;
      return Promise.reject(err);
    }
  }

  private publish(g: HostGroup, c: SlotCall): number {
    const call = ++this.call;
    if (c.data !== undefined) this.viewsOf(g, c.kind!)[g.me * 2 + (call & 1)]!.set(c.data as never);
    g.publish(call, c.d);
    return call;
  }

  /**
   * Views of every slot's two data regions as `kind` (index slot * 2 + buffer), made once per
   * kind: a view per part and call would be most of what a small allreduce allocates.
   */
  private viewsOf(g: HostGroup, kind: string): AnyTypedArray[] {
    if (kind === this.lastKind && this.lastViews !== undefined) return this.lastViews;
    let v = this.views.get(kind);
    if (v === undefined) {
      const Ctor = CTOR_OF_KIND.get(kind)!;
      const mem = g.buffer as unknown as ArrayBuffer;
      v = [];
      for (let j = 0; j < g.size; j++) {
        for (let b = 0; b < 2; b++) v.push(new Ctor(mem, g.dataOffset(j, b), GROUP_DATA_BYTES / Ctor.BYTES_PER_ELEMENT));
      }
      this.views.set(kind, v);
    }
    if (kind === this.lastKind) this.lastViews = v;
    return v;
  }

  /** Every rank's part of `call` is there. */
  private complete(call: number): boolean {
    const g = this.group!;
    for (let j = 0; j < g.size; j++) if (j !== g.me && !g.arrived(j, call)) return false;
    return true;
  }

  /** Checks every part against this rank's call, then reads the result. */
  private finish(g: HostGroup, call: number, c: SlotCall): unknown {
    this.current = undefined;
    this.throwIfAborted();
    this.agree(g, call, c.d);
    if (c.data === undefined) return undefined;
    // Every part in rank order, this rank's too from its slot (`into` may be `data`: in place).
    const v = this.viewsOf(g, c.kind!);
    const p = call & 1;
    const n = c.data.length;
    const out = c.into ?? allocLike(c.data, n);
    const first = v[p]!;
    for (let i = 0; i < n; i++) out[i] = first[i]!;
    for (let j = 1; j < g.size; j++) c.kernel!(out, out, 0, v[j * 2 + p]!, 0, n);
    return out;
  }

  /** Checks every other rank's descriptor of `call` against this rank's. */
  private agree(g: HostGroup, call: number, mine: Descriptor): void {
    for (let j = 0; j < g.size; j++) {
      if (j === g.me) continue;
      const d = g.descriptor(j, call);
      if (d.kind !== mine.kind || d.op !== mine.op || d.bytes !== mine.bytes) throw this.mismatch(g, j, describe(mine), describe(d));
    }
  }

  private mismatch(g: HostGroup, j: number, mine: string, theirs: string): Error {
    return this.outOfStep(
      new CollectiveMismatchError(
        `rank ${this.rank}: its ${mine} met rank ${g.ranks[j]}'s ${theirs} at the same point of the world communicator; every rank must make the same collective calls, with the same kind, length and op, in the same order`,
        { rank: this.rank, peer: g.ranks[j] },
      ),
    );
  }

  /** Publishes `d` as the next call (its data already in place) and waits for every rank's. */
  private async round(g: HostGroup, d: Descriptor): Promise<number> {
    const call = ++this.call;
    g.publish(call, d);
    const w = this.progress.waitFor(this.checkReady);
    if (w !== Waited.Ready) await this.waitAsync(g, call, w);
    this.throwIfAborted();
    return call;
  }

  /**
   * Another rank made a different collective at this call (abortCall). The call stays published
   * (taking it back would race with the ranks reading it): the others meet it at their slot call
   * and fail there, naming it.
   */
  private throwIfAborted(): void {
    const aborted = this.callError;
    if (aborted === undefined) return;
    this.callError = undefined;
    throw this.outOfStep(aborted);
  }

  /** A round that says how a copy step ended: Done only if it ended so on every rank. */
  private async statusRound(g: HostGroup, kind: SlotKind, mine: CopyStatus): Promise<CopyStatus> {
    const d: Descriptor = { kind, op: mine, bytes: 0 };
    const call = await this.round(g, d);
    let all = mine;
    for (let j = 0; j < g.size; j++) {
      if (j === g.me) continue;
      const theirs = g.descriptor(j, call);
      if (theirs.kind !== kind) throw this.mismatch(g, j, describe(d), describe(theirs));
      if (theirs.op === CopyStatus.Failed) all = CopyStatus.Failed;
      else if (theirs.op !== CopyStatus.Done) {
        throw new CorruptError(`rank ${this.rank}: the host group slot of rank ${g.ranks[j]} is corrupt: its copy status reads ${theirs.op}; the job cannot go on`, {
          rank: this.rank,
          peer: g.ranks[j],
        });
      }
    }
    return all;
  }

  /** The rounds of allreduceByCopy (the file's header); undefined: every rank goes by messages. */
  private async copyCall(g: HostGroup, c: SlotCall): Promise<AnyTypedArray | undefined> {
    const data = c.data!;
    const out = c.into ?? allocToOverwrite(data);
    const cp = this.copier;
    let flags = out === data ? FLAG_IN_PLACE : 0;
    if (cp !== undefined && g.ranks.every((r, j) => j === g.me || cp.allowed(r))) {
      flags |= FLAG_CAN_COPY;
      if (g.ranks.every((r, j) => j === g.me || cp.proven(r))) flags |= FLAG_PROVEN;
    }
    const words = this.viewsOf(g, 'BigUint64Array') as BigUint64Array[];
    const own = words[g.me * 2 + ((this.call + 1) & 1)]!;
    own[AT_DATA] = cp !== undefined ? cp.address(asBytes(data)) : 0n;
    own[AT_OUT] = cp !== undefined ? cp.address(asBytes(out)) : 0n;
    own[AT_BYTES] = BigInt(data.byteLength);
    own[AT_FLAGS] = BigInt(flags);
    const call = await this.round(g, c.d);
    this.agree(g, call, c.d);
    // Every word read once into private memory; the addresses are only ever handed to the kernel.
    const dataAt: bigint[] = [];
    const outAt: bigint[] = [];
    let all = FLAG_CAN_COPY | FLAG_PROVEN;
    let any = flags;
    for (let j = 0; j < g.size; j++) {
      const w = words[j * 2 + (call & 1)]!;
      dataAt.push(w[AT_DATA]!);
      outAt.push(w[AT_OUT]!);
      const bytes = w[AT_BYTES]!;
      const f = j === g.me ? flags : Number(w[AT_FLAGS]! & 7n);
      if (bytes !== BigInt(data.byteLength)) {
        throw this.mismatch(g, j, `allreduce of ${data.byteLength} bytes`, `allreduce of ${bytes} bytes`);
      }
      all &= f;
      any |= f;
    }
    if ((all & FLAG_CAN_COPY) === 0) return undefined;
    const plan: CopyPlan = { data, out, kernel: c.kernel!, ranks: g.ranks, me: g.me, dataAt, outAt };
    const inPlace = (any & FLAG_IN_PLACE) !== 0;
    // Where a contribution is its result, a refusal must come before anybody changes anything.
    if (inPlace && (all & FLAG_PROVEN) === 0 && (await this.statusRound(g, SlotKind.CopyProbed, probe(cp!, plan))) !== CopyStatus.Done) {
      return undefined;
    }
    let st = await this.statusRound(g, SlotKind.CopyReduced, reduceOwnChunk(cp!, plan));
    if (st === CopyStatus.Done) st = await this.statusRound(g, SlotKind.CopyGathered, gatherChunks(cp!, plan));
    if (st === CopyStatus.Done) return out;
    if (!inPlace) return undefined;
    throw new PeerLostError(
      `rank ${this.rank}: a single copy between the host's ranks failed in the middle of an in-place allreduce (${cp!.lastRefusal ?? 'on another rank'}); the contributions are partly overwritten, the job cannot go on`,
      { rank: this.rank },
    );
  }

  /**
   * Past the first spin (`w`: how it ended): let what the polls delivered run, or give the event
   * loop the turn it is owed, and spin again; once a spin runs out, sleep on the doorbell until a
   * publisher rings.
   */
  private async waitAsync(g: HostGroup, call: number, w: Waited): Promise<void> {
    // Not progress.hold(): that says receives are pending, and the progress spin would poll the
    // rings for them a whole budget long. The doorbell's watcher holds the loop while asleep.
    try {
      for (;;) {
        if (w === Waited.Moved) await SETTLED;
        else if (w === Waited.TurnOwed) await new Promise<void>(this.turn);
        else {
          g.sleep(call);
          if (this.complete(call) || this.callError !== undefined) {
            // Taken back, or a publisher took it first and its ring is on the way (a spare wake-up).
            g.wakeUp(call);
            return;
          }
          this.checkPeers(g, call);
          g.holdOpen(true);
          await new Promise<void>((resolve, reject) => (this.sleeper = { resolve, reject }));
          this.sleeper = undefined;
          g.holdOpen(false);
        }
        if (this.callError !== undefined) return;
        this.checkPeers(g, call);
        w = this.progress.waitFor(this.checkReady);
        if (w === Waited.Ready) return;
      }
    } finally {
      this.sleeper = undefined;
      g.holdOpen(false);
    }
  }

  /** Throws the failure, or PeerLost when a finished peer never joined `call`. */
  private checkPeers(g: HostGroup, call: number): void {
    if (this.failure !== undefined) throw this.failure;
    if (this.gone.size === 0) return;
    for (let j = 0; j < g.size; j++) {
      const peer = g.ranks[j]!;
      if (j !== g.me && this.gone.has(peer) && !g.arrived(j, call)) {
        throw new PeerLostError(
          `rank ${this.rank}: a collective call on the world communicator can never complete: rank ${peer} has finalized or exited without making it`,
          { rank: this.rank, peer },
        );
      }
    }
  }
}

function describe(d: Descriptor): string {
  switch (d.kind) {
    case SlotKind.Barrier:
      return 'barrier';
    case SlotKind.Allreduce:
      return `allreduce of ${d.bytes} bytes (${KIND_NAMES[d.op % KIND_SPAN] ?? '?'}, Op.${OP_NAMES[Math.floor(d.op / KIND_SPAN)] ?? '?'})`;
    case SlotKind.AllreduceByCopy:
      return `allreduce of a large array (${KIND_NAMES[d.op % KIND_SPAN] ?? '?'}, Op.${OP_NAMES[Math.floor(d.op / KIND_SPAN)] ?? '?'})`;
    case SlotKind.CopyProbed:
    case SlotKind.CopyReduced:
    case SlotKind.CopyGathered:
      return 'step of a large allreduce';
    case SlotKind.AllreduceByMessages:
      return `allreduce of a value that is not a small typed array with a built-in op (over ${GROUP_DATA_BYTES} bytes, an object, or a custom op)`;
    default:
      return `unknown call (kind ${d.kind})`;
  }
}

