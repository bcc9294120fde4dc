// The ivcom Transport: production glue between grants (from the launcher), the native kmod
// (memfd mapping, eventfd doorbells watched by the event loop) and IvcomChannel (the rings).
// kmod is a constructor parameter (KmodLike) so tests inject fakes; production passes
// `import * as kmod from '../../kmod/index.js'`.

import { closeSync } from 'node:fs';
import type {
  Capabilities,
  Endpoint,
  IncomingMessage,
  OutgoingMessage,
  SharedWords,
  Transport,
  Upcalls,
} from '../transport.js';
import { BootstrapError, IvcomError, OutOfRangeError, StateError } from '../errors.js';
import { DEFAULT_LIMITS, IvcomChannel, type Bell, type ChannelLimits, type ChannelOptions, type CopyBytes, type CopyToPeer } from './channel.js';
import type { Grant, GrantSource } from './grant.js';
import type { GroupGrant } from './group-layout.js';
import { HostGroup } from './group.js';
import {
  CPU_OFF,
  CPU_POLLING,
  CPU_WORKING,
  DEFAULT_CHUNK_BYTES,
  DEFAULT_RING_BYTES,
  chunkBytesFor,
  isValidRingBytes,
  ringBytesOfSegment,
} from './layout.js';

export interface FdWatcherLike {
  start(): void;
  stop(): void;
  ref(): void;
  unref(): void;
  close(): void;
}

/** The part of kmod/index.ts this transport uses (exact names of the native module). */
export interface KmodLike {
  segmentMap(fd: number, bytes: number): SharedArrayBuffer;
  eventfdCreate(): number;
  doorbellRing(fd: number): void;
  doorbellDrain(fd: number): number;
  FdWatcher: new (fd: number, onReadable: () => void) => FdWatcherLike;
  /** sched_yield(); optional so that fakes in tests need not provide it. */
  cpuYield?(): void;
  /** memmove between typed arrays (see ChannelOptions.copy); optional for fakes in tests. */
  copyBytes?: CopyBytes;
  /** copyBytes into the segment by the cheaper stores (see ChannelOptions.toPeer); optional for fakes. */
  copyToPeer?: CopyToPeer;
  copyChoiceWords?: number;
  /** Closes an fd; when absent, node:fs closeSync is used. */
  closeFd?(fd: number): void;
}

export interface IvcomTransportOptions {
  rank: number;
  grants: GrantSource;
  upcalls: Upcalls;
  kmod: KmodLike;
  /** Ring size per direction the launcher is expected to use; sizes eagerLimit. Default 1 MiB. */
  ringBytes?: number;
  /** Largest payload per record (pipelining chunk). Default 256 KiB, at most ringBytes / 4. */
  chunkBytes?: number;
  /** Bounds applied to received headers. */
  limits?: Partial<ChannelLimits>;
  /** Optional destination supplier for large messages (see ChannelOptions.allocate). */
  allocate?: ChannelOptions['allocate'];
}

interface Queued {
  msg: OutgoingMessage;
  resolve: () => void;
  reject: (err: Error) => void;
}

/**
 * Polls in a row that a waiting rank keeps its CPU because the peer it waits for works (each poll
 * is a fraction of a µs): a peer that was preempted while its word said so, or that lies, holds
 * this rank off the scheduler for no longer than that.
 */
export const KEEP_CPU_POLLS = 64;

class PeerState {
  channel: IvcomChannel | undefined;
  endpoint: IvcomEndpoint | undefined;
  requested = false;
  /** Sends accepted before the grant arrived, in call order. */
  early: Queued[] = [];
  watcher: FdWatcherLike | undefined;
  localBellFd = -1;
  peerBellFd = -1;
  /** A failure before or instead of a channel (bad grant, mapping failed). */
  failure: Error | undefined;
  earlyWaiters: (() => void)[] = [];
  constructor(readonly peer: number) {}
}

class IvcomEndpoint implements Endpoint {
  constructor(
    readonly peer: number,
    readonly caps: Capabilities,
    private readonly t: IvcomTransport,
    private readonly st: PeerState,
  ) {}

