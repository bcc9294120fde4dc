// A host's group segment: one slot per rank of the host, where each rank publishes its part of a
// small collective (an 8 B allreduce, a barrier) and reads everybody else's, instead of passing
// log2(p) rounds of messages through the pair rings. Every rank writes only its own slot; the
// launcher creates the memfd, one doorbell (eventfd) per rank, and hands all of them to every
// rank of the host (launcher/grants.ts). Zero-filled is the valid initial state. The layout of a
// slot, and why two buffers per slot are enough: group-layout.ts.
//
// Never trusted: a slot's words are read once into private memory and checked (the call
// number, the byte count against GROUP_DATA_BYTES, the descriptor against this rank's own) before
// anything is read by them. A peer can only spoil its own contribution.
//
// The native calls come from the transport (its KmodLike, as for the channels), so this module
// loads no addon of its own and tests may pass the real one or fakes.

import { CorruptError } from '../errors.js';
import { BUF_BYTES, GROUP_DATA_BYTES, groupBytes, LINE, SLEEP, SLOT_BYTES, type Descriptor, type GroupGrant } from './group-layout.js';
import type { FdWatcherLike, KmodLike } from './transport.js';

/** The native calls a group uses: the transport's, with an fd closer that always exists. */
export type GroupNative = Pick<KmodLike, 'segmentMap' | 'doorbellRing' | 'doorbellDrain' | 'FdWatcher'> & { closeFd(fd: number): void };

export class HostGroup {
  /** World ranks in slot order. */
  readonly ranks: readonly number[];
  /** This rank's slot. */
  readonly me: number;
  private readonly i32: Int32Array;
  private readonly memory: SharedArrayBuffer;
  private readonly bells: number[];
  private readonly watcher: FdWatcherLike;
  private onWake: () => void = () => {};
  private closed = false;
  /** A private copy of the descriptor just read (never a view of the segment). */
  private readonly desc: Descriptor = { kind: 0, op: 0, bytes: 0 };

  constructor(
    g: GroupGrant,
    private readonly worldRank: number,
    private readonly native: GroupNative,
  ) {
    this.ranks = g.ranks;
    this.me = g.ranks.indexOf(worldRank);
    this.bells = g.bellFds;
    try {
      if (this.me < 0) throw new Error(`rank ${worldRank} is not among the group's ranks`);
      this.memory = native.segmentMap(g.segmentFd, groupBytes(g.ranks.length));
    } catch (err) {
      for (const fd of g.bellFds) native.closeFd(fd);
      throw err;
    } finally {
      native.closeFd(g.segmentFd);
    }
    this.i32 = new Int32Array(this.memory);
    const mine = this.bells[this.me]!;
    this.watcher = new native.FdWatcher(mine, () => {
      native.doorbellDrain(mine);
      this.onWake();
    });
    this.watcher.unref();
    this.watcher.start();
  }

  get size(): number {
    return this.ranks.length;
  }

  /** Whether the doorbell's watcher keeps the event loop alive (while this rank sleeps on it). */
  holdOpen(on: boolean): void {
    if (this.closed) return;
    if (on) this.watcher.ref();
    else this.watcher.unref();
  }

  /** Called on every ring of this rank's doorbell (spurious ones too). */
  wakeWith(cb: () => void): void {
    this.onWake = cb;
  }

  /** Publishes call `call` (its data already in its buffer, dataOffset()) and rings whoever sleeps on it. */
  publish(call: number, d: Descriptor): void {
    const buf = (this.me * SLOT_BYTES + LINE + (call & 1) * BUF_BYTES) >> 2;
    const w = this.i32;
    w[buf] = call;
    w[buf + 1] = d.kind;
    w[buf + 2] = d.op;
    w[buf + 3] = d.bytes;
    // Release: the descriptor and data stores above are visible to whoever sees this seq
    // (partner load: arrived()'s Atomics.load of the same word).
    Atomics.store(w, (this.me * SLOT_BYTES) >> 2, call);
    // Dekker with sleep(): this rank stored seq, then loads every sleep word; a sleeper stored its
    // sleep word, then loads every seq (both sequentially consistent), so one sees the other.
    for (let j = 0; j < this.ranks.length; j++) {
      if (j === this.me) continue;
      const s = (j * SLOT_BYTES) >> 2;
      if (Atomics.load(w, s + SLEEP) === call && Atomics.compareExchange(w, s + SLEEP, call, 0) === call) {
        this.native.doorbellRing(this.bells[j]!);
      }
    }
  }

  /**
   * Whether slot j has published `call`: its seq read once. A rank waiting for call k has seen
   * every other rank publish k - 1, and none can publish k + 2 before it publishes k + 1, so the
   * word is k - 1, k or k + 1 (mod 2^32); anything else is a broken or lying peer.
   */
  arrived(j: number, call: number): boolean {
    const seq = Atomics.load(this.i32, (j * SLOT_BYTES) >> 2);
    const ahead = (seq - call) | 0;
    if (ahead === 0 || ahead === 1) return true;
    if (ahead === -1) return false;
    throw this.corrupt(j, `its call counter reads ${seq} while this rank waits for call ${call}`);
  }

  /**
   * Slot j's descriptor for `call`, copied into private memory and checked: the call number it
   * carries and a byte count within GROUP_DATA_BYTES. The object is reused by the next read.
   */
  descriptor(j: number, call: number): Descriptor {
    const buf = (j * SLOT_BYTES + LINE + (call & 1) * BUF_BYTES) >> 2;
    const w = this.i32;
    const c = w[buf]!;
    const d = this.desc;
    d.kind = w[buf + 1]!;
    d.op = w[buf + 2]!;
    d.bytes = w[buf + 3]!;
    if (c !== call) throw this.corrupt(j, `its buffer for call ${call} says call ${c}`);
    if (!(d.bytes >= 0 && d.bytes <= GROUP_DATA_BYTES)) throw this.corrupt(j, `its buffer claims ${d.bytes} bytes (at most ${GROUP_DATA_BYTES})`);
    return d;
  }

  /** The segment (typed views of the slots' data regions: dataOffset()). */
  get buffer(): SharedArrayBuffer {
    return this.memory;
  }

  /** Byte offset of slot j's data region for `call` (buffer call & 1) in `buffer`. */
  dataOffset(j: number, call: number): number {
    return j * SLOT_BYTES + LINE + (call & 1) * BUF_BYTES + LINE;
  }

  /** Says this rank sleeps on `call` (then look at the seqs once more before sleeping). */
  sleep(call: number): void {
    Atomics.store(this.i32, ((this.me * SLOT_BYTES) >> 2) + SLEEP, call);
  }

  /** Takes the sleep word back; false when a publisher took it first (its ring is on the way). */
  wakeUp(call: number): boolean {
    return Atomics.compareExchange(this.i32, ((this.me * SLOT_BYTES) >> 2) + SLEEP, call, 0) === call;
  }

  private corrupt(j: number, what: string): CorruptError {
    const peer = this.ranks[j];
    return new CorruptError(`rank ${this.worldRank}: the host group slot of rank ${peer} is corrupt: ${what}; the job cannot go on`, {
      rank: this.worldRank,
      peer,
    });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.watcher.close();
    for (const fd of this.bells) this.native.closeFd(fd);
  }
}

