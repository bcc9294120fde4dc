// Values to bytes and back. Typed arrays, DataView, ArrayBuffer and Buffer travel as their raw
// bytes (the send side hands a view of the caller's memory down: zero-copy until the transport
// copies); every other value goes through msgpackr with structured cloning, so Map, Set, Date,
// bigint of any size, undefined, cycles and nested typed arrays survive. Plain data (JSON-like,
// nothing reached twice: clonable.ts) means the same without structured cloning, and msgpackr
// packs and unpacks it without records in ~60 % of the time, so it goes that way, as records of
// object shapes announced once per pair (shapes.ts), or as plain msgpack once the shape table is full.

import { Packr, Unpackr } from 'msgpackr';
import { MAX_MESSAGE_BYTES } from '../transport/wire.js';
import { Codec } from './codec-ids.js';
import { examine, MAX_DEPTH, newWalk } from './clonable.js';
import { CorruptError, TooLargeError, UnserializableError } from './errors.js';
import { ON_HEAP_MAX, packed } from './packed.js';
import { packShaped, shapesOpen, type PeerShapes } from './shapes.js';
import { CODEC_OF_PROTO, CTOR_OF_CODEC, eachKind } from './typed.js';

export { Codec, CODEC_MAX } from './codec-ids.js';

const scratch = new ArrayBuffer(ON_HEAP_MAX);
const scratchU8 = new Uint8Array(scratch);
const scratchViews: Array<ArrayLike<unknown>> = [];
eachKind((ctor, codec) => (scratchViews[codec] = new ctor(scratch)));
function scratchOf(codec: number) {
  return scratchViews[codec]!;
}

/** How values are encoded: what structured clone keeps, bigints of any size. */
const CLONE = { structuredClone: true, useBigIntExtension: true } as const;
const packr = new Packr(CLONE);
/** Plain data: maps decode as objects; without records, nothing of one message shapes the next's decoding. */
const PLAIN = { useRecords: false, mapsAsObjects: true } as const;
const plainPackr = new Packr(PLAIN);
const plainUnpackr = new Unpackr(PLAIN);

// msgpackr reads its input through `.buffer` (a DataView over it), and asking a small on-heap
// typed array for `.buffer` makes V8 move it off the heap: ~1.4 us, more than the whole decode of
// a small object. So small msgpack payloads are first copied (a few dozen bytes) into an off-heap
// scratch, through one view per length: msgpackr caches the DataView it makes on the view it is
// given, so reusing the views saves a view and a DataView per message (a small dict decoded in
// ~0.43 us instead of ~0.72 us). The scratch is overwritten by the next message, so what is
// decoded from it must not alias it: copyBuffers makes msgpackr copy binary values out (typed
// arrays it copies anyway).
const smallUnpackr = new Unpackr({ ...CLONE, copyBuffers: true });
const smallPlainUnpackr = new Unpackr({ ...PLAIN, copyBuffers: true });
// msgpackr also reads `.buffer` of every input it is given, which on Node 20 is a call into C++
// (~0.1 µs): each view carries the scratch as an own `buffer` (the same ArrayBuffer), a plain load.
const smallScratch = new Uint8Array(new ArrayBuffer(ON_HEAP_MAX));
const smallViews: Uint8Array[] = Array.from({ length: ON_HEAP_MAX + 1 }, (_, n) =>
  Object.defineProperty(smallScratch.subarray(0, n), 'buffer', { value: smallScratch.buffer }),
);
function unpackSmall(u: Unpackr, bytes: Uint8Array): unknown {
  const n = bytes.byteLength;
  const view = smallViews[n]!;
  for (let i = 0; i < n; i++) view[i] = bytes[i]!;
  return u.unpack(view);
}

export interface Encoded {
  codec: Codec;
  /** A view of the bytes to send; for raw kinds it aliases the caller's memory. */
  bytes: Uint8Array;
}

