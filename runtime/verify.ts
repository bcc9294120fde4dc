// End-to-end payload check (`ivrun --verify`, IVCOM_VERIFY=1), for ranks that share memory with a
// peer they do not trust. The rings check every index, length and header they read, but payload
// bytes are the peer's data and are delivered as they are found: a stray store into the segment
// (or into the sender's buffer before a single copy) arrives as data. With verify on, every
// message carries a CRC-32C of its bytes, computed from the sender's memory and checked on this
// rank's private copy, and a mismatch is ERR_IVCOM_CORRUPT naming the peer.
//
// Small (eager) messages and the control frames of the large-message protocol carry it as a
// 4-byte trailer, added by wrapping the endpoints and the deliver upcall: with verify off nothing
// is wrapped, and no message pays for the feature. A large message's bytes (single copy or
// streamed DATA frames) carry no trailer: its CRC travels in its announcement (rendezvous.ts) and
// is checked once the bytes have landed.

import type { DestinationRequest, Endpoint, IncomingMessage, OutgoingMessage, Upcalls } from '../transport/transport.js';
import { readU32, writeU32 } from '../transport/wire.js';
import { CorruptError, OutOfRangeError } from './errors.js';
import { Codec } from './codec-ids.js';

/** CRC-32C of the bytes of `data`, continuing from `seed` (the CRC of the bytes before; 0 for none). */
export type Checksum = (data: ArrayBufferView, seed?: number) => number;

/** Bytes of the trailer: a little-endian CRC-32C of the payload before it. */
export const TRAILER_BYTES = 4;

/** IVCOM_VERIFY: '1' on, unset / '' / '0' off; anything else is refused, never guessed. */
export function verifyFromEnv(v: string | undefined, rank: number): boolean {
  if (v === undefined || v === '' || v === '0') return false;
  if (v === '1') return true;
  throw new OutOfRangeError(
    `rank ${rank}: IVCOM_VERIFY must be 1 (check every message end to end) or 0, got '${v}'; ivrun --verify sets it for every rank`,
  );
}

/** The table CRC-32C, for a process without the native addon (kmod's crc32c is ~9 GB/s; this ~0.4). */
export const crc32cJs: Checksum = (() => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[i] = c >>> 0;
  }
  return (data: ArrayBufferView, seed = 0): number => {
    const u8 = data instanceof Uint8Array ? data : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    let c = ~seed >>> 0;
    for (let i = 0; i < u8.length; i++) c = (c >>> 8) ^ t[(c ^ u8[i]!) & 0xff]!;
    return ~c >>> 0;
  };
})();

/** The CRC of a message given in parts, as one run of bytes. */
export function checksumParts(crc: Checksum, parts: readonly Uint8Array[]): number {
  let c = 0;
  for (let i = 0; i < parts.length; i++) c = crc(parts[i]!, c);
  return c >>> 0;
}

/** The error a failed check raises: what it means, and what to do. */
export function checksumError(rank: number, peer: number, what: string): CorruptError {
  return new CorruptError(
    `rank ${rank}: ${what} from rank ${peer} failed its end-to-end checksum (--verify): its bytes changed between rank ${peer}'s memory ` +
      `and this rank — the shared memory between the two was scribbled, or the sender changed its buffer before the send completed. ` +
      `The message was dropped; nothing more from rank ${peer} can be trusted: find what else writes to that memory`,
    { rank, peer },
  );
}

/** Sends through `ep` with a CRC trailer on every frame but a large message's DATA. */
export function verifyingEndpoint(ep: Endpoint, crc: Checksum): Endpoint {
  const caps = Object.freeze({ ...ep.caps, eagerLimit: ep.caps.eagerLimit - TRAILER_BYTES });
  return {
    peer: ep.peer,
    caps,
    // A shared copy's bytes are checked against the announcement's CRC once they have landed.
    get shared() {
      return ep.shared;
    },
    send(msg: OutgoingMessage): Promise<void> | undefined {
      if (msg.codec === Codec.Data) return ep.send(msg);
      const parts = msg.parts;
      const c = parts.length === 1 ? crc(parts[0]!) : checksumParts(crc, parts);
      const trailer = new Uint8Array(TRAILER_BYTES);
      writeU32(trailer, 0, c);
      // A fresh message: the caller may reuse its own object once this returns.
      const { ctx, source, tag, codec, byteLength } = msg;
      return ep.send({ ctx, source, tag, codec, parts: parts.length === 1 ? [parts[0]!, trailer] : [...parts, trailer], byteLength: byteLength + TRAILER_BYTES });
    },
  };
}

/**
 * The upcalls, checking and stripping the trailer of what arrives. Messages that carry one are
 * assembled where the transport likes (never straight into a receive's buffer: the trailer would
 * not fit there), then copied by the receive like any unclaimed message.
 */
export function verifyingUpcalls(u: Upcalls, crc: Checksum, rank: number): Upcalls {
  const trailed = (h: DestinationRequest) => h.codec !== Codec.Data;
  return {
    ...u,
    deliver(m: IncomingMessage): void {
      if (m.codec === Codec.Data) {
        u.deliver(m); // checked against its announcement once it is placed (rendezvous.ts)
        return;
      }
      const p = m.payload;
      const n = p.byteLength - TRAILER_BYTES;
      if (n < 0) {
        u.fail(checksumError(rank, m.source, `a ${p.byteLength}-byte message, too short to carry its checksum,`));
        return;
      }
      const body = p.subarray(0, n);
      const want = readU32(p, n);
      if (crc(body) >>> 0 !== want) {
        u.fail(checksumError(rank, m.source, `a ${n}-byte message (tag ${m.tag})`));
        return;
      }
      m.payload = body;
      u.deliver(m);
    },
    allocate: u.allocate && ((h) => (trailed(h) ? undefined : u.allocate!(h))),
    stage: u.stage && ((h) => (trailed(h) ? undefined : u.stage!(h))),
  };
}
