// A large message copied by both ranks of a co-resident pair at once. With single copy
// (transport/cma.ts) the whole kernel copy runs on the receiver's core while the sender, waiting
// for its send to settle, spins on the other; one core's copy does not use the memory bus up, so
// the receiver names its destination and both take chunks until none are left:
//
//   receiver (a receive matched an RTS)         sender (its send pending)
//   resets the pair's done and claim words
//   HELP {gen, chunk, bytes, address} ───────▶  takes chunks: claim, process_vm_writev, ...
//   takes chunks: claim, process_vm_readv, ...  adds its count to done
//   adds its count to done
//   whoever's count completes done finishes:    the receiver: FIN, the send settles;
//                                               the sender: its send settles, COPIED, the
//                                               receive completes.
//   A sender the kernel refuses chunk k:        COPIED {k}: the receiver copies k itself.
//
// A receiver that is done with its chunks first watches DONE for a moment (the sender is
// finishing its last chunk): seen complete, the receive completes at once and the sender's COPIED
// is passed over when it comes. The pair's words are then free for the next large message, which
// in a window of posted receives is usually matched straight away.
//
// The words (transport SharedWords of the direction the data flows): CLAIM = gen << GEN_SHIFT |
// next chunk, taken by compare-and-swap so each chunk is copied once; a claim under another
// generation fails, so a HELP read after its copy finished (the receiver took every chunk) does
// nothing. DONE counts finished chunks; the receiver resets both only once the previous copy is
// done, when no claim of it is outstanding. Both words are in the peer's reach: every value read
// is checked against what this side knows (its own byte count and generation), once.

import { performance } from 'node:perf_hooks';
import type { CrossMemory } from '../transport/cma.js';
import { SHARED_WORDS, type Endpoint } from '../transport/transport.js';
import { readU32, writeU32 } from '../transport/wire.js';

/** Word of the next chunk to take, with the copy's generation above it. */
const CLAIM = 0;
/** Word of the chunks finished: on its own cache line, written once per side per copy. */
const DONE = SHARED_WORDS / 2;
const GEN_SHIFT = 12;
/** Chunks per copy at most (the claim word's low bits). */
const MAX_CHUNKS = (1 << GEN_SHIFT) - 1;
const GEN_MASK = 0xfffff;
/**
 * Chunk size: small enough that the two sides finish close together (a chunk copies in
 * ~20 µs here), large enough that a claim's cache-line transfer and a syscall per chunk are noise.
 */
const CHUNK_BYTES = 256 * 1024;
const PAGE = 4096;
/**
 * How long (ms) a receiver done with its chunks watches DONE for the sender's last ones: a few
 * chunk copies (~20-60 µs each while both copy). Longer, the sender is not copying (preempted,
 * or refused and about to say so) and its COPIED frame will finish the receive.
 */
const WATCH_MS = 0.15;
/** Below this a copy is over before the sender can see the HELP. */
export const SHARED_COPY_MIN_BYTES = 1 << 20;

const HELP_BYTES = 24;
const COPIED_BYTES = 8;
const NO_CHUNK = 0xffffffff;
const TWO32 = 4294967296;

/** What the receiver is waiting on while the sender finishes the copy. */
interface Waiting<T> {
  id: number;
  gen: number;
  chunks: number;
  chunkBytes: number;
  address: bigint;
  dest: Uint8Array;
  item: T;
  /** The receiver gave up on sharing (its own read failed) and streams instead: ignore the rest. */
  abandoned: boolean;
}

export interface SharedCopyHost {
  readonly rank: number;
  /** Posts a control frame carrying `id` in its tag. */
  post(peer: number, id: number, codec: 'help' | 'copied', payload: Uint8Array): void;
  corrupt(peer: number, what: string): Error;
}

export type ReceiveOutcome = 'done' | 'settled' | 'waiting' | 'refused';

export class SharedCopy<T> {
  /** Receiver: the last generation used with each source. */
  private readonly gens: number[] = [];
  /** Receiver: the copy each source is finishing, at most one per source. */
  private readonly waiting: Array<Waiting<T> | undefined> = [];
  /** Receiver: ids of copies seen complete whose COPIED frame is still to come, per source, in order. */
  private readonly passedOver: number[][] = [];
  /** Destinations a sender may still write into (the job failed mid-copy): kept alive for good. */
  private readonly quarantined: Uint8Array[] = [];
  /** Copies shared as receiver, and chunks written as sender (for tests and diagnostics). */
  readonly counts = { shared: 0, helpedChunks: 0 };