// What encode() returns, refilled by every call so that a send allocates no result object: read
// it before encoding again. Filled last, so a nested send (a toJSON calling send) cannot
// overwrite the outer call's result before it returns.
const encoded: Encoded = { codec: Codec.Msgpack, bytes: new Uint8Array(0) };
function result(codec: Codec, bytes: Uint8Array): Encoded {
  encoded.codec = codec;
  encoded.bytes = bytes;
  return encoded;
}


/** The value's codec and bytes, in an object the next call reuses (see `encoded`). */
export function encode(value: unknown): Encoded {
  if (ArrayBuffer.isView(value)) {
    // A Uint8Array is already the view we need; taking `.buffer` of a small (on-heap) typed
    // array would make V8 move it off-heap, a cost on every send.
    if (Object.getPrototypeOf(value) === Uint8Array.prototype) return result(Codec.Uint8, value as Uint8Array);
    const codec = CODEC_OF_PROTO.get(Object.getPrototypeOf(value));
    if (codec !== undefined && value.byteLength <= ON_HEAP_MAX) {
      // Same reason: a small typed array is copied element-wise through the aligned scratch
      // instead of having its buffer materialized (the transport copies it anyway).
      const view = scratchOf(codec) as unknown as { set(a: ArrayLike<unknown>): void };
      view.set(value as unknown as ArrayLike<unknown>);
      return result(codec, scratchU8.slice(0, value.byteLength));
    }
    if (value.byteLength > MAX_MESSAGE_BYTES) throw tooLarge(`a ${value.constructor.name} of ${value.byteLength} bytes`);
    const bytes = new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
    if (Buffer.isBuffer(value)) return result(Codec.Buffer, bytes);
    if (value instanceof DataView) return result(Codec.DataView, bytes);
    if (codec !== undefined) return result(codec, bytes);
    // A typed-array subclass or a kind this Node does not list: keep its contents via msgpackr.
  } else if (value instanceof ArrayBuffer) {
    if (value.byteLength > MAX_MESSAGE_BYTES) throw tooLarge(`an ArrayBuffer of ${value.byteLength} bytes`);
    return result(Codec.ArrayBuffer, new Uint8Array(value));
  }
  const walk = newWalk();
  const refused = examine(value, walk);
  if (refused?.tooDeep) throw tooDeep(refused.what);
  if (refused !== undefined) {
    throw new UnserializableError(
      `cannot send ${refused.what}: structured clone refuses it, and it would arrive as something else; send plain data (or its parts) instead`,
    );
  }
  try {
    if (!walk.plain) return result(Codec.Msgpack, packr.pack(value));
    return shapesOpen() ? result(Codec.MsgpackShaped, packShaped(value)) : result(Codec.MsgpackPlain, packed(plainPackr, value));
  } catch (err) {
    // Within MAX_DEPTH, yet the stack ran out: the send was called from deep in the program.
    if (isStackOverflow(err)) throw tooDeep('a value this deeply nested from this point of the program', err);
    if (err instanceof RangeError || PACKED_TOO_LARGE.test((err as Error)?.message)) {
      throw tooLarge(`a value whose encoded form exceeds that (${(err as Error).message})`, err);
    }
    throw err;
  }
}

/** msgpackr's refusal (a plain Error) to grow its output past buffer.constants.MAX_LENGTH. */
const PACKED_TOO_LARGE = /larger than maximum buffer size/;

function isStackOverflow(err: unknown): boolean {
  return err instanceof RangeError && err.message.includes('Maximum call stack size exceeded');
}

function tooLarge(what: string, cause?: unknown): TooLargeError {
  return new TooLargeError(
    `cannot send ${what}: a message arrives as one array, and one array of Node ${process.version} holds at most ` +
      `${MAX_MESSAGE_BYTES} bytes (buffer.constants.MAX_LENGTH); send it in parts of at most that many bytes ` +
      `(e.g. subarray slices, one message each) and join them on the receiver`,
    { cause },
  );
}