  get shared(): SharedWords | undefined {
    return this.st.channel?.shared;
  }

  send(msg: OutgoingMessage): Promise<void> | undefined {
    const ch = this.st.channel;
    if (ch !== undefined) return ch.send(msg);
    return this.t.sendEarly(this.st, msg);
  }
}

export class IvcomTransport implements Transport {
  readonly caps: Capabilities;
  readonly rank: number;
  private readonly grants: GrantSource;
  private readonly upcalls: Upcalls;
  private readonly kmod: KmodLike;
  private readonly chunkBytes: number;
  private readonly limits: ChannelLimits;
  private readonly allocate: ChannelOptions['allocate'];
  private readonly peers = new Map<number, PeerState>();
  /** Attached, open channels: what poll() and idle() walk. */
  private channels: IvcomChannel[] = [];
  private closing: Promise<void> | undefined;
  /** close() finished: grants arriving now are refused. */
  private closed = false;

  constructor(opts: IvcomTransportOptions) {
    const ringBytes = opts.ringBytes ?? DEFAULT_RING_BYTES;
    if (!isValidRingBytes(ringBytes)) throw new OutOfRangeError(`ivcom: invalid ringBytes ${ringBytes}`);
    if (!Number.isInteger(opts.rank) || opts.rank < 0) {
      throw new OutOfRangeError(`ivcom: invalid rank ${opts.rank}`);
    }
    this.rank = opts.rank;
    this.grants = opts.grants;
    this.upcalls = opts.upcalls;
    this.kmod = opts.kmod;
    this.chunkBytes = opts.chunkBytes ?? DEFAULT_CHUNK_BYTES;
    this.limits = { ...DEFAULT_LIMITS, ...opts.limits };
    this.allocate = opts.allocate;
    const chunk = chunkBytesFor(ringBytes, this.chunkBytes);
    this.caps = Object.freeze({
      name: 'ivcom' as const,
      latencyClass: 'memory' as const,
      // One record carries it: copied into the ring at once when there is room.
      eagerLimit: chunk,
      // The largest payload in one record; larger messages are streamed as fragments here.
      maxFrame: chunk,
    });
    this.grants.onGrant((g) => this.onGrant(g));
    this.grants.onGroup?.((g) => this.onGroup(g));
  }

  private group: Promise<HostGroup> | undefined;
  private groupMapped: HostGroup | undefined;
  private groupArrived: { resolve: (g: HostGroup) => void; reject: (e: Error) => void } | undefined;

  /**
   * This host's group segment (group.ts), asked for on the first call unless another rank's
   * request brought it already. Only ranks whose whole job runs on this host with at most
   * GROUP_MAX_RANKS ranks may ask: the launcher answers nobody else.
   */
  hostGroup(): Promise<HostGroup> {
    if (this.group === undefined) {
      if (this.grants.requestGroup === undefined) return Promise.reject(new StateError(`ivcom: rank ${this.rank}: no host group here`, { rank: this.rank }));
      this.group = new Promise<HostGroup>((resolve, reject) => (this.groupArrived = { resolve, reject }));
      this.grants.requestGroup();
    }
    return this.group;
  }

  /** The group arrives at every rank of the host once one asked (unasked too): kept until asked for. */
  private onGroup(g: GroupGrant): void {
    if (this.closing !== undefined || this.groupMapped !== undefined) {
      this.closeFdQuiet(g.segmentFd);
      for (const fd of g.bellFds) this.closeFdQuiet(fd);
      return;
    }
    const waiter = this.groupArrived;
    this.groupArrived = undefined;
    try {
      this.groupMapped = new HostGroup(g, this.rank, { ...this.kmod, closeFd: (fd) => this.closeFdQuiet(fd) });
      if (waiter !== undefined) waiter.resolve(this.groupMapped);
      else this.group = Promise.resolve(this.groupMapped);
    } catch (err) {
      const e = new BootstrapError(`ivcom: rank ${this.rank} got an unusable host group grant: ${(err as Error).message}`, { rank: this.rank, cause: err });
      if (waiter !== undefined) waiter.reject(e);
      else {
        this.group = Promise.reject(e);
        this.group.catch(() => {});
      }
      this.upcalls.fail(e);
    }
  }

