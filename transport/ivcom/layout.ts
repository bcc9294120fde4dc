// The layout of an IVCOM channel segment. Pure constants and arithmetic, no I/O: the launcher
// imports `segmentBytes` from here to size the memfd it creates, without loading the transport.
//
// A segment is shared by exactly two ranks, A (the lower world rank) and B. It holds two
// single-producer/single-consumer byte rings: direction 0 carries A→B, direction 1 carries B→A.
// The launcher formats nothing: the segment arrives zero-filled, and all-zero is the valid empty
// state (both indices 0, no notification requested), so either side may attach first and start
// writing before the other one has mapped the segment.
//
//   0x000  direction 0 control (A→B)     4 cache lines, see below
//   0x100  direction 1 control (B→A)     4 cache lines
//   0x200  closed word of A (u32, own cache line): non-zero once A's transport closed the channel
//   0x240  closed word of B
//   0x280  on-CPU word of A (u32, own cache line): once A has yielded its CPU (ranks outnumber
//          cores), non-zero while A polls or works, zero while it yields or sleeps (zero before);
//          a hint for B's choice between polling on and yielding
//   0x2c0  on-CPU word of B
//   0x300  unused (zero)
//   0x400  shared words of direction 0 (for copies of A's data into B), 2 cache lines: the
//          runtime's shared single copy (runtime/shared-copy.ts) keeps its claim and done counts here
//   0x480  shared words of direction 1 (B's data into A)
//   0x500  unused (zero) up to CTRL_BYTES, so that the rings start page-aligned
//   0x1000 ring 0 data  (ringBytes, a power of two)
//   0x1000 + ringBytes   ring 1 data  (ringBytes)
//
// A direction's control block, one 64-byte cache line per word so that the producer's and the
// consumer's stores never share a line (no false sharing; each side's line is written by one side):
//   +0    unused (zero). The producer's index is private: records announce themselves (below).
//   +64   cons         u32, monotonically increasing byte counter (mod 2^32) of the bytes the
//                      consumer is done with. Written by the consumer only.
//   +128  dataWanted   non-zero: "I (consumer) am about to sleep; ring my bell when you publish".
//                      Set by the consumer, cleared by the producer (exchange) just before it rings.
//   +192  spaceWanted  non-zero: "I (producer) am blocked; ring my bell when you free space".
//                      Set by the producer, cleared by the consumer (exchange) just before it rings.
//
// Records in a ring start 8-byte aligned. A record header (32 bytes) is always contiguous: when
// fewer than 32 bytes remain before the end of the ring, both sides skip to the ring's start
// (implicit wrap; the skipped bytes are counted in the indices but never read). The payload
// that follows may wrap around the end (contiguous split: copied in two pieces).
//
// Publication (the fast-box idea of Open MPI's shared-memory BTL, applied to every record): the
// magic word is written last, with a release store, and the consumer polls the magic word at
// its own index, so a small message reaches it as one cache line (header and payload), not an
// index line and then a record line. Zero there means "nothing yet". Before publishing a record
// the producer zeroes the magic word where the next record will start, so a consumer that
// reaches that place finds zero or a record, never stale bytes of an older lap; to keep that
// word in free space a producer leaves NEXT_RESERVE_BYTES of the ring unused behind each record.
//
//   +0   u32 chunk     payload bytes carried by this record
//   +4   u32 magic     RECORD_MAGIC, written last: the record is published (0: not yet)
//   +8   frame header, transport/wire.ts layout (24 bytes):
//        +8 u32 ctx  +12 u32 source  +16 i32 tag  +20 u8 codec  +21 u8 flags (FRAG_*)  +22 u16 0
//        +24 u64 total payload bytes of the whole message (every fragment repeats it)
//   +32  payload (chunk bytes), then padding to the next multiple of 8
//
// A message whose payload fits in one record is one record with FRAG_FIRST|FRAG_LAST. A larger
// message streams as FIRST, zero or more middle fragments (flags 0), LAST, back to back in the
// ring; the receiver tracks the offset itself (fragments of one message are never interleaved
// with another message in the same direction).
//
// The segment is native-endian (it never leaves the host); on every platform Node supports for
// this (x64, arm64) that is the little-endian layout of transport/wire.ts, checked at load.

export const CACHE_LINE = 64;
export const CTRL_BYTES = 4096;
export const DIR_CTRL_BYTES = 4 * CACHE_LINE;
export const CONS_OFFSET = 64;
export const DATA_WANTED_OFFSET = 128;
export const SPACE_WANTED_OFFSET = 192;

/** Each side's "I closed this channel" word (libxenvchan's live flags, inverted so 0 = open). */
export const CLOSED_OFFSET_LOW = 0x200;
export const CLOSED_OFFSET_HIGH = 0x240;

/** Each side's "on a CPU now" word (a scheduling hint, never trusted for correctness). */
export const ON_CPU_OFFSET_LOW = 0x280;
export const ON_CPU_OFFSET_HIGH = 0x2c0;

