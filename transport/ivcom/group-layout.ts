// The host group segment's layout (group.ts): pure constants and arithmetic, no I/O, so the
// launcher (which sizes the memfd) and the runtime (which decides whether a job qualifies) import
// them without loading the native addon.
//
// A slot (SLOT_BYTES), each part on its own cache lines:
//   +0    seq    i32, the number of the owner's last published call (0: none yet)
//   +4    sleep  i32, the call the owner sleeps on (0: awake); the owner sets it, a publisher
//                clears it (compare-exchange) just before it rings the owner's doorbell
//   +64   buffer 0, +64+BUF_BYTES buffer 1: call k uses buffer k & 1. A buffer is a descriptor
//         line (i32 call, kind, op, bytes) and GROUP_DATA_BYTES of data.
//
// Why two buffers are enough: a rank publishes call k + 1 only after it has read call k of every
// other rank, so when any rank publishes call k + 2 (into call k's buffer), every rank has
// published k + 1 and is done reading k.

export const LINE = 64;
/** Largest contribution a slot carries: small collectives only (32 float64s). */
export const GROUP_DATA_BYTES = 256;
export const BUF_BYTES = LINE + GROUP_DATA_BYTES;
export const SLOT_BYTES = LINE + 2 * BUF_BYTES;
/** The sleep word's i32 offset within a slot (the call counter is at 0). */
export const SLEEP = 1;
/**
 * Most ranks a host group takes: the grant carries the segment and every rank's doorbell in one
 * message, and a grant message holds at most 64 fds (kmod/src/grant.cc, kMaxGrantFds).
 */
export const GROUP_MAX_RANKS = 63;

/** The segment's size for `ranks` ranks (the launcher sizes the memfd with it). */
export function groupBytes(ranks: number): number {
  return ranks * SLOT_BYTES;
}

/** What a rank says about the call it published: checked against the reader's own. */
export interface Descriptor {
  kind: number;
  op: number;
  bytes: number;
}

/** How a group arrives (grant-client.ts parses it). */
export interface GroupGrant {
  /** World ranks of the host, in slot order. */
  ranks: number[];
  segmentFd: number;
  /** One doorbell per rank, in slot order. Owned by the receiver. */
  bellFds: number[];
}