  constructor(
    private readonly cma: CrossMemory,
    private readonly host: SharedCopyHost,
  ) {}

  /** Receiver: whether a copy of `n` bytes from `source` may be shared now. */
  canShare(ep: Endpoint, source: number, n: number): boolean {
    return n >= SHARED_COPY_MIN_BYTES && ep.shared !== undefined && this.waiting[source] === undefined && this.cma.proven(source);
  }

  /**
   * Receiver: copies `dest.byteLength` bytes from `source` at `address` with the sender's help.
   * 'done': every byte is in place (post FIN). 'settled': every byte is in place and the sender's
   * send has settled (no FIN). 'waiting': the sender finishes; `copied()` returns `item` then.
   * 'refused': a read failed; stream the message instead (nothing more comes of this copy that
   * matters).
   */
  receive(ep: Endpoint, source: number, id: number, address: bigint, dest: Uint8Array, item: T): ReceiveOutcome {
    const words = ep.shared!.inbound;
    const n = dest.byteLength;
    const chunkBytes = chunkFor(n);
    const chunks = Math.ceil(n / chunkBytes);
    const gen = ((this.gens[source] ?? 0) % GEN_MASK) + 1;
    this.gens[source] = gen;
    // DONE first: a helper that wins a claim of this generation finds it reset.
    Atomics.store(words, DONE, 0);
    Atomics.store(words, CLAIM, gen << GEN_SHIFT);
    const help = new Uint8Array(HELP_BYTES);
    writeU32(help, 0, gen);
    writeU32(help, 4, chunkBytes);
    writeU32(help, 8, n % TWO32);
    writeU32(help, 12, Math.floor(n / TWO32));
    const at = this.cma.address(dest);
    writeU32(help, 16, Number(at & 0xffffffffn));
    writeU32(help, 20, Number(at >> 32n));
    this.host.post(source, id, 'help', help);
    const w: Waiting<T> = { id, gen, chunks, chunkBytes, address, dest, item, abandoned: false };
    this.counts.shared++;
    let mine = 0;
    for (let k = claim(words, gen, chunks); k >= 0; k = claim(words, gen, chunks)) {
      if (!this.readChunk(source, w, k)) {
        // The sender's claims are finished before it reads the CTS that follows (ring order),
        // so its writes land before the streamed bytes do.
        w.abandoned = true;
        this.waiting[source] = w;
        return 'refused';
      }
      mine++;
    }
    if (this.finishes(source, words, mine, chunks)) return 'done';
    const until = performance.now() + WATCH_MS;
    do {
      const done = Atomics.load(words, DONE);
      if (done === chunks) {
        // The sender's count completed it: its send has settled, and its COPIED is on the way.
        (this.passedOver[source] ??= []).push(id);
        return 'settled';
      }
      if (done < 0 || done > chunks) throw this.host.corrupt(source, `a shared copy counted ${done} of ${chunks} chunks`);
    } while (performance.now() < until);
    this.waiting[source] = w;
    return 'waiting';
  }

  /**
   * Receiver: a COPIED frame from `source`. Returns the receive's item when the copy is complete
   * (`settled`: the sender's send has settled already; else post FIN), undefined when there is
   * nothing to do; throws a CorruptError on a frame that fits no copy.
   */
  copied(ep: Endpoint, source: number, id: number, payload: Uint8Array): { item: T; settled: boolean } | undefined {
    const passed = this.passedOver[source];
    if (passed !== undefined && passed.length > 0 && passed[0] === id) {
      passed.shift();
      return undefined;
    }
    const w = this.waiting[source];
    if (w === undefined || w.id !== id || payload.byteLength !== COPIED_BYTES || readU32(payload, 0) !== w.gen) {
      throw this.host.corrupt(source, `copy report for unknown transfer ${id}`);
    }
    if (w.abandoned) return undefined;
    const words = ep.shared!.inbound;
    const failed = readU32(payload, 4);
    const settled = failed === NO_CHUNK;
    if (settled) {
      // The sender's count completed DONE.
      const done = Atomics.load(words, DONE);
      if (done !== w.chunks) throw this.host.corrupt(source, `transfer ${id} reported copied with ${done} of ${w.chunks} chunks done`);
    } else {
      if (failed >= w.chunks) throw this.host.corrupt(source, `transfer ${id}: chunk ${failed} of ${w.chunks}`);
      if (!this.readChunk(source, w, failed)) {
        throw this.host.corrupt(source, `transfer ${id}: chunk ${failed} can be neither written by it nor read from it`);
      }
      if (!this.finishes(source, words, 1, w.chunks)) {
        throw this.host.corrupt(source, `transfer ${id}: chunks unaccounted for after chunk ${failed}`);
      }
    }
    this.waiting[source] = undefined;
    return { item: w.item, settled };
  }

