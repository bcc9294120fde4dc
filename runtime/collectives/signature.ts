// The tag of every collective message says which call it belongs to: the call's slot (its
// number on the communicator, mod TAG_SLOTS: all ranks call collectives in the same order, so
// they agree on it), its kind and its root. Two collectives started without awaiting the first
// never match each other's messages; and when ranks do not call the same collectives in the same
// order (or give different roots), a message of one call meets another call at the same slot:
// the rank that sees it rejects with ERR_IVCOM_COLLECTIVE_MISMATCH naming both sides, instead of
// hanging or, worse, completing with mixed-up data.
//
//   tag (31 bits) = root mod 512 (9) | kind (4) | slot (12) | phase (6)

import type { CollPort, Signature } from './port.js';
export type { Signature } from './port.js';

/** Messages of one call use tags base + phase, phase < TAG_STRIDE. */
export const TAG_STRIDE = 64;
/** Collective calls that may be in flight at once on one communicator. */
export const TAG_SLOTS = 1 << 12;
const SLOT_SHIFT = 6;
const KIND_SHIFT = 18;
const KIND_MASK = 15;
const ROOT_SHIFT = 22;
const ROOT_MASK = 511;
/** Everything of a tag but its phase: the call it belongs to. */
const CALL_MASK = ~(TAG_STRIDE - 1);

/** Kinds a tag can name (at most 16); index 0: a port that was not told (tests, internal use). */
export const KINDS = [
  'collective',
  'barrier',
  'bcast',
  'reduce',
  'allreduce',
  'gather',
  'allgather',
  'scatter',
  'alltoall',
  'scan',
  'exscan',
  'split',
  'dup',
  'reduce_scatter',
] as const;
export type Kind = (typeof KINDS)[number];

/** Kind → its number in tags (a plain object: read on every call, where a Map lookup costs more). */
const KIND_IDS = Object.fromEntries(KINDS.map((k, i) => [k, i])) as Record<Kind, number>;

/** The next call on `p` is this one (read once, by its nextTagBase); undefined withdraws it. */
export function announce(p: CollPort, sig: Signature | undefined): void {
  p.signature = sig;
}

/** The tag base of the next collective call on `p`: its slot, kind and root. */
export function nextTagBase(p: CollPort): number {
  const s = p.slot ?? 0;
  p.slot = (s + 1) % TAG_SLOTS;
  const sig = p.signature;
  p.signature = undefined;
  const kind = sig === undefined ? 0 : KIND_IDS[sig.kind];
  const root = sig === undefined ? 0 : (sig.root ?? 0) & ROOT_MASK;
  const base = (root << ROOT_SHIFT) | (kind << KIND_SHIFT) | (s << SLOT_SHIFT);
  if (sig !== undefined) sig.base = base;
  return base;
}

export function slotOf(tag: number): number {
  return (tag >>> SLOT_SHIFT) & (TAG_SLOTS - 1);
}

/** Whether two collective tags belong to calls of the same kind and root (any phase). */
export function sameCall(a: number, b: number): boolean {
  return (a & CALL_MASK) === (b & CALL_MASK);
}

/** The call a tag belongs to, in words: "bcast (root 2)". */
export function describeCall(tag: number): string {
  const kind = KINDS[(tag >>> KIND_SHIFT) & KIND_MASK] ?? 'collective';
  const rooted = kind === 'bcast' || kind === 'reduce' || kind === 'gather' || kind === 'scatter';
  return rooted ? `${kind} (root ${(tag >>> ROOT_SHIFT) & ROOT_MASK})` : kind;
}