  endpoint(peer: number): Endpoint {
    let st = this.peers.get(peer);
    if (st?.endpoint !== undefined) return st.endpoint;
    if (!Number.isInteger(peer) || peer < 0 || peer === this.rank) {
      throw new OutOfRangeError(`ivcom: no channel from rank ${this.rank} to rank ${peer}`);
    }
    if (this.closing !== undefined) {
      throw new StateError(`ivcom: transport of rank ${this.rank} is closed`, { rank: this.rank });
    }
    if (st === undefined) {
      st = new PeerState(peer);
      this.peers.set(peer, st);
    }
    st.endpoint = new IvcomEndpoint(peer, this.caps, this, st);
    if (st.channel === undefined && !st.requested) {
      st.requested = true;
      this.grants.request(peer);
    }
    return st.endpoint;
  }

  poll(): number {
    const chs = this.channels;
    const hinting = this.hinting;
    if (hinting && this.cpu !== CPU_POLLING) this.markCpu(CPU_POLLING);
    let n = 0;
    for (let i = 0; i < chs.length; i++) n += chs[i]!.poll();
    if (n !== 0 && hinting) {
      this.keptCpu = 0;
      this.markCpu(CPU_WORKING);
    }
    return n;
  }

  take(peer: number, ctx: number, tag: number): IncomingMessage | undefined {
    const m = this.peers.get(peer)?.channel?.take(ctx, tag);
    if (m !== undefined && this.hinting) {
      // As poll() does when something arrived: this rank works now, and will most likely send.
      this.keptCpu = 0;
      this.markCpu(CPU_WORKING);
    }
    return m;
  }

  /**
   * This rank keeps its on-CPU words: only once it has yielded (ranks outnumber cores), since
   * only ranks that yield read them, and a word costs a store per channel at every change.
   */
  private hinting = false;
  /** What this rank's on-CPU words say (CPU_*). */
  private cpu = CPU_OFF;
  /** Polls in a row that kept the CPU because the awaited peer works. */
  private keptCpu = 0;

  private markCpu(state: number): void {
    this.cpu = state;
    const chs = this.channels;
    for (let i = 0; i < chs.length; i++) chs[i]!.setOnCpu(state);
  }

  channelPeers(): number[] {
    return this.channels.map((c) => c.peer);
  }

  /**
   * Gives the CPU away between polls, unless the peer this rank waits for (`awaited`, a world
   * rank) works on a CPU right now: its message is then a moment away and needs no turn of this
   * core's scheduler, so polling on costs less than two context switches (~5 µs each in a VM).
   * A peer that polls is no sign: it waits for someone itself.
   */
  relax(awaited?: number): boolean {
    this.hinting = true;
    if (awaited !== undefined && awaited >= 0 && this.keptCpu < KEEP_CPU_POLLS) {
      if (this.peers.get(awaited)?.channel?.peerCpu() === CPU_WORKING) {
        this.keptCpu++;
        return false;
      }
    }
    this.keptCpu = 0;
    this.markCpu(CPU_OFF);
    this.kmod.cpuYield?.();
    this.markCpu(CPU_POLLING);
    return true;
  }

  idle(): void {
    if (this.hinting && this.cpu !== CPU_OFF) this.markCpu(CPU_OFF);
    const chs = this.channels;
    for (let i = 0; i < chs.length; i++) chs[i]!.idle();
  }

  close(): Promise<void> {
    this.closing ??= this.doClose();
    return this.closing;
  }

  /** @internal Queues a send made before the grant arrived. */
  sendEarly(st: PeerState, msg: OutgoingMessage): Promise<void> {
    if (st.failure !== undefined) return Promise.reject(st.failure);
    if (this.closing !== undefined) {
      return Promise.reject(new StateError(`ivcom: transport of rank ${this.rank} is closed`, { rank: this.rank, peer: st.peer }));
    }
    return new Promise<void>((resolve, reject) => st.early.push({ msg, resolve, reject }));
  }