function tooDeep(what: string, cause?: unknown): UnserializableError {
  return new UnserializableError(
    `cannot send ${what}: values may nest at most ${MAX_DEPTH} levels (arrays, objects, Maps, Sets inside each other), ` +
      `since encoding and decoding recurse once per level; flatten it (e.g. a list of nodes that name their parent by index)`,
    { cause },
  );
}

/**
 * Rebuilds a value from received bytes that the receiver owns. Views are made in place when the
 * alignment allows it, otherwise the bytes are copied once. `peer` is the sender (world rank):
 * records are read with the shapes it announced (`shapes`), and errors name it.
 */
export function decode(codec: number, bytes: Uint8Array, peer: number, shapes: PeerShapes): unknown {
  switch (codec) {
    case Codec.Msgpack:
    case Codec.MsgpackPlain:
    case Codec.MsgpackShaped:
      try {
        if (codec === Codec.MsgpackShaped) {
          const reader = shapes.reader(peer);
          return bytes.byteLength <= ON_HEAP_MAX ? unpackSmall(reader, bytes) : reader.unpack(bytes);
        }
        if (codec === Codec.MsgpackPlain) return bytes.byteLength <= ON_HEAP_MAX ? unpackSmall(smallPlainUnpackr, bytes) : plainUnpackr.unpack(bytes);
        return bytes.byteLength <= ON_HEAP_MAX ? unpackSmall(smallUnpackr, bytes) : packr.unpack(bytes);
      } catch (err) {
        if (err instanceof CorruptError) throw err;
        if (isStackOverflow(err)) {
          throw new CorruptError(
            `message from rank ${peer} nests too deeply to decode (senders refuse values deeper than ${MAX_DEPTH} levels): the peer is broken or hostile`,
            { peer, cause: err },
          );
        }
        throw new CorruptError(`message from rank ${peer} could not be decoded: ${(err as Error).message}`, {
          peer,
          cause: err,
        });
      }
    case Codec.ArrayBuffer:
      return bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength
        ? bytes.buffer
        : bytes.slice().buffer;
    case Codec.DataView: {
      const owned = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength;
      const src = owned ? bytes : bytes.slice();
      return new DataView(src.buffer, 0, src.byteLength);
    }
    case Codec.Buffer:
      return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    default: {
      const ctor = CTOR_OF_CODEC[codec];
      if (ctor === undefined) throw new CorruptError(`message from rank ${peer} has unknown codec ${codec}`, { peer });
      const size = ctor.BYTES_PER_ELEMENT;
      if (bytes.byteLength % size !== 0) {
        throw new CorruptError(
          `message from rank ${peer}: ${bytes.byteLength} bytes is not a whole number of ${ctor.name} elements`,
          { peer },
        );
      }
      const n = bytes.byteLength / size;
      if (bytes.byteLength <= ON_HEAP_MAX && bytes.byteOffset === 0) {
        // Small payloads are V8 on-heap arrays owned by this message; `.buffer` would move them
        // off-heap. Go through an aligned scratch view instead (or hand a Uint8Array over as is).
        if (codec === Codec.Uint8) return bytes;
        scratchU8.set(bytes);
        const out = new ctor(n) as unknown as Record<number, unknown>;
        // Element by element (at most 64 bytes): a subarray of the scratch would be one more
        // object per message.
        const from = scratchOf(codec);
        for (let i = 0; i < n; i++) out[i] = from[i];
        return out;
      }
      // A view must own its whole buffer: transports may carve small payloads out of a shared
      // slab, and `value.buffer` must not expose (or, transferred, detach) other messages.
      const owned = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength;
      const src = owned ? bytes : bytes.slice();
      return codec === Codec.Uint8 ? src : new ctor(src.buffer as ArrayBuffer, 0, n);
    }
  }
}