/**
 * What an on-CPU word says: its side gave its CPU away (yields or sleeps; also a fresh segment's
 * zero), it works (a message just arrived: it will most likely send next), or it polls.
 */
export const CPU_OFF = 0;
export const CPU_WORKING = 1;
export const CPU_POLLING = 2;

/** Words both sides may write, for a protocol above the transport (transport.ts SharedWords). */
export const SHARED_WORDS_OFFSET = 0x400;
export const SHARED_WORDS_BYTES = 2 * CACHE_LINE;

export const RECORD_HEADER_BYTES = 32;
/** 'IVR1' read as a little-endian u32. */
export const RECORD_MAGIC = 0x31525649;
/**
 * Free ring space a producer keeps behind each record: the next record's magic word must be
 * cleared before this record is published, and it may sit up to 24 bytes further on (when the
 * tail is too short for a header, the next record starts at the ring's start).
 */
export const NEXT_RESERVE_BYTES = RECORD_HEADER_BYTES;

/** Fragment flags, carried in the frame header's flags byte. A middle fragment has neither. */
export const FRAG_FIRST = 1;
export const FRAG_LAST = 2;
export const FRAG_MASK = FRAG_FIRST | FRAG_LAST;

export const MIN_RING_BYTES = 4096;
/** 2^30: keeps (prod - cons) mod 2^32 unambiguous and every offset a small integer. */
export const MAX_RING_BYTES = 1 << 30;
/**
 * Default bytes per direction: 2 MiB (a pair costs 4 MiB + 4 KiB, and only pairs that talk have
 * one). Measured between two processes through the public API (pingpong.js, recvInto), 4 MiB
 * messages: ring 1 MiB 2.8-3.9 GB/s, 2 MiB 5.7-5.9, 4 MiB 5.0-6.4 GB/s; with 1 MiB too few
 * chunks are in flight and the producer keeps waiting for space.
 */
export const DEFAULT_RING_BYTES = 2 << 20;
/**
 * Default largest payload per record (larger messages are pipelined in chunks of this size),
 * clamped to a quarter of the ring so that four chunks are in flight. Bigger chunks amortize the
 * per-record work (header, index publish, wake-up check, JS→memcpy call): 4 MiB messages in one
 * thread, 1 MiB ring, reused destination: 16 KiB 3.7, 64 KiB 4.6, 256 KiB 5.1 GB/s.
 */
export const DEFAULT_CHUNK_BYTES = 256 * 1024;

export function isValidRingBytes(ringBytes: number): boolean {
  return (
    Number.isInteger(ringBytes) &&
    ringBytes >= MIN_RING_BYTES &&
    ringBytes <= MAX_RING_BYTES &&
    (ringBytes & (ringBytes - 1)) === 0
  );
}

/** Bytes of a segment whose two rings have `ringBytes` each (what the launcher must create). */
export function segmentBytes(ringBytes: number): number {
  if (!isValidRingBytes(ringBytes)) {
    throw new RangeError(
      `ivcom ring size must be a power of two between ${MIN_RING_BYTES} and ${MAX_RING_BYTES}, got ${ringBytes}`,
    );
  }
  return CTRL_BYTES + 2 * ringBytes;
}

/** The ring size of a segment of `bytes`, or undefined when no valid ring size gives that size. */
export function ringBytesOfSegment(bytes: number): number | undefined {
  if (!Number.isInteger(bytes) || bytes < CTRL_BYTES) return undefined;
  const ring = (bytes - CTRL_BYTES) / 2;
  return isValidRingBytes(ring) ? ring : undefined;
}

/**
 * The index of the 32-bit word at `byteOffset` of the segment (4-aligned). Unsigned: with the
 * largest ring (2^30) direction 1's data runs from 2^30 + 4 KiB up to 2^31 + 4 KiB, past what a
 * signed shift (`>> 2`, `| 0`) keeps positive, and a negative index reads `undefined` silently.
 */
export function wordAt(byteOffset: number): number {
  return byteOffset >>> 2;
}

/** Byte offset of a direction's control block. Direction 0 is low→high, 1 is high→low. */
export function ctrlOffset(direction: 0 | 1): number {
  return direction * DIR_CTRL_BYTES;
}

/** Byte offset of the shared words for copies in a direction (0: low→high). */
export function sharedWordsOffset(direction: 0 | 1): number {
  return SHARED_WORDS_OFFSET + direction * SHARED_WORDS_BYTES;
}

/** Byte offset of a direction's ring data. */
export function ringOffset(direction: 0 | 1, ringBytes: number): number {
  return CTRL_BYTES + direction * ringBytes;
}

/** The largest chunk usable with a ring: a quarter of it, so several chunks are in flight. */
export function chunkBytesFor(ringBytes: number, wanted: number = DEFAULT_CHUNK_BYTES): number {
  const limit = ringBytes >>> 2;
  const c = Math.max(8, Math.min(Math.floor(wanted), limit));
  return c & ~7;
}

export const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