  private onGrant(g: Grant): void {
    const problem = this.checkGrant(g);
    if (typeof g !== 'object' || g === null) {
      this.upcalls.fail(new BootstrapError(`ivcom: rank ${this.rank} got a malformed grant`, { rank: this.rank }));
      return;
    }
    const st0 = this.peers.get(g.peer);
    if (problem !== undefined || this.closed || st0?.channel !== undefined) {
      // Not usable (or a duplicate): release its fds so nothing outlives the job.
      this.closeFdQuiet(g.segmentFd);
      this.closeFdQuiet(g.localBellFd);
      this.closeFdQuiet(g.peerBellFd);
      if (problem !== undefined) {
        const err = new BootstrapError(`ivcom: rank ${this.rank} got an unusable grant for rank ${g?.peer}: ${problem}`, {
          rank: this.rank,
          peer: g?.peer,
        });
        if (st0 !== undefined) this.failEarly(st0, err);
        this.upcalls.fail(err);
      }
      return;
    }
    let st = st0;
    if (st === undefined) {
      st = new PeerState(g.peer);
      this.peers.set(g.peer, st);
    }
    st.localBellFd = g.localBellFd;
    st.peerBellFd = g.peerBellFd;

    let sab: SharedArrayBuffer;
    try {
      sab = this.kmod.segmentMap(g.segmentFd, g.bytes);
    } catch (cause) {
      const err = new IvcomError(
        `ivcom: rank ${this.rank} cannot map the segment shared with rank ${g.peer}: ${(cause as Error)?.message}`,
        { rank: this.rank, peer: g.peer, cause },
      );
      this.releaseFds(st);
      this.failEarly(st, err);
      this.upcalls.fail(err);
      return;
    } finally {
      // The mapping outlives the fd; keeping the fd would only leak it.
      this.closeFdQuiet(g.segmentFd);
    }

    const kmod = this.kmod;
    const peerBellFd = g.peerBellFd;
    const bell: Bell = { ring: () => kmod.doorbellRing(peerBellFd) };
    const stRef = st;
    let ch!: IvcomChannel;
    try {
      ch = new IvcomChannel({
        sab,
        ringBytes: ringBytesOfSegment(g.bytes)!,
        low: g.low,
        rank: this.rank,
        peer: g.peer,
        bell,
        deliver: this.upcalls.deliver.bind(this.upcalls),
        fail: (err) => this.onChannelFail(stRef, err),
        peerClosed: () => this.upcalls.peerClosed?.(g.peer),
        limits: this.limits,
        chunkBytes: this.chunkBytes,
        allocate: this.allocate,
        copy: this.kmod.copyBytes,
        toPeer:
          this.kmod.copyToPeer !== undefined && this.kmod.copyChoiceWords !== undefined
            ? { copy: this.kmod.copyToPeer, choiceWords: this.kmod.copyChoiceWords }
            : undefined,
        // Sends waiting for ring space keep the process alive until they are written; an idle
        // channel does not (the runtime keeps the loop alive while it has pending receives).
        onPending: (pending) => {
          const w = stRef.watcher;
          if (w === undefined) return;
          if (pending) w.ref();
          else w.unref();
        },
      });
      const localBellFd = g.localBellFd;
      const watcher = new kmod.FdWatcher(localBellFd, () => {
        try {
          kmod.doorbellDrain(localBellFd);
        } catch (cause) {
          ch.abort(
            new IvcomError(`ivcom: doorbell of the channel to rank ${g.peer} failed: ${(cause as Error)?.message}`, {
              rank: this.rank,
              peer: g.peer,
              cause,
            }),
          );
          return;
        }
        // Deliver what is there and re-arm (dataWanted, spaceWanted when sends wait).
        ch.idle();
      });
      st.watcher = watcher;
      watcher.start();
      watcher.unref();
    } catch (cause) {
      const err = new IvcomError(
        `ivcom: rank ${this.rank} cannot attach the channel to rank ${g.peer}: ${(cause as Error)?.message}`,
        { rank: this.rank, peer: g.peer, cause },
      );
      this.releaseFds(st);
      this.failEarly(st, err);
      this.upcalls.fail(err);
      return;
    }
    st.channel = ch;
    this.channels.push(ch);

    // Sends made before the grant, in call order, ahead of anything sent from now on.
    const early = st.early;
    st.early = [];
    for (const q of early) {
      let r: Promise<void> | undefined;
      try {
        r = ch.send(q.msg);
      } catch (err) {
        q.reject(err as Error);
        continue;
      }
      if (r === undefined) q.resolve();
      else r.then(q.resolve, q.reject);
    }
    this.wakeEarly(st);
    // Arm the doorbell and pick up whatever the peer wrote before we attached.
    ch.idle();
  }

