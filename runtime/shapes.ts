// Object shapes: plain values travel as msgpackr records. A record names its object's key list
// (its shape) by a small id instead of spelling every key, and the receiver rebuilds it with a
// reader compiled once per shape: a small object decodes in about half the time of a plain
// msgpack map (docs/performance.md). The ids mean something only to a receiver that knows the
// sender's table, so each rank tells each peer the shapes it has not yet told it, in a frame that
// travels just before the message that needs them, on the same channel: every transport keeps a
// pair's order, so a message is decodable whenever a receive matches it, in whatever order the
// receives take the messages. Table sizes are bounded on both sides (MAX_SHAPES): once a
// process's table is full, its plain values go as plain msgpack again.

import { Packr, Unpackr } from 'msgpackr';
import { CorruptError } from './errors.js';
import { packed } from './packed.js';

/**
 * Shapes one process sends as records. msgpackr's default is 32 (one-byte ids); more take two
 * bytes from the 33rd on, and keep records for programs that send a few dozen kinds of object.
 * A program whose keys are data (a new key set per message) fills the table and then sends
 * plain maps, as before: the bound keeps both sides' tables, and the frames that announce
 * them, small.
 */
export const MAX_SHAPES = 256;

/** The shapes this process has sent, in the order they were first packed (msgpackr appends). */
const sent: string[][] = [];

/** Writes plain values with records of the shapes in `sent`, adding new shapes while there is room. */
const shapedPackr = new Packr({ structures: sent, maxSharedStructures: MAX_SHAPES });

/** Shape lists in a frame of their own: plain msgpack (arrays of strings). */
const PLAIN = { useRecords: false, mapsAsObjects: true } as const;
const listPackr = new Packr(PLAIN);
const listUnpackr = new Unpackr(PLAIN);

/** Whether a new shape may still be added to this process's table. */
export function shapesOpen(): boolean {
  return sent.length < MAX_SHAPES;
}

/** A plain value as records (codec MsgpackShaped). */
export function packShaped(value: unknown): Uint8Array {
  return packed(shapedPackr, value);
}

/** What a rank told each peer of its table, and what it learned of each peer's. */
export class PeerShapes {
  /** Per world rank: how many of this process's shapes that rank has been told. */
  private readonly told: Int32Array;
  /** Per world rank: the shapes it announced, in its table's order. */
  private readonly learned: Array<string[][] | undefined> = [];
  /** Per world rank: how many learned shapes its reader has loaded. */
  private readonly loaded: Int32Array;
  private readonly readers: Array<Unpackr | undefined> = [];

  constructor(
    private readonly rank: number,
    size: number,
  ) {
    this.told = new Int32Array(size);
    this.loaded = new Int32Array(size);
  }

  /** Whether `dest` must be told shapes before a shaped message goes to it. */
  behind(dest: number): boolean {
    return this.told[dest] !== sent.length;
  }

  /**
   * The frame payload that tells `dest` the shapes it does not know yet (then counted as told:
   * the caller sends it before anything else to `dest`).
   */
  announce(dest: number): Uint8Array {
    const from = this.told[dest]!;
    this.told[dest] = sent.length;
    return listPackr.pack(sent.slice(from));
  }

  /**
   * A shapes frame from `source`: appended to its table. The peer may send anything: a payload
   * that is not a list of key lists, or that would take its table past MAX_SHAPES, is corrupt.
   */
  learn(source: number, payload: Uint8Array): void {
    let list: unknown;
    try {
      list = listUnpackr.unpack(payload);
    } catch (err) {
      throw this.corrupt(source, `its object shapes could not be decoded (${(err as Error).message})`, err);
    }
    const table = this.learned[source] ?? (this.learned[source] = []);
    if (!Array.isArray(list) || list.length === 0 || table.length + list.length > MAX_SHAPES) {
      throw this.corrupt(source, `it announced ${Array.isArray(list) ? `${list.length} object shapes after ${table.length}` : 'object shapes that are not a list'} (at most ${MAX_SHAPES} in all)`);
    }
    for (const keys of list) {
      if (!Array.isArray(keys) || !keys.every((k) => typeof k === 'string')) throw this.corrupt(source, 'it announced an object shape that is not a list of keys');
      table.push(keys as string[]);
    }
  }

  /** The unpacker for records from `source` (it loads the shapes learned since it last looked). */
  reader(source: number): Unpackr {
    let r = this.readers[source];
    if (r === undefined) {
      r = new Unpackr({ mapsAsObjects: true, copyBuffers: true, getStructures: () => this.load(source) });
      this.readers[source] = r;
    }
    return r;
  }

  /**
   * msgpackr asks for the table when a message names a shape its unpacker has not loaded. Every
   * shape a message names was announced before it, so with nothing new to load the sender
   * named one it never announced: a broken or hostile peer (without this, msgpackr would read
   * the record id as a number).
   */
  private load(source: number): string[][] {
    const table = this.learned[source] ?? [];
    if (table.length === this.loaded[source]) throw this.corrupt(source, 'a message names an object shape it never announced');
    this.loaded[source] = table.length;
    // A copy: msgpackr keeps what it is given as its table and cuts it back to the length it
    // loaded at every unpack, which must not cut shapes learned later.
    return table.slice();
  }

  private corrupt(source: number, what: string, cause?: unknown): CorruptError {
    return new CorruptError(`rank ${this.rank}: message from rank ${source}: ${what}; the peer is broken or hostile`, { rank: this.rank, peer: source, cause });
  }
}