  /**
   * Sender: a HELP frame from `peer` for the send of `src` (id `id`): take chunks until none are
   * left. Returns true when this side's count finished the copy (the send settles, and COPIED has
   * been posted); throws a CorruptError on a frame that does not fit the send.
   */
  help(ep: Endpoint, peer: number, id: number, payload: Uint8Array, src: Uint8Array): boolean {
    if (payload.byteLength !== HELP_BYTES) throw this.host.corrupt(peer, `malformed copy request for transfer ${id}`);
    const gen = readU32(payload, 0);
    const chunkBytes = readU32(payload, 4);
    const n = readU32(payload, 8) + readU32(payload, 12) * TWO32;
    const address = BigInt(readU32(payload, 16)) | (BigInt(readU32(payload, 20)) << 32n);
    const chunks = Math.ceil(n / chunkBytes);
    if (
      gen === 0 || gen > GEN_MASK || n !== src.byteLength || chunkBytes < PAGE || chunkBytes % PAGE !== 0 ||
      chunks > MAX_CHUNKS || address === 0n
    ) {
      throw this.host.corrupt(peer, `copy request for transfer ${id}: generation ${gen}, ${n} bytes in chunks of ${chunkBytes}`);
    }
    const words = ep.shared?.outbound;
    if (words === undefined || !this.cma.writable(peer)) return false;
    let mine = 0;
    let failed = NO_CHUNK;
    for (let k = claim(words, gen, chunks); k >= 0; k = claim(words, gen, chunks)) {
      const off = k * chunkBytes;
      if (!this.cma.write(peer, address + BigInt(off), src, off, Math.min(chunkBytes, n - off))) {
        failed = k;
        break;
      }
      mine++;
    }
    this.counts.helpedChunks += mine;
    const finished = mine > 0 && this.finishes(peer, words, mine, chunks);
    if (finished || failed !== NO_CHUNK) {
      const copied = new Uint8Array(COPIED_BYTES);
      writeU32(copied, 0, gen);
      writeU32(copied, 4, failed);
      this.host.post(peer, id, 'copied', copied);
    }
    return finished;
  }

  /**
   * `peer` is gone or the job failed: a copy it was sharing will not complete, and the peer may
   * still be writing into its destination, so that memory is never handed back. Returns the
   * receive's item, if one was waiting.
   */
  drop(peer: number): T | undefined {
    const w = this.waiting[peer];
    if (w === undefined) return undefined;
    this.waiting[peer] = undefined;
    this.quarantined.push(w.dest);
    return w.abandoned ? undefined : w.item;
  }

  /** Every peer with a copy under way (for failing them all). */
  peers(): number[] {
    const out: number[] = [];
    this.waiting.forEach((w, p) => {
      if (w !== undefined) out.push(p);
    });
    return out;
  }

  private readChunk(source: number, w: Waiting<T>, k: number): boolean {
    const off = k * w.chunkBytes;
    return this.cma.read(source, w.address + BigInt(off), w.dest, off, Math.min(w.chunkBytes, w.dest.byteLength - off));
  }

  /** Adds this side's `mine` chunks to DONE; true when they complete the copy. */
  private finishes(peer: number, words: Int32Array, mine: number, chunks: number): boolean {
    if (mine === 0) return false;
    const before = Atomics.add(words, DONE, mine);
    if (before < 0 || before + mine > chunks) {
      throw this.host.corrupt(peer, `a shared copy counted ${before} + ${mine} of ${chunks} chunks`);
    }
    return before + mine === chunks;
  }
}

/** Takes the next chunk of copy `gen`, or returns -1 when none is left (or the copy is another). */
function claim(words: Int32Array, gen: number, chunks: number): number {
  for (;;) {
    const w = Atomics.load(words, CLAIM);
    const k = w & MAX_CHUNKS;
    if (w >>> GEN_SHIFT !== gen || k >= chunks) return -1;
    if (Atomics.compareExchange(words, CLAIM, w, w + 1) === w) return k;
  }
}

/** Chunk size for `n` bytes: CHUNK_BYTES, larger when that would need more than MAX_CHUNKS. */
function chunkFor(n: number): number {
  const least = Math.ceil(n / MAX_CHUNKS / PAGE) * PAGE;
  return Math.max(CHUNK_BYTES, least);
}