  private checkGrant(g: Grant): string | undefined {
    if (typeof g !== 'object' || g === null) return 'not an object';
    for (const k of ['peer', 'segmentFd', 'bytes', 'localBellFd', 'peerBellFd'] as const) {
      if (!Number.isSafeInteger(g[k]) || g[k] < 0) return `${k} ${g[k]}`;
    }
    if (g.peer === this.rank) return 'a channel to itself';
    if (g.low !== this.rank < g.peer) return `low=${g.low} but ranks are ${this.rank} and ${g.peer}`;
    if (ringBytesOfSegment(g.bytes) === undefined) return `segment size ${g.bytes} is not segmentBytes(2^k)`;
    return undefined;
  }

  private onChannelFail(st: PeerState, err: Error): void {
    const i = this.channels.indexOf(st.channel!);
    if (i >= 0) this.channels.splice(i, 1);
    // The channel is never read again: stop watching its doorbell (fds are closed at close()).
    st.watcher?.stop();
    this.upcalls.fail(err);
  }

  private failEarly(st: PeerState, err: Error): void {
    st.failure = err;
    const early = st.early;
    st.early = [];
    for (const q of early) q.reject(err);
    this.wakeEarly(st);
  }

  private wakeEarly(st: PeerState): void {
    const w = st.earlyWaiters;
    st.earlyWaiters = [];
    for (const f of w) f();
  }

  private async doClose(): Promise<void> {
    const flushes: Promise<void>[] = [];
    for (const st of this.peers.values()) {
      if (st.early.length > 0 && st.channel === undefined && st.failure === undefined) {
        // Accepted before the grant: wait for the grant, then for the ring.
        flushes.push(
          new Promise<void>((resolve) => st.earlyWaiters.push(resolve)).then(() => st.channel?.close()),
        );
      } else if (st.channel !== undefined) {
        flushes.push(st.channel.close());
      }
    }
    await Promise.all(flushes);
    for (const st of this.peers.values()) {
      // Tells the peer (closed word + one doorbell), before the bell fds go away.
      st.channel?.shutdown();
      this.releaseFds(st);
    }
    this.channels = [];
    this.groupMapped?.close();
    this.closed = true;
  }

  private releaseFds(st: PeerState): void {
    const w = st.watcher;
    st.watcher = undefined;
    if (w !== undefined) {
      // The watcher does not own its fd: close the watcher first, then the fd.
      try {
        w.stop();
        w.close();
      } catch {
        /* closing anyway */
      }
    }
    if (st.localBellFd >= 0) this.closeFdQuiet(st.localBellFd);
    if (st.peerBellFd >= 0) this.closeFdQuiet(st.peerBellFd);
    st.localBellFd = -1;
    st.peerBellFd = -1;
  }

  private closeFdQuiet(fd: number): void {
    if (!Number.isInteger(fd) || fd < 0) return;
    try {
      if (this.kmod.closeFd !== undefined) this.kmod.closeFd(fd);
      else closeSync(fd);
    } catch {
      /* already closed: nothing to release */
    }
  }
}
