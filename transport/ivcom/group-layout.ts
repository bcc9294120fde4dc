// The host group segment's layout (group.ts): pure constants and arithmetic, no I/O, so the
// launcher (which sizes the memfd) and the runtime (which decides whether a job qualifies) import
// them without loading the native addon.

export const LINE = 64;
/** Largest contribution a slot carries: small collectives only (32 float64s). */
export const GROUP_DATA_BYTES = 256;
export const BUF_BYTES = LINE + GROUP_DATA_BYTES;
export const SLOT_BYTES = LINE + 2 * BUF_BYTES;
/** i32 offsets within a slot. */
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

